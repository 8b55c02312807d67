"""Property tests of the VLAC action/state text codec (SI <-> millimetres and degrees)."""

import math
import re

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from vlac_models.policy.base import EefAction
from vlac_models.policy.codec import (
    ActionParseError,
    decode_action,
    decode_state,
    encode_action,
    encode_state,
    parse_pose,
)

PAPER_TEXT = ('x: -47mm, y: 19mm, z: 66mm, roll: 14 degrees, pitch: 10 degrees, '
              'yaw: 15 degrees, open: 0')
CANONICAL = re.compile(
    r'x: (-?\d+)mm, y: (-?\d+)mm, z: (-?\d+)mm, roll: (-?\d+) degrees, '
    r'pitch: (-?\d+) degrees, yaw: (-?\d+) degrees, open: ([01])', re.ASCII)

metres = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)
radians = st.floats(-20.0, 20.0, allow_nan=False, allow_infinity=False)
gripper = st.floats(0.0, 1.0, allow_nan=False)
actions = st.builds(lambda t, r, g: EefAction(tuple(t), tuple(r), g),
                    st.lists(metres, min_size=3, max_size=3),
                    st.lists(radians, min_size=3, max_size=3), gripper)


def angle_error_deg(a: float, b: float) -> float:
    """Smallest absolute difference of two angles, degrees."""
    return abs((math.degrees(a - b) + 180.0) % 360.0 - 180.0)


@settings(max_examples=300, deadline=None)
@given(actions)
@example(EefAction((0.0005, -0.0005, 0.0), (math.pi, -math.pi, math.radians(179.6)), 0.5))
def test_action_round_trip_within_rounding(action):
    text = encode_action(action)
    assert CANONICAL.fullmatch(text), text
    back = decode_action(text)
    for got, want in zip(back.translation, action.translation, strict=True):
        assert abs(got - want) <= 0.0005 + 1e-12
    for got, want in zip(back.rotation, action.rotation, strict=True):
        assert -math.pi <= got <= math.pi
        assert angle_error_deg(got, want) <= 0.5 + 1e-9
    assert back.gripper == (1.0 if action.gripper >= 0.5 else 0.0)
    # The text is a fixed point: encoding the decoded action gives the same text.
    assert encode_action(back) == text


@settings(max_examples=200, deadline=None)
@given(actions)
def test_angles_in_text_are_wrapped_to_180(action):
    values = parse_pose(encode_action(action))
    assert all(-180 <= v <= 180 for v in values[3:6])
    assert values[6] in (0, 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(metres, min_size=3, max_size=3), st.lists(radians, min_size=3, max_size=3),
       gripper)
def test_state_round_trip(position, rpy, opening):
    state = np.array([*position, *rpy, opening])
    text = encode_state(state)
    assert text.startswith('{') and text.endswith('}')
    assert CANONICAL.fullmatch(text[1:-1])
    back = decode_state(text)
    assert np.all(np.abs(back[:3] - state[:3]) <= 0.0005 + 1e-12)
    assert all(angle_error_deg(b, s) <= 0.5 + 1e-9
               for b, s in zip(back[3:6], state[3:6], strict=True))
    assert back[6] == (1.0 if opening >= 0.5 else 0.0)


def test_paper_format_exactly():
    action = EefAction((-0.047, 0.019, 0.066),
                       tuple(math.radians(d) for d in (14, 10, 15)), 0.0)
    assert encode_action(action) == PAPER_TEXT
    decoded = decode_action(PAPER_TEXT)
    assert decoded.translation == pytest.approx((-0.047, 0.019, 0.066), abs=1e-12)
    assert decoded.rotation == pytest.approx(tuple(math.radians(d) for d in (14, 10, 15)))
    assert decoded.gripper == 0.0
    assert parse_pose(PAPER_TEXT) == [-47, 19, 66, 14, 10, 15, 0]
    assert parse_pose('{' + PAPER_TEXT + '}') == [-47, 19, 66, 14, 10, 15, 0]
    assert parse_pose('  ' + PAPER_TEXT + '\n') == [-47, 19, 66, 14, 10, 15, 0]
    assert encode_state([-0.047, 0.019, 0.066, *(math.radians(d) for d in (14, 10, 15)), 1.0]) \
        == '{' + PAPER_TEXT.replace('open: 0', 'open: 1') + '}'


def test_half_turn_is_written_as_minus_180():
    text = encode_action(EefAction((0.0, 0.0, 0.0), (math.pi, -math.pi, 3 * math.pi), 1.0))
    assert parse_pose(text)[3:6] == [-180, -180, -180]


MALFORMED = [
    '', ' ', 'garbage', PAPER_TEXT[:-1], PAPER_TEXT + ',', PAPER_TEXT + ' extra',
    PAPER_TEXT.replace('-47mm', '-47.5mm'), PAPER_TEXT.replace('-47mm', '-47 mm'),
    PAPER_TEXT.replace('-47mm', '+47mm'), PAPER_TEXT.replace('-47mm', '047mm'),
    PAPER_TEXT.replace('-47mm', '-0mm'), PAPER_TEXT.replace('-47mm', 'mm'),
    PAPER_TEXT.replace('-47mm', '-47cm'), PAPER_TEXT.replace('x:', 'X:'),
    PAPER_TEXT.replace('19mm', '\u0661\u0669mm'),  # Arabic-Indic digits: int() would take them
    PAPER_TEXT.replace('19mm', '１９mm'),  # full-width digits
    PAPER_TEXT.replace('open: 0', 'open: 2'), PAPER_TEXT.replace('open: 0', 'open: 0.5'),
    PAPER_TEXT.replace('14 degrees', '181 degrees'),
    PAPER_TEXT.replace('14 degrees', '14 degree'),
    PAPER_TEXT.replace('14 degrees', '14degrees'),
    PAPER_TEXT.replace('-47mm', '-100001mm'),
    PAPER_TEXT.replace('-47mm', '9' * 5000 + 'mm'),  # int() raises a plain ValueError
    PAPER_TEXT.replace(', ', ','), PAPER_TEXT.replace(', yaw: 15 degrees', ''),
    ', '.join(reversed(PAPER_TEXT.split(', '))),
    '{' + PAPER_TEXT, PAPER_TEXT + '}', '{{' + PAPER_TEXT + '}}',
    PAPER_TEXT + '\n' + PAPER_TEXT, 'x: nan mm' + PAPER_TEXT[8:],
    PAPER_TEXT.replace(' ', '\u00a0'),  # non-ASCII whitespace
]


@pytest.mark.parametrize('text', MALFORMED)
def test_malformed_text_is_rejected(text):
    with pytest.raises(ActionParseError):
        decode_action(text)
    with pytest.raises(ActionParseError):
        decode_state(text)


@pytest.mark.parametrize('value', [None, 12, b'x: 1mm', ['x']])
def test_non_text_is_rejected(value):
    with pytest.raises(ActionParseError):
        decode_action(value)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_text_parses_only_if_canonical(text):
    try:
        values = parse_pose(text)
    except ActionParseError:
        return
    # Anything accepted must be a canonical pose: re-encoding reproduces it up to the
    # surrounding whitespace and braces.
    body = text.strip(' \t\n\r\x0b\x0c')
    body = body[1:-1] if body.startswith('{') else body
    assert CANONICAL.fullmatch(body)
    assert [int(v) for v in CANONICAL.fullmatch(body).groups()] == values


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_paper_text_never_guessed(data):
    """Single-character edits of a valid text either keep it valid or raise, never guess."""
    position = data.draw(st.integers(0, len(PAPER_TEXT) - 1))
    replacement = data.draw(st.characters())
    mutated = PAPER_TEXT[:position] + replacement + PAPER_TEXT[position + 1:]
    assume(mutated != PAPER_TEXT)
    try:
        values = parse_pose(mutated)
    except ActionParseError:
        return
    # The edit was itself a valid number change (e.g. a digit for a digit).
    match = CANONICAL.fullmatch(mutated.strip())
    assert match is not None
    assert [int(v) for v in match.groups()] == values


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize('index', range(7))
def test_non_finite_values_raise_value_error(bad, index):
    vector = [0.01, -0.02, 0.03, 0.1, -0.2, 0.3, 1.0]
    vector[index] = bad
    with pytest.raises(ValueError):
        encode_action(EefAction.from_vector(vector))
    with pytest.raises(ValueError):
        encode_state(vector)


def test_out_of_range_and_wrong_sizes_raise_value_error():
    with pytest.raises(ValueError):
        encode_action(EefAction((101.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0))
    with pytest.raises(ValueError):
        encode_state([0.0] * 6)
    with pytest.raises(ValueError):
        EefAction.from_vector([0.0] * 8)
