"""Progress-critic metrics of the VLAC paper: VOC, VROC, VOC-F1 and NR (pure functions).

A trajectory of ``n`` frames ``f_0 .. f_{n-1}`` (time order, e.g. sampled every 0.2 s) is
scored pair by pair and the deltas are accumulated into values (``base.accumulate_values``):

- VOC (value-order correlation): the Spearman rank correlation between the values
  ``v_0 = 0, v_1 .. v_{n-1}`` of the forward pairs ``c(f_{k-1}, f_k)`` and the time order
  ``0 .. n-1``. 1 for values that rise monotonically along a successful video.
- VROC (reverse value-order correlation): the video is fed backwards, ``g_k = f_{n-1-k}``,
  so the critic is asked the reversed pairs ``c(g_{k-1}, g_k) = c(f_{n-k}, f_{n-1-k})``, and a
  good critic judges them negative. A backward delta is read as the paper's labels define
  it: ``c(f_{j+1}, f_j) = -(share of the progress remaining at f_j that f_{j+1} had
  covered)``, so the backward judgments imply the values ``u(f_0) = 0,
  u(f_{j+1}) = u(f_j) - c(f_{j+1}, f_j) (1 - u(f_j))`` (``accumulate_values`` of the negated
  deltas in frame order). Along the reversed video these values should fall; VROC is the
  Spearman correlation between ``u(g_k)`` and the frames' original time order ``n-1-k``
  (1 when they fall steadily as the video runs backwards, -1 when the critic mistakes the
  reversed video for progress). A critic that is antisymmetric, ``c(b, a) = -c(a, b)``, has
  VROC = VOC; a critic that is not (the VLAC model) can differ.
- VOC-F1 = 2 VOC VROC / (VOC + VROC) when both are positive, else 0.
- NR (negative rate): the fraction of the scored (finite) pairs whose delta is negative.

Spearman correlation uses average ranks for ties; a constant sequence (no variance) has a
correlation of 0 by definition here (no order information), not NaN.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vlac_models.critic.base import accumulate_values


def rank_average(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``values`` (float64, shape (n,)), tied values sharing their average rank.

    Raises ValueError on a NaN value (ranks of NaN are undefined).
    """
    x = np.asarray(values, np.float64).ravel()
    if np.isnan(x).any():
        raise ValueError(f'cannot rank values containing NaN: {x.tolist()}')
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1.0  # rank of each distinct value's first copy
    return (first_rank + 0.5 * (counts - 1))[inverse.ravel()]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation of ``x`` and ``y`` (average ranks for ties), in [-1, 1].

    0 when either sequence is constant or shorter than 2. Raises ValueError if the lengths
    differ or a value is NaN.
    """
    rx, ry = rank_average(x), rank_average(y)
    if len(rx) != len(ry):
        raise ValueError(f'spearman needs equal lengths, got {len(rx)} and {len(ry)}')
    if len(rx) < 2:
        return 0.0
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    if denominator <= 1e-12:
        return 0.0
    return float(np.clip((rx * ry).sum() / denominator, -1.0, 1.0))


def forward_values(deltas: Sequence[float]) -> np.ndarray:
    """Values ``v_0 = 0, v_1 .. v_n`` of a video from its ``n`` consecutive forward deltas."""
    return np.concatenate([[0.0], accumulate_values(deltas)])


def reverse_values(reverse_deltas: Sequence[float]) -> np.ndarray:
    """Values implied by a reversed video's ``n`` deltas, in the reversed video's order.

    ``reverse_deltas[k-1] = c(g_{k-1}, g_k)`` with ``g`` the frames reversed; the result
    ``u(g_0) .. u(g_n)`` should fall (see the module docstring): ``u(g_n) = 0`` is the value
    of the original first frame.
    """
    negated = -np.asarray(reverse_deltas, np.float64)[::-1]
    return forward_values(negated)[::-1]


def voc(deltas: Sequence[float]) -> float:
    """VOC of a video from its consecutive forward deltas ``c(f_{k-1}, f_k)``, k = 1..n-1.

    Spearman correlation of ``forward_values(deltas)`` with time order; NaN deltas leave the
    value unchanged. 0 for an empty sequence or constant values.
    """
    values = forward_values(deltas)
    return spearman(values, np.arange(len(values)))


def vroc(reverse_deltas: Sequence[float]) -> float:
    """VROC of a video from the deltas of its reversed pairs, in the reversed video's order.

    ``reverse_deltas[k-1] = c(f_{n-k}, f_{n-1-k})`` for k = 1..n-1 (the video fed backwards).
    Spearman correlation of ``reverse_values(reverse_deltas)`` with the frames' original time
    order ``n-1 .. 0``: 1 when the values fall steadily as the video runs backwards.
    """
    values = reverse_values(reverse_deltas)
    return spearman(values, np.arange(len(values))[::-1])


def voc_f1(voc_value: float, vroc_value: float) -> float:
    """Harmonic mean ``2 VOC VROC / (VOC + VROC)``; 0 unless both are positive."""
    if not (voc_value > 0.0 and vroc_value > 0.0):
        return 0.0
    return 2.0 * voc_value * vroc_value / (voc_value + vroc_value)


def negative_rate(deltas: Sequence[float]) -> float:
    """NR: the fraction of finite deltas that are negative (0 when there are none)."""
    c = np.asarray(deltas, np.float64).ravel()
    c = c[np.isfinite(c)]
    return float((c < 0.0).mean()) if len(c) else 0.0


def trajectory_metrics(deltas: Sequence[float], reverse_deltas: Sequence[float]
                       ) -> dict[str, float]:
    """VOC, VROC, VOC-F1 and NR (of the forward deltas) of one video, as a dict."""
    forward, backward = voc(deltas), vroc(reverse_deltas)
    return {'voc': forward, 'vroc': backward, 'voc_f1': voc_f1(forward, backward),
            'nr': negative_rate(deltas)}
