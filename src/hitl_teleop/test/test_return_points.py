"""Return points picked from real episode bags, stored as JSON and served round robin."""

import json
import logging
import pathlib

from builtin_interfaces.msg import Time
from hitl_teleop.help import HelpConfig
from hitl_teleop.return_points import (
    ReturnPoint,
    ReturnPointStore,
    episode_bags,
    find_stalls,
    main,
    pick_from_episode,
)
import pytest
from std_msgs.msg import Header, String
from vlac_ros.bags import BagWriter

from vlac_interfaces.msg import ProgressReward

HELP_YAML = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'teleop' / 'help.yaml'
T0_NS = 1_700_000_000 * 10**9  # bag times as a real recording has them
NS = '/robot_1'


def ns_at(t: float) -> int:
    return T0_NS + round(t * 1e9)


def time_at(t: float) -> Time:
    ns = ns_at(t)
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


@pytest.fixture(scope='module')
def snapshots():
    """Four real simulator snapshots (UTF-8 JSON), one per seed."""
    from vlac_sim.ros_msgs import decode_snapshot, encode_snapshot
    from vlac_sim.scene import PandaScene
    from vlac_sim.tasks import get_task, reset_scene

    scene, task = PandaScene(), get_task('press_button')
    try:
        out = []
        for seed in range(4):
            start = reset_scene(scene, task, seed)
            out.append(encode_snapshot(task, seed, start, scene))
            decode_snapshot(out[-1])
        return out
    finally:
        scene.close()


def write_episode(root, episode_id, progress, snaps=(), task='press_button',
                  robot_id='robot_1', topic_ns=NS):
    """An episode bag as the runner records it: progress values and timed snapshots.

    ``progress``: (t s, value) pairs; ``snaps``: (t s, bytes) pairs; t counts from T0.
    """
    path = root / robot_id / episode_id
    with BagWriter(path, {'robot_id': robot_id, 'episode_id': episode_id, 'task': task,
                          'instruction': 'press the button', 'mode': 0, 'seed': 0}) as bag:
        bag.write(f'{topic_ns}/task', ns_at(0.0), String(data='press the button'))
        events = [(t, 'progress', v) for t, v in progress] + [(t, 'snap', s) for t, s in snaps]
        for t, kind, item in sorted(events, key=lambda e: (e[0], e[1])):
            if kind == 'progress':
                frame = time_at(t)
                # Scored 0.1 s after the frame was taken: the frame's time counts.
                bag.write(f'{topic_ns}/progress', ns_at(t + 0.1), ProgressReward(
                    header=Header(stamp=time_at(t + 0.1), frame_id='camera'),
                    task='press the button', stamp_a=time_at(max(t - 0.5, 0.0)),
                    stamp_b=frame, delta=0.0, value=float(item), done_probability=0.0))
            else:
                bag.write(f'{topic_ns}/sim/snapshot', ns_at(t), String(data=item.decode()))
    return path


def samples(stop, value, step=0.5):
    return [(k * step, value(k * step)) for k in range(int(round(stop / step)) + 1)]


def stall_progress():
    """Rises 0.2/s to 0.4 at 2 s, then flat: stagnation at 5 s whose window began at 2 s."""
    return samples(8.0, lambda t: min(0.2 * t, 0.4))


def drop_progress():
    """Rises to 0.6 at 3 s, falls to 0.3 at 3.5 s: regression from the maximum at 3 s."""
    return samples(6.0, lambda t: 0.2 * t if t <= 3.0 else 0.3)


@pytest.fixture
def episodes(tmp_path, snapshots):
    """Four episodes: a stall, a regression, a success, and one without snapshots."""
    root = tmp_path / 'episodes'
    write_episode(root, 'ep_stall', stall_progress(),
                  [(0.0, snapshots[0]), (2.0, snapshots[1]), (4.0, snapshots[2])])
    write_episode(root, 'ep_drop', drop_progress(),
                  [(1.0, snapshots[0]), (2.5, snapshots[3]), (3.2, snapshots[2])],
                  robot_id='robot_2', topic_ns='/robot_2')
    write_episode(root, 'ep_success', samples(6.0, lambda t: t / 6.0), [(0.0, snapshots[0])])
    write_episode(root, 'ep_no_snapshots', stall_progress())
    return root


def test_find_stalls_reports_where_the_trouble_began():
    config = HelpConfig()
    stalls = find_stalls(stall_progress(), config)
    assert [(t, reason) for t, reason, _ in stalls] == [(2.0, 'stagnation')]
    assert stalls[0][2] == pytest.approx(0.05)
    [(since, reason, score)] = find_stalls(drop_progress(), config)
    assert (since, reason, score) == (3.0, 'regression', pytest.approx(0.3))
    assert find_stalls(samples(6.0, lambda t: t / 6.0), config) == []


def test_a_stall_picks_the_snapshot_taken_when_it_began(episodes, snapshots):
    [point] = pick_from_episode(episodes / 'robot_1' / 'ep_stall')
    assert point.reason == 'stagnation' and point.score == pytest.approx(0.05)
    assert round(point.stamp * 1e9) == ns_at(2.0)  # at the stall's start counts as before it
    assert point.snapshot == snapshots[1]  # byte for byte
    assert point.progress == pytest.approx(0.4)
    assert (point.task, point.episode_id, point.robot_id) == ('press_button', 'ep_stall',
                                                              'robot_1')


def test_a_regression_picks_the_snapshot_before_the_best_value(episodes, snapshots):
    [point] = pick_from_episode(episodes / 'robot_2' / 'ep_drop')
    assert point.reason == 'regression' and point.score == pytest.approx(0.3)
    assert round(point.stamp * 1e9) == ns_at(2.5)
    assert point.snapshot == snapshots[3]
    # The value of the frame taken at 2.5 s (scored at 2.6 s): frame times count.
    assert point.progress == pytest.approx(0.5)
    assert point.robot_id == 'robot_2'


def test_episodes_without_stalls_or_snapshots_give_nothing(episodes):
    assert pick_from_episode(episodes / 'robot_1' / 'ep_success') == []
    assert pick_from_episode(episodes / 'robot_1' / 'ep_no_snapshots') == []


def test_stalls_before_the_first_snapshot_and_bad_snapshots_are_skipped(tmp_path, snapshots,
                                                                       caplog):
    bag = write_episode(tmp_path, 'late', stall_progress(),
                        [(1.0, b'not json'), (3.0, snapshots[0])])
    with caplog.at_level(logging.WARNING):
        assert pick_from_episode(bag) == []
    assert 'snapshot' in caplog.text and 'not UTF-8 JSON' in caplog.text


def test_an_unreadable_bag_names_its_path(tmp_path):
    bag = tmp_path / 'broken'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9}\n')
    with pytest.raises(ValueError, match='broken'):
        pick_from_episode(bag)
    with pytest.raises(ValueError, match='missing'):
        pick_from_episode(tmp_path / 'missing')


def test_json_keeps_the_snapshot_text_byte_for_byte(episodes, snapshots):
    [point] = pick_from_episode(episodes / 'robot_1' / 'ep_stall')
    text = point.to_json()
    assert json.loads(text)['snapshot'] == snapshots[1].decode()
    assert ReturnPoint.from_json(text) == point
    for bad in ['{', '[]', json.dumps({**json.loads(text), 'reason': 'boredom'}),
                json.dumps({**json.loads(text), 'snapshot': 'not json'}),
                json.dumps({**json.loads(text), 'stamp': None})]:
        with pytest.raises(ValueError):
            ReturnPoint.from_json(bad)


def test_store_ranks_dedupes_and_serves_round_robin(tmp_path, episodes):
    store = ReturnPointStore(tmp_path / 'store')
    [stall] = pick_from_episode(episodes / 'robot_1' / 'ep_stall')
    [drop] = pick_from_episode(episodes / 'robot_2' / 'ep_drop')
    path = store.add(stall)
    assert path == tmp_path / 'store' / 'press_button' / f'ep_stall-{ns_at(2.0)}.json'
    assert store.add(drop) != path
    assert store.add(stall) == path  # the same episode and stamp again: still one file
    assert len(list(path.parent.glob('*.json'))) == 2
    assert store.points() == [drop, stall]  # the deeper drop ranks first
    assert store.points('press_button') == [drop, stall]
    assert store.points('other_task') == []
    assert store.next('other_task') is None
    assert store.next('../press_button') is None and store.next('') is None

    assert [store.next('press_button') for _ in range(3)] == [drop, stall, drop]
    restarted = ReturnPointStore(tmp_path / 'store')  # the cursor survives a restart
    assert restarted.next('press_button') == stall
    assert (path.parent / '.cursor').is_file()

    harder = ReturnPoint(**{**stall.__dict__, 'episode_id': 'ep_new', 'score': 0.9})
    restarted.add(harder)  # new points join the rotation in rank order
    assert [restarted.next('press_button') for _ in range(3)] == [harder, drop, stall]


def test_store_skips_corrupt_files_with_a_warning(tmp_path, episodes, caplog):
    store = ReturnPointStore(tmp_path / 'store')
    [stall] = pick_from_episode(episodes / 'robot_1' / 'ep_stall')
    store.add(stall)
    (tmp_path / 'store' / 'press_button' / 'ep_torn-1.json').write_text('{"task": ')
    (tmp_path / 'store' / 'press_button' / '.cursor').write_text('garbage')
    with caplog.at_level(logging.WARNING):
        assert store.points() == [stall]
        assert store.next('press_button') == stall
    assert 'ep_torn-1.json' in caplog.text and 'cursor' in caplog.text


def test_store_refuses_names_that_are_not_one_path_component(tmp_path, episodes):
    [stall] = pick_from_episode(episodes / 'robot_1' / 'ep_stall')
    store = ReturnPointStore(tmp_path / 'store')
    for field, bad in [('task', '../escape'), ('task', ''), ('episode_id', '.hidden')]:
        with pytest.raises(ValueError, match=field):
            store.add(ReturnPoint(**{**stall.__dict__, field: bad}))
    assert not (tmp_path / 'escape').exists()


def test_cli_scans_episodes_and_lists_the_store(tmp_path, episodes, capsys):
    store = tmp_path / 'store'
    (episodes / '.recording' / 'half').mkdir(parents=True)  # a bag still being recorded
    (episodes / '.recording' / 'half' / 'metadata.yaml').write_text('partial\n')
    assert len(episode_bags(episodes)) == 4
    assert main(['scan', str(episodes), '--out', str(store), '--config', str(HELP_YAML)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and any('regression' in line for line in out[:2])
    assert out[-1] == f'2 return points from 2 of 4 episodes in {store}'
    assert main(['scan', str(episodes), '--out', str(store)]) == 0  # again: no duplicates
    assert len(list((store / 'press_button').glob('*.json'))) == 2
    capsys.readouterr()

    assert main(['list', str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('press_button  ep_drop  robot robot_2')
    assert 'regression  score 0.300' in lines[0]
    assert 'ep_stall' in lines[1] and 'stagnation' in lines[1]
    assert lines[-1] == f'2 return points in {store}'

    assert main(['scan', str(episodes), '--out', str(tmp_path / 'none'), '--task', 'x']) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith('0 return points')


def test_cli_reports_bad_input_with_status_2(tmp_path, episodes, capsys):
    assert main(['list', str(tmp_path / 'nowhere')]) == 2
    assert 'nowhere' in capsys.readouterr().err
    bad = tmp_path / 'bad.yaml'
    bad.write_text('window: -1\n')
    assert main(['scan', str(episodes), '--out', str(tmp_path / 's'), '--config', str(bad)]) == 2
    assert 'window -1' in capsys.readouterr().err
    assert main(['bogus']) == 2
    broken = episodes / 'robot_3' / 'broken'
    broken.mkdir(parents=True)
    (broken / 'metadata.yaml').write_text('not: a bag\n')
    assert main(['scan', str(episodes), '--out', str(tmp_path / 's')]) == 0  # one bad bag
    captured = capsys.readouterr()
    assert 'broken' in captured.err
    assert captured.out.splitlines()[-1].endswith(f'of 5 episodes (1 unreadable) in '
                                                  f'{tmp_path / "s"}')
