"""Throttling of repeated log messages per key (ROS-free).

rclpy's ``throttle_duration_sec`` throttles per call site, so one helper that logs for several
interfaces would hide all but one of them. ``KeyedThrottle`` throttles per key (e.g. the
command interface) and counts what it suppressed, so the next message can say how many.
"""

from __future__ import annotations

import time


class KeyedThrottle:
    """Allow one message per key per ``period`` seconds."""

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float | None = None) -> int | None:
        """Return the number suppressed since the last allowed message, or None to stay quiet."""
        now = time.monotonic() if now is None else now
        if now - self._last.get(key, -float('inf')) < self.period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
