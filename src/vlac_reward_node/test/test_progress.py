"""Episode progress tracking, frame handoff and config validation (no ROS)."""

import threading
import time

import numpy as np
import pytest
from vlac_reward_node.progress import Frame, FrameMailbox, ProgressTracker, RewardConfig
from vlac_reward_node.reference import load_reference
from vlac_ros.bags import BagWriter
from vlac_ros.images import numpy_to_image


def frame(t: float) -> Frame:
    return Frame(np.full((4, 4, 3), int(t * 10) % 255, np.uint8), t)


def test_pairs_follow_the_stride_in_seconds_and_chain_anchor_to_frame():
    tracker = ProgressTracker(stride=0.1, threshold=0.9, debounce=2)
    tracker.reset('press the yellow button')
    camera = [frame(i / 30.0) for i in range(31)]  # 30 Hz for 1 s
    submitted = [f for f in camera if tracker.wants(f)]
    assert tracker.anchor is camera[0] and tracker.first is camera[0]
    gaps = np.diff([camera[0].stamp] + [f.stamp for f in submitted])
    assert np.all(gaps >= 0.09) and np.all(gaps < 0.1 + 1 / 30)
    assert len(submitted) == 10  # every third frame of a 30 Hz camera
    for f in submitted:
        anchor = tracker.anchor
        score = tracker.record(f, 0.1, 0.0)
        assert score.anchor is anchor and score.frame is f and tracker.anchor is f


def test_value_accumulates_and_done_needs_consecutive_confidence():
    tracker = ProgressTracker(stride=0.1, threshold=0.9, debounce=3)
    tracker.reset('task')
    tracker.wants(frame(0.0))
    values = [tracker.record(frame(0.1 * (i + 1)), d, p).value
              for i, (d, p) in enumerate([(0.5, 0.95), (0.5, 0.95), (-0.5, 0.2), (0.5, 0.95),
                                          (float('nan'), 0.95), (0.5, 0.95)])]
    np.testing.assert_allclose(values, [0.5, 0.75, 0.625, 0.8125, 0.8125, 0.90625])
    assert [s.done for s in tracker.history] == [False, False, False, False, False, True]
    tracker.record(frame(1.0), 0.0, 0.0)
    assert tracker.done, 'done stays latched until the episode resets'
    tracker.reset('task')
    assert tracker.value == 0.0 and not tracker.done and tracker.anchor is None


def test_mailbox_keeps_only_the_newest_and_counts_drops():
    box = FrameMailbox()
    assert box.take() is None
    box.put(frame(0.1))
    box.put(frame(0.2))
    box.put(frame(0.3))
    assert box.take().stamp == 0.3 and box.dropped == 2
    assert box.take() is None


def test_mailbox_drain_scores_one_at_a_time_and_strands_nothing():
    """Rounds of eight concurrent camera callbacks against a slow scorer.

    After each round every frame was scored or dropped, once, and none is left pending.
    """
    box, scored, active, overlaps = FrameMailbox(), [], [0], [0]
    guard = threading.Lock()

    def score(f):
        with guard:
            active[0] += 1
            overlaps[0] += active[0] > 1
        time.sleep(0.0005)
        with guard:
            active[0] -= 1
            scored.append(f.stamp)

    rounds, cameras = 60, 8
    barrier = threading.Barrier(cameras)
    stranded = []

    def camera(k):
        for i in range(rounds):
            barrier.wait()
            box.put(frame(i * 100 + k))
            box.drain(score)
            if barrier.wait() == 0 and box.pending():  # every caller has returned
                stranded.append(i)
            barrier.wait()

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps[0] == 0, 'two callers scored at once'
    assert not stranded, f'frames left pending after rounds {stranded}'
    assert len(scored) + box.dropped == rounds * cameras
    assert len(set(scored)) == len(scored) and box.dropped > 0 and len(scored) >= rounds


@pytest.mark.parametrize('override,match', [
    ({'backend': 'gpt'}, "backend 'gpt'"), ({'model_path': ''}, 'model_path'),
    ({'stride': 0.0}, 'stride 0.0'), ({'done_threshold': 1.5}, 'done_threshold'),
    ({'done_debounce': 0}, 'done_debounce'), ({'device': 'tpu'}, "device 'tpu'"),
])
def test_config_names_the_bad_value(override, match):
    values = {'model_path': '/models/critic', **override}
    with pytest.raises(ValueError, match=match):
        RewardConfig(**values).validate()


def test_reference_from_image_folder_and_bag(tmp_path):
    import cv2

    folder = tmp_path / 'demo_images'
    folder.mkdir()
    for i in range(9):
        cv2.imwrite(str(folder / f'{i:03d}.png'), np.full((8, 8, 3), i * 20, np.uint8))
    frames = load_reference(str(folder), count=5)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 40, 80, 120, 160]
    with BagWriter(tmp_path / 'demo_bag') as bag:
        for i in range(4):
            bag.write('/camera/image_raw', i, numpy_to_image(
                np.full((6, 6, 3), (i * 50, 0, 0), np.uint8), 'rgb8'))
    frames = load_reference(str(tmp_path / 'demo_bag'), count=3)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 100, 150]
    with pytest.raises(FileNotFoundError):
        load_reference(str(tmp_path / 'missing'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no frames'):
        load_reference(str(tmp_path / 'empty'))
