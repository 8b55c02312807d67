"""Per-transition rewards from VLAC progress scores (ROS-free).

Reward options (``RewardOptions.option``):
  - ``'progress'`` (default): the VLAC dense progress delta of the two observations a
    transition spans, times ``progress_scale`` (the delta is already a fraction in [-1, 1],
    i.e. the paper's ``c / 100``).
  - ``'success'``: the sparse baseline: ``success_reward`` on the episode's last transition if
    the episode succeeded, 0 everywhere else.
  - ``'progress+success'``: the progress reward plus the success bonus on the last transition.

Every transition gets exactly one reward. Transition t spans ``observation_stamp[t]`` ->
``observation_stamp[t+1]``; the last one ends at the episode's end stamp (given, e.g. the
episode runner's ``EpisodeResult.end_time``, or one median control period after its own
observation).

Join of critic scores to transitions (``assign_rewards``). The reward node scores frame pairs
``(stamp_a, stamp_b)`` with its own stride, which need not equal the control period and whose
camera stamps need not coincide with the observation stamps. The rule treats each score as
progress spread uniformly over its interval and gives each transition the part of every score
that falls inside it:

    r_t = sum_k delta_k * |[s_t, s_{t+1}] n [a_k, b_k]| / (b_k - a_k)

after snapping every score boundary that lies within ``stamp_tolerance`` of an observation
stamp onto that stamp (camera and observation stamps of the same frame differ by jitter only).
Consequences, each covered by a test:
  - same stride and frames: each transition gets exactly the one matching delta;
  - critic stride longer than the control period (e.g. 0.2 s vs 0.1 s): a delta is split
    over the transitions it spans in proportion to time (linear interpolation of progress);
  - critic stride shorter: a transition accumulates every delta inside it;
  - in all cases the episode's summed reward equals the summed progress of the covered time:
    nothing is counted twice or lost at the seams.
Scores are otherwise used as given: pairwise deltas are not exactly additive (each is a share
of the *remaining* task), and splitting one treats progress as linear over a fraction of a
second. Scores of another task (when the task is known), with ``stamp_b <= stamp_a``, or
overlapping an earlier score by more than the tolerance (a restarted critic) are dropped and
counted; a non-finite delta is a ``RewardJoinError``. The part of a transition no score covers
earns 0; ``coverage[t]`` is the covered share of its interval, and an episode where more than
``max_uncovered_fraction`` of the transitions have ``coverage < min_coverage`` (critic down or
too slow) raises ``RewardJoinError`` so the trainer can set it aside instead of learning from
zeros. Success, when not given, is the critic's debounced ``done`` on any score ending inside
the episode.

Alternative (``rewards_from_critic``): score an episode's frames directly through a critic
(``vlac_models.critic.base.Critic``): one pair per transition ``(frame_t, frame_{t+1})``, so no
join is needed; a NaN score (unparseable model output) leaves that transition uncovered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Sequence

import numpy as np
from vlac_models.config import doc
from vlac_models.stamps import stamp_ns

REWARD_OPTIONS = ('progress', 'success', 'progress+success')


class RewardJoinError(ValueError):
    """An episode's rewards cannot be computed (bad score, or too little critic coverage)."""


@dataclass(frozen=True)
class RewardOptions:
    """How transitions get their reward."""

    option: str = field(default='progress', metadata=doc(
        "'progress' (VLAC delta), 'success' (sparse) or 'progress+success'"))
    progress_scale: float = field(default=1.0, metadata=doc(
        'reward per unit of progress delta (the delta is a fraction in [-1, 1])'))
    success_reward: float = field(default=1.0, metadata=doc(
        "reward (or bonus) on a successful episode's last transition"))
    stamp_tolerance: float = field(default=0.02, metadata=doc(
        'score boundaries this close to an observation stamp snap onto it, s'))
    min_coverage: float = field(default=0.5, metadata=doc(
        'share of a transition the scores must cover for it to count as covered'))
    max_uncovered_fraction: float = field(default=0.1, metadata=doc(
        'episodes with more uncovered transitions than this share are refused'))
    done_threshold: float = field(default=0.9, metadata=doc(
        'done probability of the last frame that counts as success (critic path only)'))

    def validate(self) -> 'RewardOptions':
        """Raise ValueError naming the bad value; return self."""
        if self.option not in REWARD_OPTIONS:
            raise ValueError(f'reward option {self.option!r} must be one of {REWARD_OPTIONS}')
        for name in ('progress_scale', 'success_reward'):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f'{name} {getattr(self, name)} must be finite')
        if not 0.0 <= self.stamp_tolerance <= 1.0:
            raise ValueError(f'stamp_tolerance {self.stamp_tolerance} s outside 0..1')
        for name in ('min_coverage', 'max_uncovered_fraction', 'done_threshold'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'{name} {getattr(self, name)} outside [0, 1]')
        return self

    @property
    def uses_progress(self) -> bool:
        """Whether the critic's progress enters the reward."""
        return self.option in ('progress', 'progress+success')

    @property
    def uses_success(self) -> bool:
        """Whether the episode outcome enters the reward."""
        return self.option in ('success', 'progress+success')





@dataclass(frozen=True)
class ProgressRecord:
    """The part of a ``vlac_interfaces/ProgressReward`` the join needs."""

    stamp_a_ns: int
    stamp_b_ns: int
    delta: float
    done: bool = False
    task: str = ''

    @classmethod
    def from_msg(cls, msg: Any) -> 'ProgressRecord':
        """From a ProgressReward message (rclpy or rosbags)."""
        return cls(stamp_ns(msg.stamp_a), stamp_ns(msg.stamp_b), float(msg.delta),
                   bool(msg.done), str(msg.task))


@dataclass
class RewardAssignment:
    """Rewards of one episode and how they came about (arrays shape (T,))."""

    rewards: np.ndarray
    progress: np.ndarray
    """Joined progress delta per transition (before scaling), 0 where uncovered."""
    coverage: np.ndarray
    """Share of each transition's interval covered by scores, in [0, 1]."""
    success: bool
    uncovered_steps: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Scores left out, by reason: 'task', 'empty', 'overlap'."""


def _finish(progress: np.ndarray, coverage: np.ndarray, success: bool,
            options: RewardOptions, dropped: dict[str, int]) -> RewardAssignment:
    uncovered = int((coverage < options.min_coverage).sum())
    if options.uses_progress and uncovered > options.max_uncovered_fraction * len(progress):
        raise RewardJoinError(
            f'{uncovered} of {len(progress)} transitions have less than '
            f'{options.min_coverage:.0%} critic coverage (allowed: '
            f'{options.max_uncovered_fraction:.0%}); dropped scores: {dropped}')
    rewards = np.zeros(len(progress), dtype=np.float64)
    if options.uses_progress:
        rewards += options.progress_scale * progress
    if options.uses_success and success:
        rewards[-1] += options.success_reward
    return RewardAssignment(rewards, progress, coverage, bool(success), uncovered, dropped)


def transition_bounds(observation_stamps_ns: Sequence[int],
                      end_stamp_ns: int | None = None) -> np.ndarray:
    """The T+1 interval bounds of T transitions, ns (non-decreasing).

    Two control steps may act on the same camera frame (a control rate at or above the camera
    rate): the first of them then spans no time and gets no progress.
    """
    stamps = np.asarray(observation_stamps_ns, dtype=np.int64)
    if stamps.ndim != 1 or stamps.size == 0:
        raise RewardJoinError('an episode needs at least one observation stamp')
    if end_stamp_ns is None:
        if stamps.size < 2:
            raise RewardJoinError('one transition: give end_stamp_ns for its interval')
        end_stamp_ns = int(stamps[-1] + np.median(np.diff(stamps)))
    bounds = np.append(stamps, np.int64(end_stamp_ns))
    steps = np.diff(bounds)
    if (steps < 0).any() or bounds[-1] <= bounds[0]:
        bad = int(np.flatnonzero(steps < 0)[0]) if (steps < 0).any() else len(steps) - 1
        raise RewardJoinError(f'observation stamps must not decrease: step {bad} spans '
                              f'{bounds[bad]} -> {bounds[bad + 1]} ns')
    return bounds


def _snap(stamps: np.ndarray, bounds: np.ndarray, tolerance_ns: int) -> np.ndarray:
    """Move each stamp onto the nearest bound when within the tolerance."""
    nearest = np.clip(np.searchsorted(bounds, stamps), 1, len(bounds) - 1)
    left, right = bounds[nearest - 1], bounds[nearest]
    closest = np.where(stamps - left <= right - stamps, left, right)
    return np.where(np.abs(stamps - closest) <= tolerance_ns, closest, stamps)


def assign_rewards(observation_stamps_ns: Sequence[int], records: Sequence[ProgressRecord],
                   options: RewardOptions, end_stamp_ns: int | None = None,
                   success: bool | None = None, task: str | None = None
                   ) -> RewardAssignment:
    """Join progress scores to one episode's transitions (see the module docstring).

    ``observation_stamps_ns[t]`` is transition t's observation stamp (T values, increasing);
    ``end_stamp_ns`` closes the last transition. ``success`` None: any score ending inside
    the episode with ``done`` set. ``task``: when given, scores of another task are dropped.
    Raises RewardJoinError (bad stamps, non-finite delta, too little coverage).
    """
    options.validate()
    bounds = transition_bounds(observation_stamps_ns, end_stamp_ns)
    tolerance = int(round(options.stamp_tolerance * 1e9))
    dropped = {'task': 0, 'empty': 0, 'overlap': 0}

    kept: list[ProgressRecord] = []
    for record in sorted(records, key=lambda r: (r.stamp_a_ns, r.stamp_b_ns)):
        if task is not None and record.task and record.task != task:
            dropped['task'] += 1
            continue
        if not math.isfinite(record.delta):
            raise RewardJoinError(f'non-finite progress delta {record.delta} for frames '
                                  f'{record.stamp_a_ns} -> {record.stamp_b_ns} ns')
        if record.stamp_b_ns <= record.stamp_a_ns:
            dropped['empty'] += 1
            continue
        if kept and record.stamp_a_ns < kept[-1].stamp_b_ns - tolerance:
            dropped['overlap'] += 1
            continue
        kept.append(record)

    n = len(bounds) - 1
    progress = np.zeros(n, dtype=np.float64)
    coverage = np.zeros(n, dtype=np.float64)
    if kept:
        a = np.array([r.stamp_a_ns for r in kept], dtype=np.int64)
        b = np.array([r.stamp_b_ns for r in kept], dtype=np.int64)
        delta = np.array([r.delta for r in kept], dtype=np.float64)
        a_snap, b_snap = _snap(a, bounds, tolerance), _snap(b, bounds, tolerance)
        collapsed = b_snap <= a_snap  # a score shorter than the tolerance: keep it unsnapped
        a_snap, b_snap = np.where(collapsed, a, a_snap), np.where(collapsed, b, b_snap)
        # overlap[t, k] = |[s_t, s_t+1] n [a_k, b_k]|, ns
        start = np.maximum(bounds[:-1, None], a_snap[None, :])
        end = np.minimum(bounds[1:, None], b_snap[None, :])
        overlap = np.clip(end - start, 0, None).astype(np.float64)
        progress = overlap @ (delta / (b_snap - a_snap).astype(np.float64))
        span = np.diff(bounds).astype(np.float64)
        coverage = np.where(span > 0, np.minimum(overlap.sum(axis=1) / np.maximum(span, 1.0),
                                                 1.0), 1.0)  # an empty span has nothing to cover
    if success is None:
        success = any(r.done and bounds[0] < r.stamp_b_ns <= bounds[-1] + tolerance
                      for r in kept)
    return _finish(progress, coverage, bool(success), options, dropped)


def rewards_from_critic(frames: Sequence[np.ndarray], critic: Any, task: str,
                        options: RewardOptions, success: bool | None = None,
                        reference: Sequence[np.ndarray] = (), batch_size: int = 32
                        ) -> RewardAssignment:
    """Score an episode's T+1 frames pairwise through ``critic``; T transitions.

    ``frames[t]`` is the (H, W, 3) uint8 RGB frame of observation t, ``frames[T]`` the frame
    after the last action. With a ``reference`` demonstration the pairs are scored in context
    (first frame = ``frames[0]``). ``success`` None: the critic's done probability of the
    last frame against ``options.done_threshold``.
    """
    from vlac_models.critic.base import DoneQuery, PairQuery

    options.validate()
    if len(frames) < 2:
        raise RewardJoinError(f'{len(frames)} frames: need T + 1 >= 2 for T transitions')
    reference = tuple(reference)
    first = frames[0] if reference else None
    queries = [PairQuery(task, frames[t], frames[t + 1], reference, first)
               for t in range(len(frames) - 1)]
    scores = np.concatenate([
        np.asarray(critic.score_pairs(queries[i:i + batch_size]), dtype=np.float64)
        for i in range(0, len(queries), batch_size)])
    if scores.shape != (len(queries),):
        raise RewardJoinError(f'critic returned {scores.shape} scores for {len(queries)} pairs')
    finite = np.isfinite(scores)
    progress = np.where(finite, scores, 0.0)
    if success is None and options.uses_success:
        done = critic.done_probability([DoneQuery(task, frames[-1], reference)])
        success = bool(float(np.asarray(done).ravel()[0]) >= options.done_threshold)
    return _finish(progress, finite.astype(np.float64), bool(success), options,
                   {'unparseable': int((~finite).sum())})
