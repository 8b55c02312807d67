"""VOC, VROC, VOC-F1 and NR on hand-computed examples (vlac_models.critic.metrics)."""

import math

import numpy as np
import pytest
from vlac_models.critic.metrics import (
    forward_values,
    negative_rate,
    rank_average,
    reverse_values,
    spearman,
    trajectory_metrics,
    voc,
    voc_f1,
    vroc,
)


def test_ranks_average_ties():
    assert rank_average([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert rank_average([7, 7, 7]).tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match='NaN'):
        rank_average([1.0, float('nan')])


def test_spearman_hand_computed():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3, 4): covariance 4.5 over sqrt(4.5 * 5).
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    # Monotone but non-linear: only ranks count.
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)


def test_spearman_degenerate_cases():
    assert spearman([5, 5, 5], [1, 2, 3]) == 0.0  # a constant sequence carries no order
    assert spearman([1], [1]) == 0.0
    assert spearman([], []) == 0.0
    with pytest.raises(ValueError, match='equal lengths'):
        spearman([1, 2], [1, 2, 3])


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip('scipy.stats')
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 4, 15).astype(float)
        y = rng.normal(size=15)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_voc_of_steady_and_faltering_progress():
    assert forward_values([0.5, 0.5]).tolist() == [0.0, 0.5, 0.75]
    assert voc([0.5, 0.5]) == pytest.approx(1.0)
    # Values 0, 0.5, 0.25: ranks (1, 3, 2) against (1, 2, 3): 1 - 6 * 2 / (3 * 8) = 0.5.
    assert voc([0.5, -0.5]) == pytest.approx(0.5)
    assert voc([0.0, 0.0, 0.0]) == 0.0  # constant values
    assert voc([-0.2, -0.3]) == 0.0  # clipped at 0: constant too
    assert voc([0.2, 0.2, 0.2]) == pytest.approx(1.0)
    assert voc([0.2, float('nan'), 0.2]) == pytest.approx(0.9486833, abs=1e-6)  # a tie
    assert voc([]) == 0.0


def test_vroc_values_fall_when_the_video_runs_backwards():
    # Pairs (f2 -> f1), (f1 -> f0) judged -0.5 each: values 0, 0.5, 0.75 of f0, f1, f2,
    # seen in the reversed order 0.75, 0.5, 0: they fall.
    assert reverse_values([-0.5, -0.5]).tolist() == [0.75, 0.5, 0.0]
    assert vroc([-0.5, -0.5]) == pytest.approx(1.0)
    assert vroc([0.5, 0.5]) == 0.0  # reversed pairs judged as progress: no fall at all
    # (f2 -> f1) = -0.5, (f1 -> f0) = +0.5: values of f0, f1, f2 = 0, 0, 0.5; ranks
    # (1.5, 1.5, 3) against (1, 2, 3): 1.5 / sqrt(1.5 * 2).
    assert vroc([-0.5, 0.5]) == pytest.approx(1.5 / math.sqrt(3.0))
    assert vroc([]) == 0.0


def test_vroc_equals_voc_for_an_antisymmetric_critic():
    forward = [0.1, -0.05, 0.3, 0.0, 0.2]
    assert vroc([-c for c in forward[::-1]]) == pytest.approx(voc(forward))


def test_voc_f1_and_negative_rate():
    assert voc_f1(1.0, 0.5) == pytest.approx(2 / 3)
    assert voc_f1(0.9, 0.9) == pytest.approx(0.9)
    assert voc_f1(0.5, -0.1) == 0.0
    assert voc_f1(0.0, 0.0) == 0.0
    assert negative_rate([0.1, -0.2, 0.0, float('nan'), -0.1]) == pytest.approx(0.5)
    assert negative_rate([]) == 0.0


def test_trajectory_metrics_of_an_ideal_critic():
    n = 10
    forward = [1.0 / (n - 1 - i) for i in range(n - 1)]  # dt / (T - i) with dt = 1
    reverse = [-c for c in forward[::-1]]
    result = trajectory_metrics(forward, reverse)
    assert result == pytest.approx({'voc': 1.0, 'vroc': 1.0, 'voc_f1': 1.0, 'nr': 0.0})
