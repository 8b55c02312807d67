"""The launch files, checked without ROS: every name they use exists, every parameter is declared.

``launch`` and ``launch_ros`` are not on PyPI, so ``vlac_testing.launch_check`` runs each
launch file against stand-ins of the launch API, with its defaults, every combination of its
arguments' choices and the overrides below (each arm file, the teleop branches). On a ROS
machine ``test_launch_ros.py`` also starts a real launch file.
"""

import functools
import importlib
import pathlib
import shutil

from vlac_bench.node_docs import NODES
from vlac_testing.launch_check import LaunchReport, ParameterBlock, check_launch_files

ROOT = pathlib.Path(__file__).resolve().parents[1]
# External ROS packages the launch files start, with the executables they may start. Their
# parameters are declared in their own (C++) sources and are not checked here.
EXTERNAL = {'joy': {'joy_node'}, 'spacenav': {'spacenav_node'}}
# Per-name parameter blocks: sim_node declares cameras.<name>.* for each name in camera_names.
NAMES_FROM = {'cameras.<name>.': 'camera_names'}
OVERRIDES = {
    'robot.launch.py': [{'arm': p.name} for p in sorted(ROOT.glob('config/arms/*.yaml'))],
    'teleop.launch.py': [{'return_points': 'true', 'help_config': ''},
                         {'device_config': 'playstation', 'help_config': 'help.yaml'}],
}
LAUNCHED = {
    ('vlac_sim', 'sim_node'), ('vlac_sim', 'expert_teleop'), ('vlac_sim', 'sim_operator'),
    ('vlac_ros', 'lifecycle_manager'),
    ('vlac_policy_node', 'vlac_policy_node'), ('vlac_reward_node', 'vlac_reward_node'),
    ('rl_runner', 'episode_runner'), ('rl_trainer', 'trainer_node'),
    ('hitl_teleop', 'teleop_node'), ('hitl_teleop', 'return_point_server'),
    ('joy', 'joy_node'), ('spacenav', 'spacenav_node'),
}


def declared_parameters() -> dict:
    """(package, executable) -> the config dataclasses the node declares (node_docs.NODES)."""
    registry = {}
    for executable, package, config, prefix, _ in NODES:
        module, name = config.split(':')
        cls = getattr(importlib.import_module(module), name)
        registry.setdefault((package, executable), []).append(
            ParameterBlock(cls, prefix, NAMES_FROM.get(prefix)))
    return registry


def check(root: pathlib.Path) -> LaunchReport:
    """The launch check of the workspace at ``root`` with this repository's registry."""
    return check_launch_files(root, declared_parameters(), EXTERNAL, OVERRIDES)


@functools.cache
def real() -> LaunchReport:
    """The report on the repository's launch files (computed once)."""
    return check(ROOT)


def test_every_launch_file_evaluates():
    """generate_launch_description, OpaqueFunctions and includes run in every context."""
    assert real().problems['evaluation'] == [], real().format('evaluation')


def test_every_package_exists_and_is_an_exec_depend():
    """Workspace packages or allowed external ones, each an <exec_depend> of vlac_bringup."""
    assert real().problems['packages'] == [], real().format('packages')


def test_every_executable_is_a_console_script():
    """Console scripts of the package (its setup.py), or allowed executables of external ones."""
    assert real().problems['executables'] == [], real().format('executables')


def test_every_file_path_exists():
    """Parameter files, included launch files, path parameters and config/... mentions."""
    assert real().problems['paths'] == [], real().format('paths')


def test_every_parameter_is_declared_by_its_node():
    """Dict and YAML parameters against the node's config dataclasses (parameters_of)."""
    assert real().problems['parameters'] == [], real().format('parameters')


def test_every_launch_argument_is_described_declared_and_read():
    """Descriptions, defaults within choices, LaunchConfigurations declared, includes' args."""
    assert real().problems['arguments'] == [], real().format('arguments')


def test_every_launch_file_and_node_is_covered():
    report = real()
    assert report.files == sorted(p.name for p in ROOT.glob('launch/*.launch.py'))
    assert {(n.package, n.executable) for n in report.nodes} == LAUNCHED
    # The parameter files of the nodes were reached, the arm overrides among them.
    files = {f for n in report.nodes for f in n.parameter_files}
    assert {pathlib.Path(f).name for f in files} >= {'loop.yaml', 'sim.yaml',
                                                     'ur_joint_trajectory.yaml'}


def replace(path: pathlib.Path, old: str, new: str) -> None:
    """Replace ``old`` (which must occur) by ``new`` in ``path``."""
    text = path.read_text()
    assert old in text, f'{path.name} changed: {old!r} not found, update this test'
    path.write_text(text.replace(old, new, 1))


def copy_workspace(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of vlac_bringup (launch, config) next to the repository's packages (linked)."""
    ws = tmp_path / 'ws'
    ws.mkdir()
    for name in ('launch', 'config'):
        shutil.copytree(ROOT / name, ws / name, ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('package.xml', 'CMakeLists.txt'):
        shutil.copy(ROOT / name, ws / name)
    (ws / 'src').symlink_to(ROOT / 'src')
    return ws


def test_a_broken_copy_of_the_launch_files_is_reported(tmp_path):
    ws = copy_workspace(tmp_path)
    teleop = ws / 'launch' / 'teleop.launch.py'
    replace(teleop, "executable='return_point_server'", "executable='return_point_srv'")
    replace(teleop, "'rate_hz': rate_hz,", "'rate_hz': rate_hz, 'max_speed': 0.5,")
    replace(teleop, "description='return point store folder (one JSON file per point)'",
            "description=''")
    replace(teleop, "package='joy'", "package='joystick'")
    replace(teleop, "'config', 'teleop', f'{name_or_path}.yaml'",
            "'config', 'teleops', f'{name_or_path}.yaml'")
    replace(teleop, "DeclareLaunchArgument('return_points', default_value='false'",
            "DeclareLaunchArgument('return_points', default_value='no'")
    replace(ws / 'launch' / 'sim_loop.launch.py', "'device_driver': 'false'",
            "'device_drivers': 'false'")
    replace(ws / 'launch' / 'robot.launch.py', "'arm configuration in config/arms (or a path)'",
            "'arm configuration in config/arm (or a path)'")
    replace(ws / 'config' / 'loop.yaml', '    ready_timeout: 300.0',
            '    ready_timeout: 300.0\n    ready_timeot: 30.0')
    sim = ws / 'launch' / 'sim.launch.py'
    replace(sim, "'config', 'sim.yaml')", "'config', 'simm.yaml')")
    replace(sim, "LaunchConfiguration('expert_behaviour')", "LaunchConfiguration('behaviour')")
    report = check(ws)

    def reported(category: str, *words: str) -> bool:
        return any(all(w in p for w in words) for p in report.problems[category])

    expected = {
        'executable renamed': reported('executables', "'return_point_srv'", 'hitl_teleop'),
        'undeclared parameter': reported('parameters', "'max_speed'", 'teleop_node'),
        'parameter typo in a YAML file': reported('parameters', "'ready_timeot'",
                                                  'config/loop.yaml'),
        'description removed': reported('arguments', "'store' has no description"),
        'unknown package': reported('packages', "'joystick'", 'neither'),
        'package not an exec_depend': reported('packages', "'joystick'", 'exec_depend'),
        'config directory renamed': reported('paths', 'config/teleops/xbox.yaml'),
        'missing parameter file': reported('paths', 'config/simm.yaml'),
        'config folder named in a string': reported('paths', "names 'config/arm',"),
        'default outside choices': reported('arguments', "'return_points'", "'no'"),
        'undeclared launch configuration': reported('arguments', "('behaviour') is not declared"),
        'argument no longer read': reported('arguments', "'expert_behaviour' is declared but"),
        'unset configuration fails': reported('evaluation', "'behaviour' is not set"),
        'include passes an unknown argument': reported('arguments', "'device_drivers'"),
    }
    missed = [what for what, found in expected.items() if not found]
    assert not missed, f'not reported: {missed}\n' + '\n'.join(
        report.format(c) for c in report.problems)
    assert real().problems != report.problems


def test_a_nested_list_in_a_path_join_is_reported(tmp_path):
    """A nested list in PathJoinSubstitution (TypeError in launch), as sim_loop.launch.py had."""
    ws = copy_workspace(tmp_path)
    replace(ws / 'launch' / 'sim_loop.launch.py',
            "[PathJoinSubstitution(\n                        [share, 'config', 'teleop', device]),"
            " '.yaml']",
            "PathJoinSubstitution(\n                        [share, 'config', 'teleop', "
            "[device, '.yaml']])")
    problems = check(ws).problems['evaluation']
    assert any(p.startswith('sim_loop.launch.py: TypeError: Failed to normalize')
               for p in problems), problems
