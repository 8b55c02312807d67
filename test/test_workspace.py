"""The colcon workspace: every package discovered, well formed, installed and buildable."""

import configparser
import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys

from catkin_pkg.package import InvalidPackage, parse_package
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV_BIN = pathlib.Path(sys.executable).parent
EXPECTED = {
    'vlac_bringup': 'ament_cmake', 'vlac_interfaces': 'ament_cmake',
    'vlac_models': 'ament_python', 'vlac_ros': 'ament_python',
    'vlac_testing': 'ament_python', 'vlac_training': 'ament_python',
    'vlac_policy_node': 'ament_python', 'vlac_reward_node': 'ament_python',
    'rl_trainer': 'ament_python', 'rl_runner': 'ament_python',
    'hitl_teleop': 'ament_python', 'vlac_sim': 'ament_python', 'vlac_bench': 'ament_python',
}

pytestmark = pytest.mark.slow(20)  # s on 2 cores: scheduled first


def colcon(*args: str, cwd: pathlib.Path = ROOT, timeout: float = 120) -> str:
    """Run colcon from this venv in ``cwd``; return stdout, fail with its output."""
    result = subprocess.run([str(VENV_BIN / 'colcon'), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f'colcon {" ".join(args)} failed:\n{result.stdout}\n' \
                                   f'{result.stderr}'
    return result.stdout


def workspace_problems(root: pathlib.Path) -> list[str]:
    """Compare what colcon discovers at ``root`` with the package.xml files on disk."""
    problems = []
    listed = {}
    for line in colcon('list', cwd=root).splitlines():
        name, path, kind = line.split('\t')
        listed[name] = (path, kind.strip('()').removeprefix('ros.'))
    on_disk = [root / 'package.xml', *sorted(root.glob('src/*/package.xml'))]
    for xml in on_disk:
        try:
            package = parse_package(xml)
        except InvalidPackage as err:
            problems.append(f'{xml.relative_to(root)}: malformed: {err}')
            continue
        if package.package_format != 3:
            problems.append(f'{package.name}: package.xml format {package.package_format}')
        if package.name not in listed:
            problems.append(f'{package.name}: on disk but not discovered by colcon')
    for name, kind in EXPECTED.items():
        if listed.get(name, (None, None))[1] != kind:
            problems.append(f'{name}: expected a discovered {kind} package, '
                            f'got {listed.get(name)}')
    return problems


def test_colcon_discovers_every_package_and_each_package_xml_is_valid():
    assert workspace_problems(ROOT) == []


def test_a_malformed_or_missing_package_is_reported(tmp_path):
    shutil.copytree(ROOT, tmp_path / 'ws', ignore=shutil.ignore_patterns(
        '.venv', 'build', 'install', 'log', '.git', '__pycache__', '*.egg-info', 'artifacts'))
    ws = tmp_path / 'ws'
    xml = ws / 'src' / 'rl_trainer' / 'package.xml'
    xml.write_text(xml.read_text().replace('</name>', '</nam>'))
    shutil.rmtree(ws / 'src' / 'hitl_teleop')
    problems = workspace_problems(ws)
    assert any('rl_trainer' in p and 'malformed' in p for p in problems), problems
    assert any(p.startswith('rl_trainer: expected') for p in problems), problems
    assert any(p.startswith('hitl_teleop: expected') for p in problems), problems


@pytest.mark.parametrize('name', sorted(n for n, k in EXPECTED.items() if k == 'ament_python'))
def test_python_package_layout_and_console_scripts(name):
    pkg = ROOT / 'src' / name
    assert (pkg / 'resource' / name).is_file(), 'ament resource marker'
    assert (pkg / name / '__init__.py').is_file()
    assert list((pkg / 'test').glob('test_*.py')), 'package has tests'
    cfg = configparser.ConfigParser()
    cfg.read(pkg / 'setup.cfg')
    assert cfg['develop']['script_dir'] == f'$base/lib/{name}'
    assert cfg['install']['install_scripts'] == f'$base/lib/{name}'
    # Every console script of the package resolves to a callable in this venv.
    dist = importlib.metadata.distribution(name)
    for entry in dist.entry_points.select(group='console_scripts'):
        assert callable(entry.load()), entry
        assert (VENV_BIN / entry.name).is_file(), entry.name


def test_ament_index_finds_every_package_in_the_venv():
    from ament_index_python.packages import get_package_share_directory

    for name in EXPECTED:
        share = pathlib.Path(get_package_share_directory(name))
        assert (share / 'package.xml').is_file(), name
    bringup = pathlib.Path(get_package_share_directory('vlac_bringup'))
    assert (bringup / 'config').is_dir() and (bringup / 'launch').is_dir()


@pytest.mark.long  # 1.5 min on 2 cores (the rosidl build): VLAC_LONG_TESTS=1
def test_colcon_build_of_the_whole_workspace(tmp_path):
    """`colcon build` succeeds and its install space works as `source install/setup.bash`."""
    build, install = tmp_path / 'build', tmp_path / 'install'
    colcon('--log-base', str(tmp_path / 'log'), 'build', '--build-base', str(build),
           '--install-base', str(install), '--event-handlers', 'console_direct-',
           '--cmake-args', '-DBUILD_TESTING=OFF', timeout=600)
    for name in EXPECTED:
        assert (install / name / 'share' / name / 'package.xml').is_file(), name
    assert (install / 'vlac_testing' / 'lib' / 'vlac_testing' / 'message_publisher').is_file()
    env = {k: v for k, v in os.environ.items() if k not in ('AMENT_PREFIX_PATH', 'PYTHONPATH')}
    probe = ('import vlac_interfaces.msg, vlac_interfaces, vlac_models, vlac_ros; '
             'print(vlac_interfaces.__file__); print(vlac_ros.__file__)')
    result = subprocess.run(
        ['bash', '-c', f'source {install}/setup.bash && {sys.executable} -c "{probe}"'],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert str(install) in result.stdout.splitlines()[0]
