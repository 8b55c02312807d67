"""Reward options and the join of critic scores to transitions, on hand-made episodes."""

from types import SimpleNamespace

import numpy as np
import pytest
from rl_trainer.rewards import (
    ProgressRecord,
    RewardJoinError,
    RewardOptions,
    assign_rewards,
    rewards_from_critic,
    stamp_ns,
)

MS = 1_000_000
S = 1_000_000_000
T0 = 1_700_000_000 * S  # wall-clock-like stamps
OBS = [T0 + k * 100 * MS for k in range(4)]  # 10 Hz control: 4 transitions, end at +400 ms
END = T0 + 400 * MS


def rec(a_ms, b_ms, delta, done=False, task=''):
    return ProgressRecord(T0 + int(a_ms * MS), T0 + int(b_ms * MS), delta, done, task)


def test_same_stride_gives_each_transition_its_own_delta_despite_jitter():
    # Camera stamps a few ms off the observation stamps (within the 20 ms tolerance).
    records = [rec(3, 98, 0.1), rec(98, 204, 0.2), rec(204, 301, -0.05), rec(301, 397, 0.3)]
    out = assign_rewards(OBS, records, RewardOptions(), END)
    np.testing.assert_allclose(out.progress, [0.1, 0.2, -0.05, 0.3])
    np.testing.assert_allclose(out.rewards, [0.1, 0.2, -0.05, 0.3])
    np.testing.assert_allclose(out.coverage, 1.0)
    assert out.success is False and out.uncovered_steps == 0


def test_a_longer_critic_stride_is_split_in_proportion_to_time():
    records = [rec(0, 200, 0.2), rec(200, 400, 0.4)]
    out = assign_rewards(OBS, records, RewardOptions(), END)
    np.testing.assert_allclose(out.progress, [0.1, 0.1, 0.2, 0.2])


def test_a_shorter_critic_stride_accumulates():
    records = [rec(50 * k, 50 * (k + 1), 0.01 * (k + 1)) for k in range(8)]
    out = assign_rewards(OBS, records, RewardOptions(), END)
    np.testing.assert_allclose(out.progress, [0.03, 0.07, 0.11, 0.15])


def test_the_join_conserves_total_progress_for_any_stride():
    rng = np.random.default_rng(0)
    obs = np.cumsum(rng.integers(80, 120, size=50)) * MS + T0
    end = int(obs[-1] + 100 * MS)
    cuts = np.sort(rng.integers(obs[0], end, size=30))
    cuts = np.unique(np.concatenate([[obs[0]], cuts, [end]]))
    records = [ProgressRecord(int(a), int(b), float(d))
               for a, b, d in zip(cuts[:-1], cuts[1:], rng.uniform(-0.1, 0.2, len(cuts) - 1),
                                  strict=True)]
    out = assign_rewards(obs, records, RewardOptions(stamp_tolerance=0.0), end)
    assert out.rewards.sum() == pytest.approx(sum(r.delta for r in records))
    np.testing.assert_allclose(out.coverage, 1.0)


@pytest.mark.parametrize('option, success, expected', [
    ('progress', None, [0.1, 0.2, -0.05, 0.3]),
    ('success', None, [0.0, 0.0, 0.0, 1.0]),          # success from the critic's done
    ('success', False, [0.0, 0.0, 0.0, 0.0]),         # the episode result overrides it
    ('progress+success', None, [0.1, 0.2, -0.05, 1.3]),
    ('progress+success', False, [0.1, 0.2, -0.05, 0.3]),
])
def test_each_reward_option(option, success, expected):
    records = [rec(0, 100, 0.1), rec(100, 200, 0.2), rec(200, 300, -0.05),
               rec(300, 400, 0.3, done=True)]
    out = assign_rewards(OBS, records, RewardOptions(option=option), END, success=success)
    np.testing.assert_allclose(out.rewards, expected)
    scaled = assign_rewards(OBS, records, RewardOptions(option=option, progress_scale=10.0,
                                                        success_reward=5.0), END,
                            success=success)
    progress = np.array([0.1, 0.2, -0.05, 0.3]) * 10.0 * ('progress' in option)
    bonus = 5.0 * ((success is not False) and 'success' in option)
    np.testing.assert_allclose(scaled.rewards, progress + np.array([0, 0, 0, bonus]))


def test_missing_critic_scores_refuse_the_episode_for_progress_but_not_for_success():
    records = [rec(0, 100, 0.1), rec(100, 200, 0.2)]  # critic went silent halfway
    with pytest.raises(RewardJoinError, match='2 of 4 transitions'):
        assign_rewards(OBS, records, RewardOptions(), END)
    out = assign_rewards(OBS, records, RewardOptions(max_uncovered_fraction=0.5), END)
    np.testing.assert_allclose(out.rewards, [0.1, 0.2, 0.0, 0.0])
    assert out.uncovered_steps == 2
    out = assign_rewards(OBS, records, RewardOptions(option='success'), END, success=True)
    np.testing.assert_allclose(out.rewards, [0, 0, 0, 1.0])


def test_foreign_empty_and_overlapping_scores_are_dropped_and_counted():
    records = [rec(0, 200, 0.2, task='stack'), rec(0, 200, 0.9, task='push'),
               rec(150, 250, 0.5, task='stack'),  # overlaps: a restarted critic
               rec(300, 300, 0.7), rec(200, 400, 0.4)]
    out = assign_rewards(OBS, records, RewardOptions(), END, task='stack')
    assert out.dropped == {'task': 1, 'empty': 1, 'overlap': 1}
    np.testing.assert_allclose(out.progress, [0.1, 0.1, 0.2, 0.2])


def test_bad_input_raises():
    with pytest.raises(RewardJoinError, match='non-finite'):
        assign_rewards(OBS, [rec(0, 100, float('nan'))], RewardOptions(), END)
    with pytest.raises(RewardJoinError, match='must not decrease'):
        assign_rewards([T0 + 10 * MS, T0], [], RewardOptions(option='success'), END)
    # Two steps on the same camera frame: the first spans no time and gets no progress.
    same = assign_rewards([T0, T0, T0 + 100 * MS], [rec(0, 200, 0.4)], RewardOptions(),
                          T0 + 200 * MS)
    assert same.progress[0] == 0.0 and same.coverage[0] == 1.0
    np.testing.assert_allclose(same.progress, [0.0, 0.2, 0.2])
    with pytest.raises(ValueError, match="'dense'"):
        RewardOptions(option='dense').validate()
    # Without an end stamp the last transition lasts one median control period.
    out = assign_rewards(OBS, [rec(300, 400, 0.3)], RewardOptions(max_uncovered_fraction=1.0))
    np.testing.assert_allclose(out.progress, [0, 0, 0, 0.3])


def test_records_come_from_progress_messages():
    msg = SimpleNamespace(stamp_a=SimpleNamespace(sec=3, nanosec=5),
                          stamp_b=SimpleNamespace(sec=4, nanosec=0), delta=0.25, done=True,
                          task='stack')
    assert ProgressRecord.from_msg(msg) == ProgressRecord(3 * S + 5, 4 * S, 0.25, True, 'stack')
    assert stamp_ns(msg.stamp_b) == 4 * S


class BrightnessCritic:
    """A real, if simple, critic: progress is the change of mean brightness (0 -> 255)."""

    model_id = 'test:brightness'

    def __init__(self):
        self.pairs = []

    def score_pairs(self, queries):
        self.pairs += [(q.frame_a[0, 0, 0], q.frame_b[0, 0, 0]) for q in queries]
        out = [(q.frame_b.mean() - q.frame_a.mean()) / 255.0 for q in queries]
        return np.array([np.nan if q.frame_b[0, 0, 1] == 1 else v
                         for q, v in zip(queries, out, strict=True)], np.float32)

    def done_probability(self, queries):
        return np.array([q.frame.mean() / 255.0 for q in queries], np.float32)

    def close(self):
        pass


def frame(level, flag=0):
    image = np.full((4, 4, 3), level, np.uint8)
    if flag:
        image[0, 0, 1] = flag
    return image


def test_scoring_frames_through_a_critic():
    levels = [0, 51, 102, 153, 255]
    frames = [frame(v) for v in levels]
    critic = BrightnessCritic()
    out = rewards_from_critic(frames, critic, 'brighten', RewardOptions(option='progress+success'),
                              batch_size=3)
    assert critic.pairs == list(zip(levels[:-1], levels[1:], strict=True))
    np.testing.assert_allclose(out.progress, np.diff(levels) / 255.0, rtol=1e-5, atol=1e-6)
    assert out.success  # last frame fully bright: done probability 1
    np.testing.assert_allclose(out.rewards[-1], 102 / 255 + 1.0, rtol=1e-5)

    frames[2] = frame(102, flag=1)  # unparseable output for the pair (1, 2)
    out = rewards_from_critic(frames, critic, 'brighten',
                              RewardOptions(max_uncovered_fraction=0.25))
    np.testing.assert_allclose(out.coverage, [1, 0, 1, 1])
    assert out.rewards[1] == 0.0 and out.dropped == {'unparseable': 1}
    with pytest.raises(RewardJoinError, match='1 of 4'):
        rewards_from_critic(frames, critic, 'brighten', RewardOptions())


@pytest.mark.parametrize('seed', range(20))
def test_rewards_sum_to_the_progress_over_the_steps_acted(seed):
    """Random strides, jitter, a critic that began before the first action.

    The rewards add up to each score weighted by its share of [first observation, end].
    """
    rng = np.random.default_rng(seed)
    period, stride = 0.1e9, rng.choice([0.1e9, 0.2e9, 0.3e9, 0.05e9])
    first = int(1e9 + rng.uniform(0, 0.4e9))  # the policy's first observation
    stamps = [int(first + k * period + rng.uniform(-5e6, 5e6)) for k in range(30)]
    end = stamps[-1] + int(period)
    edges = np.arange(1e9 - rng.uniform(0, 0.2e9), end + 1, stride).astype(np.int64)
    edges = edges[edges <= end]
    records = [ProgressRecord(int(a), int(b), float(rng.uniform(-0.1, 0.3)))
               for a, b in zip(edges[:-1], edges[1:], strict=True)]
    expected = sum(r.delta * max(0, min(r.stamp_b_ns, end) - max(r.stamp_a_ns, stamps[0]))
                   / (r.stamp_b_ns - r.stamp_a_ns) for r in records)
    got = assign_rewards(stamps, records, RewardOptions(stamp_tolerance=0.0,
                                                        max_uncovered_fraction=1.0),
                         end_stamp_ns=end).rewards.sum()
    assert got == pytest.approx(expected, abs=1e-9)
