"""THE stamp conversions of the stack: builtin_interfaces Time/Duration <-> seconds and ns.

ROS-free: ``to_time`` and ``to_duration`` import builtin_interfaces only when called.

Work on rclpy messages and on bag messages (rosbags) alike: anything with ``sec`` and
``nanosec``. Integer nanoseconds are exact and used wherever stamps are compared or joined
(rewards to transitions, bag timestamps); float seconds for ages and rates.
"""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_ns(stamp: Any) -> int:
    """Integer nanoseconds of a Time or Duration."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_seconds(stamp: Any) -> float:
    """Seconds of a Time or Duration."""
    return stamp.sec + stamp.nanosec * 1e-9


def is_zero(stamp: Any) -> bool:
    """True for the zero stamp (unstamped, or "now" as ros2_control reads commands)."""
    return stamp.sec == 0 and stamp.nanosec == 0


def _split(seconds: float) -> dict[str, int]:
    nanoseconds = int(round(seconds * 1e9))
    return {'sec': nanoseconds // NS_PER_S, 'nanosec': nanoseconds % NS_PER_S}


def to_time(seconds: float):
    """builtin_interfaces/Time of ``seconds``."""
    from builtin_interfaces.msg import Time

    return Time(**_split(seconds))


def time_from_ns(nanoseconds: int):
    """builtin_interfaces/Time of integer nanoseconds, exactly."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(nanoseconds) // NS_PER_S, nanosec=int(nanoseconds) % NS_PER_S)


def to_duration(seconds: float):
    """builtin_interfaces/Duration of ``seconds``."""
    from builtin_interfaces.msg import Duration

    return Duration(**_split(seconds))
