"""Per-key log throttling."""

from vlac_models.throttle import KeyedThrottle


def test_each_key_has_its_own_period_and_suppressed_count():
    throttle = KeyedThrottle(period=1.0)
    assert throttle.allow('servo', now=0.0) == 0
    assert throttle.allow('gripper', now=0.1) == 0  # another key is not throttled
    assert throttle.allow('servo', now=0.5) is None
    assert throttle.allow('servo', now=0.9) is None
    assert throttle.allow('servo', now=1.0) == 2
    assert throttle.allow('servo', now=1.5) is None
    assert throttle.allow('gripper', now=1.2) == 0
