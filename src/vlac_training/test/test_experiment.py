"""The experiment command on config/experiments/tiny.yaml: CSV written, training happened, resume.

Everything is real and made here: demonstrations recorded by the simulator, a compact critic
and a behaviour-cloned policy trained on them (one epoch each), the lock-step loop with the
live loop's code, the Learner's episode store, checkpoints and weight files.
"""

import csv
import json
import pathlib
import re

import numpy as np
import pytest
from safetensors.numpy import load_file
from vlac_training.experiment import (
    CURVE_COLUMNS,
    ExperimentFile,
    RunSpec,
    main,
    run_root,
)
from vlac_training.experiment_report import main as report_main

REPO = pathlib.Path(__file__).resolve().parents[3]
TINY = REPO / 'config' / 'experiments' / 'tiny.yaml'

pytestmark = pytest.mark.slow(100)  # s on 2 cores: scheduled first


def test_every_shipped_experiment_file_is_valid():
    files = sorted((REPO / 'config' / 'experiments').glob('*.yaml'))
    assert TINY in files and len(files) >= 3
    for path in files:
        exp = ExperimentFile.load(path)
        assert exp.name == path.stem


def test_bad_experiment_files_are_refused_with_the_reason(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('name: bad\ntasks: [press_button]\ndemos: 2\nrunz: []\n')
    with pytest.raises(ValueError, match='unknown keys'):
        ExperimentFile.load(bad)
    bad.write_text('name: bad\ntasks: [press_button]\ndemos: 2\n'
                   'runs: [{variant: none, reward: magic}]\n')
    with pytest.raises(ValueError, match='reward'):
        ExperimentFile.load(bad)
    bad.write_text('name: bad\ntasks: [press_button]\ndemos: 2\n'
                   'evaluation: {first_seed: 10005}\n')
    with pytest.raises(ValueError, match='overlap'):
        ExperimentFile.load(bad)


@pytest.fixture(scope='module')
def shared_work(tmp_path_factory):
    """One work folder for the module: recordings (work/data) are reused across files."""
    return tmp_path_factory.mktemp('experiments')


@pytest.mark.timeout(600)
def test_tiny_experiment_trains_ships_writes_the_curve_and_resumes(tmp_path, shared_work,
                                                                   torch_one_thread):
    work = shared_work
    assert main([str(TINY), '--work', str(work)]) == 0
    exp = ExperimentFile.load(TINY)
    root = run_root(exp.__class__(**{**exp.__dict__, 'work': str(work)}), 'press_button',
                    RunSpec('none', 'progress'), 0)

    with (work / 'tiny' / 'learning_curves.csv').open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CURVE_COLUMNS
    assert [int(r['episodes']) for r in rows] == [0, 2, 4]
    assert all(0.0 <= float(r['success_rate']) <= 1.0 for r in rows)
    assert {(r['task'], r['variant'], r['reward'], r['seed']) for r in rows} == \
        {('press_button', 'none', 'progress', '0')}

    # Training happened: the trainer stored every episode, updated, and the robot acted
    # with the shipped versions (weights files differing from the starting policy).
    episodes = [json.loads(line) for line in (root / 'episodes.jsonl').read_text().splitlines()]
    assert [e['index'] for e in episodes] == [0, 1, 2, 3]
    assert episodes[-1]['version'] >= 1
    stored = sorted(p.name for p in (root / 'trainer' / 'episodes' / 'sim_1').iterdir()
                    if not p.name.startswith('.'))
    assert stored == ['train00000', 'train00001', 'train00002', 'train00003']
    weights = sorted((root / 'trainer' / 'weights').glob('policy_v*.safetensors'))
    assert weights, 'no version shipped'
    start = load_file(str(work / 'tiny' / 'models' / 'policy_press_button_2demos_s0'
                          / 'policy.safetensors'))
    newest = load_file(str(weights[-1]))
    assert any(not np.array_equal(start[k], newest[k]) for k in start if k in newest)
    eval_rows = list(csv.DictReader((root / 'eval.csv').open()))
    assert int(eval_rows[-1]['policy_version']) == int(weights[-1].stem.split('_v')[1])

    # Resume: a larger budget continues from the stored episodes and the checkpoint;
    # nothing is run twice.
    assert main([str(TINY), '--work', str(work), '--episodes', '6']) == 0
    episodes = [json.loads(line) for line in (root / 'episodes.jsonl').read_text().splitlines()]
    assert [e['index'] for e in episodes] == list(range(6))
    assert [int(r['episodes']) for r in csv.DictReader((root / 'eval.csv').open())] == \
        [0, 2, 4, 6]

    out = tmp_path / 'results'
    assert report_main([str(TINY), '--work', str(work), '--out', str(out)]) == 0
    assert (out / 'press_button.png').stat().st_size > 1000
    assert 'press_button | none | progress | 1 |' in (out / 'table.md').read_text()


@pytest.mark.timeout(600)
def test_human_in_the_loop_variants_run_through_the_teleop_path(shared_work, torch_one_thread):
    """tiny_hitl.yaml: demonstrations, takeovers on help requests, return points from stalls."""
    work = shared_work  # the tiny experiment's recordings (same counts) are reused
    hitl = REPO / 'config' / 'experiments' / 'tiny_hitl.yaml'
    assert main([str(hitl), '--work', str(work)]) == 0
    exp = ExperimentFile.load(hitl)
    exp = exp.__class__(**{**exp.__dict__, 'work': str(work)})

    def episodes(variant: str) -> list[dict]:
        root = run_root(exp, 'press_button', RunSpec(variant, 'progress'), 0)
        return [json.loads(line) for line in (root / 'episodes.jsonl').read_text().splitlines()]

    # demo_replay: the operator's demonstrations are stored as demonstration episodes.
    root = run_root(exp, 'press_button', RunSpec('demo_replay', 'progress'), 0)
    stored = sorted(p.name for p in (root / 'trainer' / 'episodes' / 'sim_1').iterdir()
                    if not p.name.startswith('.'))
    assert stored[:2] == ['demo0000', 'demo0001']
    log = (root / 'run.log').read_text()
    assert 'demonstrations by the simulated operator stored' in log
    assert re.search(r'\(([1-9]\d*) behaviour-cloning\)', log), log
    # human_guided: the robot asks for help, the operator takes over: interventions.
    guided = episodes('human_guided')
    assert all(e['mode'] == 'human_guided' for e in guided)
    assert any(e['help_requests'] and e['takeovers'] and 0 < e['interventions'] < e['steps']
               for e in guided), guided
    # return_and_explore: points picked from stalls; every second episode starts from one.
    back = episodes('return_and_explore')
    assert [e['mode'] for e in back][1::2] == ['return_and_explore'] * (len(back) // 2)
    assert not any(e['interventions'] for e in back)
    root = run_root(exp, 'press_button', RunSpec('return_and_explore', 'progress'), 0)
    assert list((root / 'return_points' / 'press_button').glob('*.json'))


@pytest.mark.timeout(600)
def test_train_offline_on_recorded_bags_ships_weights_the_policy_node_loads(
        shared_work, ros_graph, tmp_path, capsys, torch_one_thread):
    """train_offline on the tiny experiment's episode bags; the policy node takes the result."""
    from std_msgs.msg import String
    from vlac_ros.qos import LATCHED
    from vlac_training.train_offline import main as offline_main

    from vlac_interfaces.msg import PolicyVersion

    work = shared_work
    assert main([str(TINY), '--work', str(work)]) == 0  # recorded by the first test (resumes)
    exp = ExperimentFile.load(TINY)
    root = run_root(exp.__class__(**{**exp.__dict__, 'work': str(work)}), 'press_button',
                    RunSpec('none', 'progress'), 0)
    policy = work / 'tiny' / 'models' / 'policy_press_button_2demos_s0'
    argv = ['--episodes', str(root / 'trainer' / 'episodes'), '--model-path', str(policy),
            '--work-dir', str(tmp_path / 'offline'), '--epochs', '1', '--minibatch-size', '32']
    capsys.readouterr()
    assert offline_main(argv) == 0
    printed = capsys.readouterr().out
    found = re.search(r'train_offline: (\d+) bag folders, (\d+) new episodes stored', printed)
    assert found and int(found[1]) == int(found[2]) >= 4, printed  # 4, or 6 after the resume
    match = re.search(r'version 1 weights (\S+) \(sha256 ([0-9a-f]{64})\)', printed)
    assert match, printed
    artifact, digest = pathlib.Path(match[1]), match[2]
    assert artifact.parent == tmp_path / 'offline' / 'weights' and artifact.is_file()
    start = load_file(str(policy / 'policy.safetensors'))
    assert any(not np.array_equal(start[k], v) for k, v in load_file(str(artifact)).items())
    # A second run on the same bags stores and trains nothing twice.
    assert offline_main(argv) == 0
    again = capsys.readouterr().out
    assert '0 new episodes stored' in again and 'nothing to train on' in again, again
    # The policy node loads the offline version as it would a trainer's.
    ros_graph.start_node('vlac_policy_node', package='vlac_policy_node',
                         name='vlac_policy_node', namespace='robot_1',
                         params_files=[REPO / 'config' / 'arms' / 'sim_panda_servo.yaml'],
                         parameters={'model_path': str(policy), 'autostart': True,
                                     'weights_dir': str(artifact.parent)})
    ros_graph.wait_for(lambda: 'ready on cpu' in ros_graph.logs(), 60.0, 'policy node up')
    ros_graph.node.create_publisher(PolicyVersion, '/robot_1/policy_version', LATCHED).publish(
        PolicyVersion(version=1, artifact_uri=f'file://{artifact}', sha256=digest,
                      backend='compact'))
    ros_graph.node.create_publisher(String, '/robot_1/task', LATCHED).publish(
        String(data='press the yellow button'))
    ros_graph.wait_for(lambda: 'policy version 1 loaded' in ros_graph.logs(), 60.0,
                       'version 1 loaded')
    assert 'rejected' not in ros_graph.logs()
