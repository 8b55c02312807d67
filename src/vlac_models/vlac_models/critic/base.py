"""Critic interface shared by the backends, the reward node, evaluation and training (ROS-free).

Frames are (H, W, 3) uint8 RGB arrays in any size; each backend resizes as its model needs.
A pairwise score ``c(a, b)`` is the progress from frame a to frame b toward the task: the share
of the remaining task covered, in [-1, 1] (negative when b is further from completion). A
backend returns NaN for a pair whose model output could not be parsed (and logs why); it never
raises on model output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class PairQuery:
    """One pairwise progress question.

    Attributes:
        task: the task sentence.
        frame_a: earlier frame, (H, W, 3) uint8 RGB.
        frame_b: later frame, (H, W, 3) uint8 RGB.
        reference: optional reference demonstration frames in time order (in-context scoring).
        first_frame: optional first frame of the current trajectory (used with reference).

    """

    task: str
    frame_a: np.ndarray
    frame_b: np.ndarray
    reference: tuple[np.ndarray, ...] = ()
    first_frame: np.ndarray | None = None


@dataclass(frozen=True)
class DoneQuery:
    """Is the task complete in ``frame``? (optionally with a reference demonstration)."""

    task: str
    frame: np.ndarray
    reference: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class QueryShape:
    """What a backend sends its model for one pairwise query (for logs and diagnostics).

    Attributes:
        images: images in the query (2 for a plain pair).
        reference_frames: reference demonstration frames among them (0: no in-context mode).
        reference_block: the prompt text that introduces the reference ('' without one).

    """

    images: int
    reference_frames: int = 0
    reference_block: str = ''


class NoInContextMode(ValueError):
    """A reference demonstration was given to a backend that cannot use one."""


@runtime_checkable
class Critic(Protocol):
    """What every critic backend offers.

    ``in_context`` says whether the backend scores with a reference demonstration (the
    paper's one-shot mode); a backend without it raises ``NoInContextMode`` for a query that
    carries a reference instead of ignoring it. ``pair_shape`` describes the query the
    backend builds for a ``PairQuery`` (ValueError as ``score_pairs`` would raise).
    """

    model_id: str
    in_context: bool

    def pair_shape(self, query: PairQuery) -> QueryShape:
        """Images, reference frames and reference prompt block of one pairwise query."""

    def score_pairs(self, queries: Sequence[PairQuery]) -> np.ndarray:
        """Return float32 deltas, shape (N,), in [-1, 1]; NaN where the model output was bad."""

    def done_probability(self, queries: Sequence[DoneQuery]) -> np.ndarray:
        """Return float32 probabilities that each task is complete, shape (N,), in [0, 1]."""

    def close(self) -> None:
        """Free the model (and any GPU memory)."""


def accumulate_values(deltas: Sequence[float], v0: float = 0.0) -> np.ndarray:
    """Accumulated progress ``v_i = v_{i-1} + c_i (1 - v_{i-1})`` after each delta, in [0, 1].

    NaN deltas (unparseable model output) leave the value unchanged. Values are clipped to
    [0, 1] (a strongly negative delta from v close to 0 cannot go below 0).
    """
    values = np.empty(len(deltas), np.float64)
    v = float(v0)
    for i, c in enumerate(deltas):
        if np.isfinite(c):
            v = min(1.0, max(0.0, v + float(c) * (1.0 - v)))
        values[i] = v
    return values


def load_critic(backend: str, path: str, device: str = 'cpu', **options) -> Critic:
    """Load a critic backend ('compact' or 'vlac') from ``path``; ValueError if unknown.

    Raises FileNotFoundError (missing checkpoint) or ValueError (bad checkpoint) with the path.
    """
    if backend == 'compact':
        from vlac_models.critic.compact import CompactCritic

        return CompactCritic.load(path, device=device, **options)
    if backend == 'vlac':
        from vlac_models.critic.vlac_backend import VlacCritic

        return VlacCritic.load(path, device=device, **options)
    raise ValueError(f"unknown critic backend {backend!r}; use 'compact' or 'vlac'")
