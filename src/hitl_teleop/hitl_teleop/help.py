"""The robot asks for help when the critic's measured progress stalls or regresses (ROS-free).

``HelpDetector`` watches the accumulated progress value of one episode (``ProgressReward.value``,
0..1) and raises a ``HelpRequestEvent`` when

* **regression**: the value fell more than ``max_drop`` below its running maximum of the
  episode (the robot undid work: dropped the object, pushed it away), or
* **stagnation**: over the last ``window`` seconds the value rose less than ``min_rise`` (the
  robot is stuck).

Regression wins when both hold. No request comes in the first ``grace`` seconds of an episode
(the arm only starts moving) nor within ``cooldown`` seconds of the previous request, so the
operator is asked again while the robot stays stuck, but not at every score.

The same detector runs live (help requests to the operator) and offline over recorded
episodes (``hitl_teleop.return_points`` picks the states the robot got stuck in), so both
agree on what a stall is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
import enum
import math
import os
import pathlib
from typing import Any

from vlac_models.config import doc


class HelpReason(enum.Enum):
    """Why the robot asks for help."""

    STAGNATION = 'stagnation'
    REGRESSION = 'regression'


@dataclass(frozen=True)
class HelpConfig:
    """Thresholds of the help requests (``config/teleop/help.yaml``); times in seconds."""

    window: float = field(default=3.0, metadata=doc(
        'stagnation: length of the progress history looked at, s'))
    min_rise: float = field(default=0.05, metadata=doc(
        'stagnation: the value must rise at least this much over the window (progress, 0..1)'))
    max_drop: float = field(default=0.1, metadata=doc(
        'regression: largest allowed fall below the running maximum of the episode (0..1)'))
    grace: float = field(default=2.0, metadata=doc(
        'no request in the first seconds after the episode start (the arm starts moving), s'))
    cooldown: float = field(default=5.0, metadata=doc(
        'least time between two requests of one episode, s'))

    def validate(self) -> 'HelpConfig':
        """Raise ValueError naming the bad value; return self."""
        for name in ('window', 'min_rise', 'max_drop', 'grace', 'cooldown'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f'{name} {value!r} must be a number')
            if not math.isfinite(value):
                raise ValueError(f'{name} {value} must be finite')
        if not 0.1 <= self.window <= 600.0:
            raise ValueError(f'window {self.window} s outside 0.1..600')
        if not 0.0 < self.min_rise <= 1.0:
            raise ValueError(f'min_rise {self.min_rise} outside (0, 1]')
        if not 0.0 < self.max_drop <= 1.0:
            raise ValueError(f'max_drop {self.max_drop} outside (0, 1]')
        if not 0.0 <= self.grace <= 600.0:
            raise ValueError(f'grace {self.grace} s outside 0..600')
        if not 0.0 <= self.cooldown <= 3600.0:
            raise ValueError(f'cooldown {self.cooldown} s outside 0..3600')
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> 'HelpConfig':
        """Validated config from a mapping of field values; ValueError on unknown keys."""
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise ValueError(f'unknown help config keys {unknown}; known: {sorted(names)}')
        return cls(**data).validate()

    @classmethod
    def from_yaml(cls, path: os.PathLike | str) -> 'HelpConfig':
        """Validated config from a YAML file whose top-level keys are the fields."""
        import yaml

        path = pathlib.Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f'help config {path} is not YAML: {err}') from None
        if data is not None and not isinstance(data, dict):
            raise ValueError(f'help config {path} must be a mapping, got {type(data).__name__}')
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f'help config {path}: {err}') from None


@dataclass(frozen=True)
class HelpRequestEvent:
    """One help request of the robot."""

    reason: HelpReason
    stamp: float
    """s, time of the progress value that raised the request"""
    progress: float
    """accumulated progress value (0..1) at ``stamp``"""
    detail: str
    """human sentence saying what was measured, for the operator"""
    since: float = math.nan
    """s, when the trouble began: the start of the stagnant window (stagnation) or the time of
    the running maximum the value fell from (regression)"""
    score: float = 0.0
    """how bad, in progress units: the shortfall below what was expected (stagnation: the
    value at ``since`` plus ``min_rise``; regression: the running maximum)"""


class HelpDetector:
    """Raises help requests from one episode's stream of progress values.

    Call ``reset(start)`` at the start of each episode, then ``update(stamp, value)`` for each
    progress score in time order. Without a ``reset`` the episode starts at the first value.
    """

    def __init__(self, config: HelpConfig) -> None:
        self.config = config.validate()
        self.reset(None)

    def reset(self, start: float | None) -> None:
        """A new episode starts at time ``start`` (s): forget the previous one."""
        if start is not None and not math.isfinite(start):
            raise ValueError(f'episode start {start} must be finite')
        self._start = start
        self._history: deque[tuple[float, float]] = deque()
        self._last: float | None = None
        self._max_value = -math.inf
        self._max_stamp = math.nan
        self._last_request: float | None = None

    def update(self, stamp: float, value: float) -> HelpRequestEvent | None:
        """Take one progress value (0..1) at time ``stamp`` (s); a request if one is due.

        A value that is not finite raises ValueError. Stamps older than the previous one or
        before the episode start are ignored (None): late scores never raise a request.
        """
        if not math.isfinite(value):
            raise ValueError(f'progress value {value} at {stamp} s is not finite')
        if not math.isfinite(stamp):
            raise ValueError(f'progress stamp {stamp} is not finite')
        if self._start is None:
            self._start = stamp
        if stamp < self._start or (self._last is not None and stamp < self._last):
            return None
        self._last = stamp
        cfg = self.config
        if value > self._max_value:
            self._max_value, self._max_stamp = value, stamp
        self._history.append((stamp, value))
        # Keep the newest sample at or before stamp - window as the window's reference.
        while len(self._history) >= 2 and self._history[1][0] <= stamp - cfg.window:
            self._history.popleft()
        if stamp < self._start + cfg.grace:
            return None
        if self._last_request is not None and stamp < self._last_request + cfg.cooldown:
            return None
        event = self._regression(stamp, value) or self._stagnation(stamp, value)
        if event is not None:
            self._last_request = stamp
        return event

    def _regression(self, stamp: float, value: float) -> HelpRequestEvent | None:
        drop = self._max_value - value
        if drop <= self.config.max_drop:
            return None
        return HelpRequestEvent(
            HelpReason.REGRESSION, stamp, value,
            f'progress fell {drop:.2f} below its maximum {self._max_value:.2f} '
            f'(> {self.config.max_drop:g})', since=self._max_stamp, score=drop)

    def _stagnation(self, stamp: float, value: float) -> HelpRequestEvent | None:
        since, reference = self._history[0]
        if since > stamp - self.config.window:
            return None  # less than a window of samples yet
        rise = value - reference
        if rise >= self.config.min_rise:
            return None
        return HelpRequestEvent(
            HelpReason.STAGNATION, stamp, value,
            f'progress rose {rise:.2f} in the last {stamp - since:.1f} s '
            f'(< {self.config.min_rise:g})', since=since, score=self.config.min_rise - rise)
