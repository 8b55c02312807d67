"""The paper's pairwise dataset from real rosbag2 folders (vlac_training.critic_dataset)."""

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vlac_ros.bags import STAGING_DIR, BagWriter
from vlac_training.critic_dataset import (
    BACKWARD_JUMP,
    BACKWARD_STEP,
    FORWARD_JUMP,
    FORWARD_STEP,
    Trajectory,
    build_dataset,
    find_bags,
    load_bag_trajectory,
    load_trajectories,
    pixel_difference,
    stride_indices,
)

SIZE = 32
TASK = 'move the red square to the right'


def square_frame(position: int, colour=(230, 30, 30)) -> np.ndarray:
    """A grey frame with a 16x16 square at column ``position`` (2 px moves change > 1 %)."""
    frame = np.full((SIZE, SIZE, 3), 60, np.uint8)
    frame[8:24, position:position + 16] = colour
    return frame


def moving_frames(n: int) -> list[np.ndarray]:
    """Frames whose consecutive pixel difference is over 1 % (the background brightens)."""
    frames = []
    for k in range(n):
        frame = square_frame(min(k, SIZE - 16))
        frame[frame == 60] = 40 + 4 * k
        frames.append(frame)
    return frames


def image_msg(frame: np.ndarray, stamp: float, encoding: str = 'rgb8') -> Image:
    if encoding == 'bgr8':
        data = frame[..., ::-1]
    elif encoding == 'rgba8':
        data = np.concatenate([frame, np.full(frame.shape[:2] + (1,), 255, np.uint8)], 2)
    elif encoding == 'bgra8':
        data = np.concatenate([frame[..., ::-1], np.zeros(frame.shape[:2] + (1,), np.uint8)], 2)
    elif encoding == 'mono8':
        data = frame[..., 0]
    else:
        data = frame
    data = np.ascontiguousarray(data)
    msg = Image(height=frame.shape[0], width=frame.shape[1], encoding=encoding,
                step=data.shape[1] * (data.shape[2] if data.ndim == 3 else 1),
                data=data.tobytes())
    msg.header.stamp.sec = int(stamp)
    msg.header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
    return msg


def write_bag(path, frames, task=TASK, custom=None, rate=10.0, encoding='rgb8',
              task_topic='/task', bag_time_scale=1.0):
    """A bag with frames at ``rate`` (header stamps) and the task sentence as a String.

    The bag's own receive times run ``bag_time_scale`` times as fast as the header stamps
    (plus a delay), so a reader that used them instead of the headers would stride wrongly.
    """
    with BagWriter(path, custom or {}) as writer:
        if task is not None:
            writer.write(task_topic, 1, String(data=task))
        for k, frame in enumerate(frames):
            stamp = 1000.0 + k / rate
            bag_ns = int(2e9 + (k / rate) * bag_time_scale * 1e9 + 3e6)
            writer.write('/camera/image_raw', bag_ns, image_msg(frame, stamp, encoding))
    return path


def trajectory(n, task=TASK, success=True, path='t', frames=None):
    frames = np.stack(frames if frames is not None else moving_frames(n))
    return Trajectory(path, task, frames, np.arange(len(frames)) * 0.2, success,
                      {} if success is None else {'success': str(success).lower()})


def bag_trajectory(root, name, n, task=TASK, success=True, frames=None):
    """Record ``n`` sampled frames at 5 Hz into a bag (10 Hz, a copy in between), load them."""
    frames = frames if frames is not None else moving_frames(n)
    recorded = [f for frame in frames for f in (frame, frame)][:2 * n - 1]
    bag = write_bag(root / name, recorded, task=task,
                    custom={'success': str(success).lower()})
    loaded = load_bag_trajectory(bag, stride=0.2)
    assert len(loaded.frames) == n
    return loaded


def test_stride_is_in_seconds_of_the_header_stamps(tmp_path):
    frames = [square_frame(k) for k in range(16)] + [square_frame(15)] * 5  # 21 distinct-ish
    bag = write_bag(tmp_path / 'episode', frames, bag_time_scale=0.5)
    every = load_bag_trajectory(bag, stride=0.0)
    assert len(every.frames) == 21
    fifth = load_bag_trajectory(bag, stride=0.2)
    assert len(fifth.frames) == 11
    np.testing.assert_allclose(fifth.stamps, np.arange(11) * 0.2, atol=1e-6)
    for k, frame in enumerate(fifth.frames):
        np.testing.assert_array_equal(frame, frames[2 * k])
    half = load_bag_trajectory(bag, stride=0.5)
    np.testing.assert_allclose(half.stamps, [0.0, 0.5, 1.0, 1.5, 2.0], atol=1e-6)
    assert load_bag_trajectory(bag, stride=0.2, frame_size=16).frames.shape == (11, 16, 16, 3)


def test_stride_indices_pick_the_nearest_frames():
    stamps = [0.0, 0.09, 0.21, 0.3, 0.41, 0.52]
    assert stride_indices(stamps, 0.2).tolist() == [0, 2, 4]
    assert stride_indices(stamps, 0.0).tolist() == list(range(6))
    with pytest.raises(ValueError, match='-0.1'):
        stride_indices(stamps, -0.1)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'])
def test_encodings_are_converted_to_rgb(tmp_path, encoding):
    frames = [square_frame(k, colour=(200, 120, 40)) for k in range(3)]
    bag = write_bag(tmp_path / encoding, frames, encoding=encoding)
    loaded = load_bag_trajectory(bag, stride=0.0)
    for got, want in zip(loaded.frames, frames, strict=True):
        if encoding == 'mono8':
            want = np.repeat(want[..., :1], 3, axis=2)
        np.testing.assert_array_equal(got, want)


def test_an_unsupported_encoding_is_named(tmp_path):
    bag = tmp_path / 'depth'
    with BagWriter(bag) as writer:
        writer.write('/task', 1, String(data=TASK))
        writer.write('/camera/image_raw', 2, Image(height=2, width=2, encoding='16UC1', step=4,
                                                  data=bytes(8)))
    with pytest.raises(ValueError, match='16UC1'):
        load_bag_trajectory(bag)


def test_task_comes_from_the_topic_then_the_metadata_then_fails(tmp_path):
    frames = moving_frames(3)
    both = write_bag(tmp_path / 'both', frames, custom={'instruction': 'from metadata'})
    assert load_bag_trajectory(both).task == TASK
    assert load_bag_trajectory(both, task='override').task == 'override'
    meta = write_bag(tmp_path / 'meta', frames, task=None,
                     custom={'instruction': 'from metadata', 'success': 'false'})
    loaded = load_bag_trajectory(meta)
    assert loaded.task == 'from metadata' and loaded.success is False
    other = write_bag(tmp_path / 'other_topic', frames, task_topic='/instruction')
    assert load_bag_trajectory(other, task_topic='/instruction').task == TASK
    none = write_bag(tmp_path / 'none', frames, task=None)
    with pytest.raises(ValueError, match='none'):
        load_bag_trajectory(none)
    with pytest.raises(ValueError, match='/camera/other'):
        load_bag_trajectory(both, image_topic='/camera/other')
    with pytest.raises(FileNotFoundError, match='missing'):
        load_bag_trajectory(tmp_path / 'missing')


def test_bags_are_found_recursively_without_staged_recordings(tmp_path):
    frames = moving_frames(3)
    write_bag(tmp_path / 'task_a' / 'ep_0', frames)
    write_bag(tmp_path / 'task_b' / 'deeper' / 'ep_1', frames, custom={'success': 'true'})
    (tmp_path / 'task_a' / STAGING_DIR / 'ep_2').mkdir(parents=True)
    (tmp_path / 'task_a' / STAGING_DIR / 'ep_2' / 'metadata.yaml').write_text('{}')
    assert [p.name for p in find_bags([tmp_path])] == ['ep_0', 'ep_1']
    loaded = load_trajectories([tmp_path], stride=0.0)
    assert [t.success for t in loaded] == [None, True]
    with pytest.raises(FileNotFoundError):
        find_bags([tmp_path / 'nowhere'])


def test_four_pair_groups_with_labels_dt_over_remaining(tmp_path):
    traj = bag_trajectory(tmp_path, 'episode', 11)
    data = build_dataset([traj], seed=1, mismatch_prob=0.0)
    big_t = 10
    assert len(data) == 4 * big_t
    assert not data.pair_stagnant.any()
    for i in range(big_t):
        group = slice(4 * i, 4 * i + 4)
        kinds = data.pair_kind[group].tolist()
        assert kinds == [FORWARD_STEP, BACKWARD_STEP, FORWARD_JUMP, BACKWARD_JUMP]
        a, b, label = data.pair_a[group], data.pair_b[group], data.pair_label[group]
        assert (a[0], b[0]) == (i, i + 1) and (a[1], b[1]) == (i + 1, i)
        dt = b[2] - i
        assert a[2] == i and (a[3], b[3]) == (i + dt, i)
        assert (2 <= dt <= big_t - i) if big_t - i >= 2 else dt == 1
        np.testing.assert_allclose(label, np.array([1, -1, dt, -dt]) / (big_t - i), rtol=1e-6)
    assert (np.abs(data.pair_label) <= 1).all()


def test_stagnant_pairs_are_labelled_zero(tmp_path):
    frames = moving_frames(8)
    frames[4] = frames[5] = frames[6] = frames[3].copy()
    frames[5][0, 0] = 61  # a tiny change stays under 1 %
    traj = bag_trajectory(tmp_path, 'episode', 8, frames=frames)
    data = build_dataset([traj], mismatch_prob=0.0)
    for a, b, label, stagnant in zip(data.pair_a, data.pair_b, data.pair_label,
                                     data.pair_stagnant, strict=True):
        still = 3 <= a <= 6 and 3 <= b <= 6
        assert stagnant == still
        assert (label == 0) == still
        assert stagnant == (pixel_difference(data.frames[a], data.frames[b]) < 0.01)


def test_about_five_percent_mismatched_task_negatives(tmp_path):
    trajs = [bag_trajectory(tmp_path, f'p{k}', 31, task=f'task {k % 2}') for k in range(20)]
    data = build_dataset(trajs, seed=3)
    share = data.pair_mismatched.mean()
    assert 0.03 <= share <= 0.07, share
    own = np.array([info[1] for info in data.trajectories])[data.pair_traj]
    assert (data.pair_task[data.pair_mismatched] != own[data.pair_mismatched]).all()
    assert (data.pair_label[data.pair_mismatched] == 0).all()
    assert (data.pair_task[~data.pair_mismatched] == own[~data.pair_mismatched]).all()
    assert data.tasks == ['task 0', 'task 1']
    # One instruction only: no other trajectory's task to swap in.
    alone = build_dataset(trajs[::2], seed=3, mismatch_prob=0.5)
    assert not alone.pair_mismatched.any() and not alone.done_mismatched.any()
    with pytest.raises(ValueError, match='1.5'):
        build_dataset(trajs, mismatch_prob=1.5)


def test_done_labels_and_failing_trajectories(tmp_path):
    success = bag_trajectory(tmp_path, 'ok', 41)
    failure = bag_trajectory(tmp_path, 'failed', 9, success=False)
    data = build_dataset([success, failure], mismatch_prob=0.0)
    rows = data.done_frame[data.done_traj == 0]
    labels = data.done_label[data.done_traj == 0]
    # T = 40: below 32 -> 0, above 38 -> 1, 32..38 unlabelled.
    assert rows.tolist() == list(range(32)) + [39, 40]
    assert labels.tolist() == [0.0] * 32 + [1.0, 1.0]
    assert not (data.pair_traj == 1).any()  # a failure teaches no progress
    failed_rows = data.done_frame[data.done_traj == 1]
    assert failed_rows.tolist() == list(range(41, 50))
    assert (data.done_label[data.done_traj == 1] == 0).all()
    without = build_dataset([success, failure], failure_done_labels=False)
    assert not (without.done_traj == 1).any()


def test_frames_are_stored_once_and_construction_is_seeded():
    trajs = [trajectory(12, path='a'), trajectory(15, task='other', path='b')]
    first = build_dataset(trajs, seed=5)
    again = build_dataset(trajs, seed=5)
    assert first.frames.shape == (27, SIZE, SIZE, 3)  # a frame table, not frames per pair
    assert first.pair_a.max() < 27 and first.pair_b.max() < 27
    assert [t[3:] for t in first.trajectories] == [(0, 12), (12, 15)]
    for name in ('pair_a', 'pair_b', 'pair_task', 'pair_label', 'done_frame', 'done_label'):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = build_dataset(trajs, seed=6)
    assert not np.array_equal(first.pair_b, other.pair_b)
    assert first.summary()['pairs'] == len(first)
