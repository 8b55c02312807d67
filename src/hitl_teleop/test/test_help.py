"""Help requests from stalled or regressing progress (ROS-free core)."""

import dataclasses
import math
import pathlib

from hitl_teleop.help import HelpConfig, HelpDetector, HelpReason
import pytest

HELP_YAML = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'teleop' / 'help.yaml'


def feed(detector, samples):
    """Every request the detector raises for (stamp, value) samples."""
    return [e for e in (detector.update(t, v) for t, v in samples) if e is not None]


def ramp(start, stop, step, value):
    """(stamp, value(stamp)) every ``step`` s from ``start`` to ``stop`` inclusive."""
    count = int(round((stop - start) / step))
    return [(start + k * step, value(start + k * step)) for k in range(count + 1)]


def test_steady_rise_asks_nothing():
    detector = HelpDetector(HelpConfig())
    detector.reset(0.0)
    assert feed(detector, ramp(0.0, 15.0, 0.5, lambda t: t / 15.0)) == []


def test_flat_progress_is_stagnation_after_a_window():
    detector = HelpDetector(HelpConfig(window=3.0, min_rise=0.05, grace=2.0))
    detector.reset(10.0)
    events = feed(detector, ramp(10.0, 14.5, 0.5, lambda t: 0.2))
    [event] = events
    assert event.reason is HelpReason.STAGNATION
    assert event.stamp == 13.0 and event.since == 10.0 and event.progress == 0.2
    assert event.score == pytest.approx(0.05)
    assert event.detail == 'progress rose 0.00 in the last 3.0 s (< 0.05)'


def test_stagnation_needs_a_full_window_of_samples():
    detector = HelpDetector(HelpConfig(window=3.0, grace=0.0))
    detector.reset(0.0)
    assert feed(detector, [(0.5, 0.1), (2.0, 0.1), (3.0, 0.1)]) == []  # 2.5 s of samples
    [event] = feed(detector, [(3.5, 0.1)])
    assert event.since == 0.5


def test_no_request_in_the_grace_period():
    detector = HelpDetector(HelpConfig(window=0.5, grace=2.0))
    detector.reset(0.0)
    events = feed(detector, ramp(0.0, 3.0, 0.25, lambda t: 0.0))
    assert events[0].stamp == 2.0


def test_drop_is_regression_and_beats_stagnation():
    detector = HelpDetector(HelpConfig(max_drop=0.1, grace=0.0, window=1.0))
    detector.reset(0.0)
    rising = ramp(0.0, 2.0, 0.5, lambda t: 0.25 * t)  # 0.5 at 2 s, the running maximum
    assert feed(detector, rising) == []
    # From 2.5 s on the value is both flat over the window and 0.2 below the maximum.
    [event] = feed(detector, [(2.5, 0.3), (3.0, 0.45), (3.5, 0.3)])
    assert event.reason is HelpReason.REGRESSION
    assert event.stamp == 2.5 and event.since == 2.0
    assert event.score == pytest.approx(0.2)
    assert event.detail == 'progress fell 0.20 below its maximum 0.50 (> 0.1)'


def test_small_dip_is_not_regression():
    detector = HelpDetector(HelpConfig(max_drop=0.1, grace=0.0))
    detector.reset(0.0)
    samples = [(0.0, 0.0), (0.5, 0.5), (1.0, 0.45), (1.5, 0.6), (2.0, 0.8)]
    assert feed(detector, samples) == []


def test_cooldown_spaces_requests_while_still_stuck():
    detector = HelpDetector(HelpConfig(window=3.0, grace=2.0, cooldown=5.0))
    detector.reset(0.0)
    events = feed(detector, ramp(0.0, 20.0, 0.5, lambda t: 0.1))
    assert [e.stamp for e in events] == [3.0, 8.0, 13.0, 18.0]
    assert all(e.reason is HelpReason.STAGNATION for e in events)


def test_reset_starts_a_new_episode():
    detector = HelpDetector(HelpConfig(window=1.0, grace=1.0, cooldown=100.0))
    detector.reset(0.0)
    assert feed(detector, [(0.0, 0.9), (1.0, 0.2)])[0].reason is HelpReason.REGRESSION
    detector.reset(50.0)  # forgets the maximum 0.9, the cooldown and the history
    assert detector.update(40.0, 0.0) is None  # a late score of the previous episode
    assert feed(detector, [(50.0, 0.2), (50.5, 0.2)]) == []  # grace
    [event] = feed(detector, [(51.0, 0.2)])
    assert event.reason is HelpReason.STAGNATION and event.since == 50.0


def test_without_reset_the_first_value_starts_the_episode():
    detector = HelpDetector(HelpConfig(window=1.0, grace=1.0))
    assert feed(detector, [(7.0, 0.3), (7.5, 0.3)]) == []
    assert feed(detector, [(8.0, 0.3)])[0].since == 7.0


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf])
def test_non_finite_progress_is_rejected(value):
    detector = HelpDetector(HelpConfig())
    detector.reset(0.0)
    with pytest.raises(ValueError, match=str(value)):
        detector.update(1.0, value)


def test_out_of_order_stamps_are_ignored():
    detector = HelpDetector(HelpConfig(window=1.0, grace=0.0, max_drop=0.1))
    detector.reset(0.0)
    assert feed(detector, [(0.0, 0.0), (0.5, 0.3), (1.0, 0.6)]) == []
    # A stale score from before: not a drop from 0.6, and not the window's reference.
    assert detector.update(0.2, 0.0) is None
    assert feed(detector, [(1.5, 0.9)]) == []


def test_config_validation_names_the_bad_value():
    assert HelpConfig().validate() == HelpConfig()
    for name, bad in [('window', 0.0), ('min_rise', -0.1), ('max_drop', 1.5),
                      ('grace', -1.0), ('cooldown', math.nan), ('window', 'long')]:
        with pytest.raises(ValueError, match=name):
            dataclasses.replace(HelpConfig(), **{name: bad}).validate()
    with pytest.raises(ValueError, match='window'):
        HelpDetector(HelpConfig(window=-1.0))


def test_yaml_loads_with_the_defaults(tmp_path):
    assert HelpConfig.from_yaml(HELP_YAML) == HelpConfig()
    custom = tmp_path / 'help.yaml'
    custom.write_text('window: 5\nmin_rise: 0.02\n')
    assert HelpConfig.from_yaml(custom) == HelpConfig(window=5.0, min_rise=0.02)
    custom.write_text('windw: 5\n')
    with pytest.raises(ValueError, match='windw'):
        HelpConfig.from_yaml(custom)
    custom.write_text('max_drop: 2.0\n')
    with pytest.raises(ValueError, match=r'help\.yaml.*max_drop 2\.0'):
        HelpConfig.from_yaml(custom)
    custom.write_text('- 1\n')
    with pytest.raises(ValueError, match='mapping'):
        HelpConfig.from_yaml(custom)
    assert HelpConfig.from_dict(None) == HelpConfig()


def test_the_cores_never_import_rclpy():
    import subprocess
    import sys

    code = ('import sys, hitl_teleop.help, hitl_teleop.return_points; '
            "sys.exit('rclpy' in sys.modules)")
    assert subprocess.run([sys.executable, '-c', code], check=False).returncode == 0
