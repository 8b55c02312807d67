"""THE episode assembly (ROS-free): which transitions and progress scores make up an episode.

The robot-side runner (which records each episode and publishes its result) and the off-board
trainer (which stores and trains it) both assemble episodes with ``Episode``, so they cannot
disagree about an episode's contents:

- A transition (``vlac_interfaces/Transition``) belongs to the episode whose id it carries;
  one per step, the newest copy of a step wins (history replayed after a restart).
- A progress score (``vlac_interfaces/ProgressReward``) belongs to the episode when both its
  frames lie inside the episode's bounds: ``start <= stamp_a`` and ``stamp_b <= end``. The
  runner sets ``start`` when it hands the arm to the policy (or the operator), after the
  reset, and ``end`` when it takes it back; ``EpisodeResult.start_time``/``end_time`` carry
  both to the trainer. Scores of the reset, of the previous episode or of the next one are
  never counted, and none is counted twice (a score is identified by its two frame stamps).
- An episode is complete when its transitions number what the result counts and a score
  reaches its end (its later frame within ``END_SCORE_WINDOW_NS`` of ``end``).

Messages are duck-typed: rclpy messages and bag messages (rosbags) alike.
"""

from __future__ import annotations

from typing import Any

from vlac_models.stamps import stamp_ns

END_SCORE_WINDOW_NS = 1_000_000_000
"""A score whose later frame is this close to the episode's end completes its scores."""


class Episode:
    """One episode's transitions and scores, collected by the rules of the module docstring."""

    def __init__(self, episode_id: str, start_ns: int | None = None,
                 end_ns: int | None = None) -> None:
        self.episode_id = episode_id
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.transitions: dict[int, Any] = {}
        self._scores: dict[tuple[int, int], Any] = {}

    @classmethod
    def from_result(cls, result: Any) -> 'Episode':
        """An empty episode with the id and bounds of a ``vlac_interfaces/EpisodeResult``."""
        return cls(result.episode_id, stamp_ns(result.start_time), stamp_ns(result.end_time))

    # -- bounds --------------------------------------------------------------------------------
    def start(self, start_ns: int) -> None:
        """The arm is handed to the policy (or the operator): scores count from here."""
        self.start_ns = int(start_ns)

    def end(self, end_ns: int) -> None:
        """The arm is taken back: no score after this counts."""
        self.end_ns = int(end_ns)

    def covers(self, score: Any) -> bool:
        """True when both frames of ``score`` lie inside the episode's bounds."""
        if self.start_ns is None or stamp_ns(score.stamp_a) < self.start_ns:
            return False
        return self.end_ns is None or stamp_ns(score.stamp_b) <= self.end_ns

    # -- messages ------------------------------------------------------------------------------
    def add_transition(self, msg: Any) -> bool:
        """Keep a transition of this episode; False (ignored) for another episode's."""
        if msg.episode_id != self.episode_id:
            return False
        self.transitions[int(msg.step)] = msg
        return True

    def add_score(self, msg: Any) -> bool:
        """Keep a score inside the bounds; False (ignored) outside them or seen before."""
        if not self.covers(msg):
            return False
        key = (stamp_ns(msg.stamp_a), stamp_ns(msg.stamp_b))
        if key in self._scores:
            return False
        self._scores[key] = msg
        return True

    # -- contents ------------------------------------------------------------------------------
    @property
    def scores(self) -> list[Any]:
        """The episode's scores in the order of their later frame."""
        return [self._scores[k] for k in sorted(self._scores, key=lambda k: (k[1], k[0]))]

    def ordered_transitions(self) -> list[Any]:
        """The transitions by step."""
        return [self.transitions[k] for k in sorted(self.transitions)]

    @property
    def steps(self) -> int:
        """Control steps taken: one more than the highest step seen (0 before any)."""
        return max(self.transitions) + 1 if self.transitions else 0

    @property
    def interventions(self) -> int:
        """Steps whose executed action came from the operator."""
        return sum(bool(t.is_intervention) for t in self.transitions.values())

    @property
    def versions(self) -> tuple[int, int]:
        """Lowest and highest policy version that acted (0, 0 before any transition)."""
        versions = [int(t.policy_version) for t in self.transitions.values()]
        return (min(versions), max(versions)) if versions else (0, 0)

    @property
    def progress_return(self) -> float:
        """Sum of the episode's progress deltas (a monitoring figure)."""
        return float(sum(float(s.delta) for s in self._scores.values()))

    def complete(self, expected_steps: int) -> bool:
        """All ``expected_steps`` transitions and a score reaching the end have arrived."""
        if len(self.transitions) < expected_steps or self.end_ns is None:
            return False
        return any(b >= self.end_ns - END_SCORE_WINDOW_NS for _, b in self._scores)
