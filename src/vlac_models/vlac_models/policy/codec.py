"""VLAC action/state text codec: SI end-effector deltas <-> the model's text (ROS-free).

The model reads and writes poses as ``x: -47mm, y: 19mm, z: 66mm, roll: 14 degrees,
pitch: 10 degrees, yaw: 15 degrees, open: 0``: integer millimetres and degrees, angles wrapped
to [-180, 180], gripper 0/1. The state is the same format inside ``<state> ... </state>``
(``vlac_model.prompts.POSE_TEMPLATE``, braces included). Millimetres and degrees exist only
here; everything outside the model boundary is SI.

Parsing is strict: anything that is not exactly this format raises ``ActionParseError``; the
codec never guesses a number.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from vlac_models.policy.base import EefAction
from vlac_models.state import STATE_DIM
from vlac_models.vlac_model.prompts import format_pose

FIELDS = ('x', 'y', 'z', 'roll', 'pitch', 'yaw', 'open')
UNITS = ('mm', 'mm', 'mm', ' degrees', ' degrees', ' degrees', '')
# Canonical ASCII integers only (no '+', no leading zeros, no '-0', at most 6 digits): Python's
# int() would also take Unicode digits and thousands of digits, and the codec never guesses.
_NUMBER = r'(0|-?[1-9][0-9]{0,5})'
_BODY = ', '.join(f'{name}: {_NUMBER}{re.escape(unit)}'
                  for name, unit in zip(FIELDS, UNITS, strict=True))
# Surrounding ASCII whitespace is tolerated; braces only as a pair (the state's form).
_POSE = re.compile(r'\s*(?:\{' + _BODY + r'\}|' + _BODY + r')\s*', re.ASCII)
MAX_MM = 100_000
"""Largest magnitude accepted for a translation field (100 m): beyond it the text is garbage."""


class ActionParseError(ValueError):
    """The text is not a well-formed VLAC pose/action."""


def wrap_degrees(angle: float) -> float:
    """Wrap to [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


def wrap_radians(angle: float) -> float:
    """Wrap to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def _integers(translation_m: Sequence[float], rotation_rad: Sequence[float],
              gripper: float) -> list[int]:
    values = [*translation_m, *rotation_rad, gripper]
    if len(translation_m) != 3 or len(rotation_rad) != 3 \
            or not all(math.isfinite(float(v)) for v in values):
        raise ValueError(f'pose values must be 3 + 3 + 1 finite numbers, got {values!r}')
    mm = [int(round(float(v) * 1000.0)) for v in translation_m]
    if any(abs(v) > MAX_MM for v in mm):
        raise ValueError(f'translation out of range: {translation_m!r} m')
    deg = [int(round(wrap_degrees(math.degrees(float(v))))) for v in rotation_rad]
    deg = [-180 if d == 180 else d for d in deg]
    return [*mm, *deg, 1 if float(gripper) >= 0.5 else 0]


def encode_action(action: EefAction) -> str:
    """Action text (no braces), as the model writes it after ``<action>``."""
    return format_pose(_integers(action.translation, action.rotation, action.gripper))[1:-1]


def encode_state(state: Sequence[float]) -> str:
    """State text (braces included) for ``<state> ... </state>`` from a ``STATE_DIM`` state."""
    s = np.asarray(state, dtype=np.float64).ravel()
    if s.shape != (STATE_DIM,):
        raise ValueError(f'a state has {STATE_DIM} values, got shape {s.shape}')
    return format_pose(_integers(s[:3], s[3:6], s[6]))


def parse_pose(text: str) -> list[int]:
    """The 7 integers of a pose/action text; ``ActionParseError`` unless it matches exactly."""
    if not isinstance(text, str):
        raise ActionParseError(f'expected text, got {type(text).__name__}')
    match = _POSE.fullmatch(text)
    if match is None:
        raise ActionParseError(f'not a VLAC action: {text[:120]!r}')
    values = [int(v) for v in match.groups() if v is not None]
    if any(abs(v) > MAX_MM for v in values[:3]):
        raise ActionParseError(f'translation out of range in {text[:120]!r}')
    if any(abs(v) > 180 for v in values[3:6]):
        raise ActionParseError(f'angle outside [-180, 180] degrees in {text[:120]!r}')
    if values[6] not in (0, 1):
        raise ActionParseError(f'open must be 0 or 1 in {text[:120]!r}')
    return values


def decode_action(text: str) -> EefAction:
    """SI action from the model's text; ``ActionParseError`` for anything malformed."""
    v = parse_pose(text)
    return EefAction(tuple(x / 1000.0 for x in v[:3]),
                     tuple(wrap_radians(math.radians(x)) for x in v[3:6]), float(v[6]))


def decode_state(text: str) -> np.ndarray:
    """SI state vector from a state text (inverse of ``encode_state`` up to rounding)."""
    v = parse_pose(text)
    return np.array([*(x / 1000.0 for x in v[:3]),
                     *(wrap_radians(math.radians(x)) for x in v[3:6]), float(v[6])])
