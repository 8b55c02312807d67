"""Throttling of repeated log messages per key (ROS-free).

rclpy's ``throttle_duration_sec`` throttles per call site, so one helper that logs for several
interfaces would hide all but one of them. ``KeyedThrottle`` throttles per key (e.g. the
command interface) and counts what it suppressed, so the next message can say how many.
"""

from __future__ import annotations

import threading
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


class RejectLog:
    """Throttled, counted reports of rejected input or held steps, one throttle per key.

    ``report(key, message, level)`` counts every call (``count``, thread-safe) and logs at
    most one line per key per ``period`` through ``logger`` (an rclpy logger or a
    ``logging.Logger``: anything with ``info``/``warning``/``error``), saying how many were
    suppressed since. Routine waits go at 'info', degraded input at 'warning', refusals that
    need a person at 'error'.
    """

    LEVELS = ('info', 'warning', 'error')

    def __init__(self, logger, period: float = 2.0) -> None:
        self._logger = logger
        self._throttle = KeyedThrottle(period)
        self._lock = threading.Lock()
        self.count = 0

    def report(self, key: str, message: str, level: str = 'error') -> None:
        """Count one rejection; log it unless ``key`` logged within the period."""
        if level not in self.LEVELS:
            raise ValueError(f'level must be one of {self.LEVELS}, got {level!r}')
        with self._lock:
            self.count += 1
            suppressed = self._throttle.allow(key)
        if suppressed is None:
            return
        text = message + (f' ({suppressed} more since)' if suppressed else '')
        # One call site per severity: rclpy's logger remembers the severity of each call site
        # and raises ValueError when one line logs at two levels (a node died of it).
        if level == 'info':
            self._logger.info(text)
        elif level == 'warning':
            self._logger.warning(text)
        else:
            self._logger.error(text)
