"""hitl_teleop.core without ROS: device configs, axis mapping, the takeover state machine."""

import math
import subprocess
import sys

from hitl_teleop.core import (
    AxisMap,
    BadInput,
    DeviceConfig,
    Event,
    JoyInput,
    Mode,
    OperatorAction,
    TakeoverMachine,
    apply_deadzone,
    axes_for,
    check_joy,
    device_config_dir,
    load_device,
    map_axes,
)
import pytest
import yaml

DEVICES = ('xbox', 'playstation', 'spacemouse', 'keyboard')
PERIOD = 0.1

# A small hold-mode pad: 4 axes, 8 buttons, every role.
PAD = DeviceConfig(
    name='pad',
    axes={'x': AxisMap(1, 0.2), 'y': AxisMap(0, 0.2, -1.0), 'yaw': AxisMap(3, 1.0)},
    deadzone=0.1,
    buttons={'deadman': 0, 'success': 1, 'failure': 2, 'ready': 3, 'stop': 4, 'pause': 5,
             'gripper_open': 6, 'gripper_close': 7},
    min_axes=4).validate()
TOGGLE = DeviceConfig(name='toggle_pad', axes=PAD.axes, deadzone=PAD.deadzone,
                      buttons=PAD.buttons, deadman_mode='toggle', min_axes=4).validate()


def joy(stamp, axes=(0.0, 0.0, 0.0, 0.0), **pressed):
    """A Joy for PAD with the named roles pressed."""
    buttons = [0] * 8
    for role, down in pressed.items():
        buttons[PAD.buttons[role]] = int(down)
    return JoyInput(stamp, tuple(axes), tuple(buttons))


def machine(config=PAD, opening=0.5):
    m = TakeoverMachine(config, PERIOD)
    m.set_gripper(opening)
    return m


# -- mapping -----------------------------------------------------------------------------------
def test_map_axes_applies_sign_scale_and_period():
    translation, rotation = map_axes((0.5, 1.0, 0.7, -1.0), PAD, PERIOD)
    # x: axis 1 at full deflection, 0.2 m/s for 0.1 s.
    assert translation[0] == pytest.approx(0.02)
    # y: axis 0 at 0.5 -> (0.5 - 0.1) / 0.9 of full, sign -1.
    assert translation[1] == pytest.approx(-0.2 * PERIOD * 0.4 / 0.9)
    assert translation[2] == 0.0  # z is not mapped: axis 2 is ignored
    assert rotation == pytest.approx((0.0, 0.0, -1.0 * PERIOD))
    # Halving the period halves the delta.
    half, _ = map_axes((0.5, 1.0, 0.7, -1.0), PAD, PERIOD / 2)
    assert half[0] == pytest.approx(translation[0] / 2)


def test_map_axes_all_zero_and_never_negative_zero():
    translation, rotation = map_axes((0.05, -0.05, 0.0, -0.0), PAD, PERIOD)
    assert translation + rotation == (0.0,) * 6
    assert all(math.copysign(1.0, v) == 1.0 for v in translation + rotation)


def test_map_axes_rejects_bad_period_and_short_axes():
    with pytest.raises(ValueError, match='period'):
        map_axes((0.0,) * 4, PAD, 0.0)
    with pytest.raises(BadInput, match='axis 3'):
        map_axes((0.0,) * 2, PAD, PERIOD)


@pytest.mark.parametrize(('value', 'expected'), [
    (0.0, 0.0), (0.1, 0.0), (-0.1, 0.0), (0.0999, 0.0),
    (1.0, 1.0), (-1.0, -1.0), (0.55, 0.5), (-0.55, -0.5), (1.0000005, 1.0)])
def test_deadzone_edges(value, expected):
    assert apply_deadzone(value, 0.1) == pytest.approx(expected)


def test_deadzone_is_continuous_at_its_edge_and_zero_deadzone_is_identity():
    assert apply_deadzone(0.1 + 1e-9, 0.1) == pytest.approx(0.0, abs=1e-8)
    assert apply_deadzone(0.3, 0.0) == 0.3
    with pytest.raises(ValueError, match='deadzone 1.0'):
        apply_deadzone(0.5, 1.0)


def test_axes_for_round_trips_through_map_axes():
    linear, angular = (0.1, -0.05, 0.0), (0.0, 0.0, 0.3)
    axes = axes_for(linear, angular, PAD)
    assert len(axes) == PAD.min_axes
    assert axes[2] == 0.0
    translation, rotation = map_axes(axes, PAD, PERIOD)
    assert translation == pytest.approx((0.1 * PERIOD, -0.05 * PERIOD, 0.0), abs=1e-12)
    assert rotation == pytest.approx((0.0, 0.0, 0.3 * PERIOD), abs=1e-12)


@pytest.mark.parametrize('device', DEVICES)
def test_axes_for_round_trips_on_every_shipped_device(device):
    config = load_device(device)
    linear = [0.6 * config.axes[d].scale if d in config.axes else 0.0 for d in ('x', 'y', 'z')]
    angular = [-0.3 * config.axes[d].scale if d in config.axes else 0.0
               for d in ('roll', 'pitch', 'yaw')]
    axes = axes_for(linear, angular, config, length=config.min_axes + 2)
    assert len(axes) == config.min_axes + 2
    check_joy(JoyInput(0.0, tuple(axes), (0,) * config.min_buttons), config)
    translation, rotation = map_axes(axes, config, PERIOD)
    assert translation == pytest.approx([v * PERIOD for v in linear], abs=1e-12)
    assert rotation == pytest.approx([v * PERIOD for v in angular], abs=1e-12)


def test_axes_for_clips_drops_unmapped_and_keeps_zero():
    # 1 m/s on x is 5x the pad's 0.2 m/s: full deflection, mapped back to the scale.
    axes = axes_for((1.0, 0.0, 0.5), (0.2, 0.0, -10.0), PAD)
    assert axes == [0.0, 1.0, 0.0, -1.0]  # z and roll are unmapped; zero stays zero
    translation, rotation = map_axes(axes, PAD, PERIOD)
    assert translation == pytest.approx((0.2 * PERIOD, 0.0, 0.0))
    assert rotation == pytest.approx((0.0, 0.0, -1.0 * PERIOD))
    assert axes_for((0.0,) * 3, (0.0,) * 3, PAD) == [0.0] * 4


def test_axes_for_rejects_bad_input():
    with pytest.raises(ValueError, match='need 3 values'):
        axes_for((0.1, 0.0), (0.0, 0.0, 0.0), PAD)
    with pytest.raises(ValueError, match='not finite'):
        axes_for((math.nan, 0.0, 0.0), (0.0, 0.0, 0.0), PAD)
    with pytest.raises(ValueError, match='length 2'):
        axes_for((0.1, 0.0, 0.0), (0.0, 0.0, 0.0), PAD, length=2)


def test_operator_action_is_zero():
    assert OperatorAction.zero(0.3).is_zero()
    assert OperatorAction.zero(0.3).gripper == 0.3
    assert not OperatorAction((0.0, 0.01, 0.0), (0.0, 0.0, 0.0), 1.0).is_zero()
    assert not OperatorAction((0.0, 0.0, 0.0), (0.0, 0.0, -0.1), 1.0).is_zero()


# -- state machine -------------------------------------------------------------------------------
def test_starts_with_the_policy_driving():
    m = machine()
    out = m.tick(0.0)
    assert (out.mode, out.action, out.events, out.reason) == (Mode.POLICY, None, [], '')
    m.on_joy(joy(0.0, axes=(0.0, 1.0, 0.0, 0.0)))  # sticks alone do nothing
    assert m.tick(0.05).action is None


def test_hold_deadman_takes_over_and_release_gives_back_with_one_zero_action():
    m = machine(opening=0.4)
    m.on_joy(joy(0.0, axes=(0.0, 1.0, 0.0, 0.5), deadman=1))
    assert m.mode is Mode.OPERATOR
    out = m.tick(0.05)
    assert out.mode is Mode.OPERATOR and out.events == [Event.TAKEOVER]
    assert out.action.translation == pytest.approx((0.2 * PERIOD, 0.0, 0.0))
    assert out.action.rotation[2] == pytest.approx(PERIOD * 0.4 / 0.9)
    assert out.action.gripper == 0.4  # the takeover starts from the arm's opening
    m.on_joy(joy(0.1, axes=(0.0, -1.0, 0.0, 0.0), deadman=1))  # newest axes drive
    out = m.tick(0.15)
    assert out.events == [] and out.action.translation[0] == pytest.approx(-0.2 * PERIOD)
    m.on_joy(joy(0.2, axes=(0.0, 1.0, 0.0, 0.0)))  # released, stick still pushed
    assert m.mode is Mode.POLICY
    out = m.tick(0.25)
    assert out.mode is Mode.POLICY and out.events == [Event.GIVE_BACK]
    assert out.reason == 'released'
    assert out.action is not None and out.action.is_zero() and out.action.gripper == 0.4
    for t in (0.35, 0.45, 5.0):
        out = m.tick(t)
        assert out.action is None and out.events == [] and out.reason == 'released'


def test_holding_the_deadman_is_one_takeover_and_a_new_press_takes_over_again():
    m = machine()
    for t in (0.0, 0.1, 0.2):
        m.on_joy(joy(t, deadman=1))
    assert m.tick(0.25).events == [Event.TAKEOVER]
    m.on_joy(joy(0.3))
    m.on_joy(joy(0.35, deadman=1))
    out = m.tick(0.4)
    # Released and pressed again within one period: the operator drives on, no zero action.
    assert out.events == [Event.GIVE_BACK, Event.TAKEOVER]
    assert out.mode is Mode.OPERATOR and out.action is not None


def test_toggle_deadman_press_takes_over_and_next_press_gives_back():
    m = machine(TOGGLE)
    m.on_joy(joy(0.0, deadman=1))
    m.on_joy(joy(0.05))  # releasing the key changes nothing in toggle mode
    out = m.tick(0.1)
    assert out.mode is Mode.OPERATOR and out.events == [Event.TAKEOVER]
    m.on_joy(joy(0.15, axes=(0.0, 1.0, 0.0, 0.0)))
    assert m.tick(0.2).action.translation[0] == pytest.approx(0.2 * PERIOD)
    m.on_joy(joy(0.25, deadman=1))
    out = m.tick(0.3)
    assert out.mode is Mode.POLICY and out.events == [Event.GIVE_BACK]
    assert out.reason == 'released' and out.action.is_zero()
    assert m.tick(0.4).action is None


@pytest.mark.parametrize('config', [PAD, TOGGLE], ids=['hold', 'toggle'])
def test_timeout_gives_back_with_one_zero_action(config):
    m = machine(config)
    m.on_joy(joy(0.0, axes=(0.0, 1.0, 0.0, 0.0), deadman=1))
    assert m.tick(0.1).mode is Mode.OPERATOR
    assert m.tick(0.5).mode is Mode.OPERATOR  # exactly timeout old: still fine
    out = m.tick(0.51)
    assert out.mode is Mode.POLICY and out.events == [Event.GIVE_BACK]
    assert out.reason == 'timeout' and out.action.is_zero()
    assert m.tick(0.6).action is None
    # The device comes back with the deadman still held: no takeover without a new press.
    m.on_joy(joy(0.7, deadman=1))
    assert m.mode is Mode.POLICY and m.tick(0.75).events == []


def test_timeout_also_ends_a_pause():
    m = machine()
    m.on_joy(joy(0.0, pause=1))
    assert m.tick(0.1).mode is Mode.PAUSED
    out = m.tick(0.6)
    assert out.mode is Mode.POLICY and out.reason == 'timeout' and out.action.is_zero()


def test_pause_and_resume_from_operator():
    m = machine()
    m.on_joy(joy(0.0, axes=(0.0, 1.0, 0.0, 0.0), deadman=1))
    m.tick(0.05)
    m.on_joy(joy(0.1, axes=(0.0, 1.0, 0.0, 0.0), deadman=1, pause=1))
    out = m.tick(0.15)
    assert out.mode is Mode.PAUSED and out.events == [Event.PAUSE]
    assert out.action.is_zero()  # the stick is still pushed but the arm holds
    m.on_joy(joy(0.2, axes=(0.0, 1.0, 0.0, 0.0), deadman=1))  # pause released: still paused
    assert m.tick(0.25).action.is_zero()
    m.on_joy(joy(0.3, axes=(0.0, 1.0, 0.0, 0.0), deadman=1, pause=1))
    out = m.tick(0.35)
    assert out.mode is Mode.OPERATOR and out.events == [Event.RESUME]
    assert out.action.translation[0] == pytest.approx(0.2 * PERIOD)
    m.on_joy(joy(0.4, pause=1))  # deadman released while pausing again: give back
    out = m.tick(0.45)
    assert out.events == [Event.GIVE_BACK] and out.mode is Mode.POLICY


def test_pause_from_policy_freezes_the_arm_and_resume_without_deadman_gives_back():
    m = machine(opening=0.2)
    m.on_joy(joy(0.0, pause=1))
    out = m.tick(0.05)
    assert out.mode is Mode.PAUSED and out.events == [Event.TAKEOVER, Event.PAUSE]
    assert out.action.is_zero() and out.action.gripper == 0.2
    m.on_joy(joy(0.1))
    assert m.tick(0.15).mode is Mode.PAUSED  # no deadman to release: the freeze holds
    m.on_joy(joy(0.2, pause=1))
    out = m.tick(0.25)
    # Hold mode: resuming without the deadman hands the arm back to the policy.
    assert out.events == [Event.RESUME, Event.GIVE_BACK] and out.mode is Mode.POLICY
    assert out.reason == 'released' and out.action.is_zero()
    assert m.tick(0.35).action is None


def test_pause_from_policy_then_deadman_and_resume_drives():
    m = machine()
    m.on_joy(joy(0.0, pause=1))
    m.on_joy(joy(0.05, deadman=1))  # deadman pressed while frozen: still frozen
    out = m.tick(0.1)
    assert out.mode is Mode.PAUSED and out.events == [Event.TAKEOVER, Event.PAUSE]
    m.on_joy(joy(0.15, axes=(0.0, 1.0, 0.0, 0.0), deadman=1, pause=1))
    out = m.tick(0.2)
    assert out.mode is Mode.OPERATOR and out.events == [Event.RESUME]
    assert not out.action.is_zero()
    m.on_joy(joy(0.25))
    assert m.tick(0.3).events == [Event.GIVE_BACK]


def test_toggle_pause_from_policy_and_resume_drives():
    m = machine(TOGGLE)
    m.on_joy(joy(0.0, pause=1))
    assert m.tick(0.05).events == [Event.TAKEOVER, Event.PAUSE]
    m.on_joy(joy(0.1, pause=1))  # held: one edge only
    m.on_joy(joy(0.15))
    m.on_joy(joy(0.2, axes=(0.0, 1.0, 0.0, 0.0), pause=1))
    out = m.tick(0.25)
    assert out.mode is Mode.OPERATOR and out.events == [Event.RESUME]
    assert not out.action.is_zero()
    m.on_joy(joy(0.3, deadman=1))  # toggle press while driving gives back
    assert m.tick(0.35).events == [Event.GIVE_BACK]


@pytest.mark.parametrize('paused', [False, True])
def test_stop_while_driving_gives_back(paused):
    m = machine()
    m.on_joy(joy(0.0, deadman=1, pause=int(paused)))
    m.tick(0.05)
    m.on_joy(joy(0.1, axes=(0.0, 1.0, 0.0, 0.0), deadman=1, stop=1))
    out = m.tick(0.15)
    assert out.events == [Event.STOP, Event.GIVE_BACK]
    assert out.mode is Mode.POLICY and out.reason == 'stop' and out.action.is_zero()
    m.on_joy(joy(0.2, deadman=1))  # stop and deadman released later: nothing more
    m.on_joy(joy(0.25))
    assert m.tick(0.3).events == [] and m.tick(0.3).action is None


def test_stop_while_the_policy_drives_is_only_the_event():
    m = machine()
    m.on_joy(joy(0.0, stop=1))
    out = m.tick(0.05)
    assert out.events == [Event.STOP] and out.action is None and out.reason == ''


@pytest.mark.parametrize('deadman', [0, 1])
def test_success_failure_ready_events_on_rising_edges(deadman):
    m = machine()
    m.on_joy(joy(0.0, deadman=deadman, success=1))
    m.on_joy(joy(0.05, deadman=deadman, success=1))  # held: no second event
    m.on_joy(joy(0.1, deadman=deadman, failure=1, ready=1))
    out = m.tick(0.15)
    expected = [Event.SUCCESS, Event.FAILURE, Event.READY]
    assert out.events == [Event.TAKEOVER] * deadman + expected
    assert m.tick(0.2).events == []
    assert m.mode is (Mode.OPERATOR if deadman else Mode.POLICY)


def test_gripper_buttons_and_set_gripper():
    m = machine(opening=0.3)
    m.set_gripper(0.6)  # the policy moved the gripper
    m.on_joy(joy(0.0, gripper_close=1))  # ignored while the policy drives
    m.on_joy(joy(0.05, deadman=1))
    assert m.tick(0.1).action.gripper == 0.6  # starts where the arm is, no snap
    m.set_gripper(0.1)  # while the operator drives the target is theirs
    assert m.tick(0.1).action.gripper == 0.6
    m.on_joy(joy(0.15, deadman=1, gripper_close=1))
    assert m.tick(0.2).action.gripper == 0.0
    m.on_joy(joy(0.25, deadman=1, gripper_open=1))
    assert m.tick(0.3).action.gripper == 1.0
    m.on_joy(joy(0.35))
    assert m.tick(0.4).action.gripper == 1.0  # the zero action keeps the target
    m.set_gripper(1.7)  # clipped
    m.on_joy(joy(0.45, deadman=1))
    assert m.tick(0.5).action.gripper == 1.0
    m.on_joy(joy(0.55))
    m.tick(0.6)
    m.set_gripper(-0.2)
    m.on_joy(joy(0.65, deadman=1))
    assert m.tick(0.7).action.gripper == 0.0
    with pytest.raises(ValueError, match='nan'):
        m.set_gripper(math.nan)


def test_gripper_buttons_are_ignored_while_paused():
    m = machine(opening=0.5)
    m.on_joy(joy(0.0, deadman=1, pause=1))
    m.on_joy(joy(0.05, deadman=1, gripper_close=1))
    assert m.tick(0.1).action == OperatorAction.zero(0.5)


@pytest.mark.parametrize(('bad', 'match'), [
    (JoyInput(1.0, (0.0,) * 3, (0,) * 8), '3 axes'),
    (JoyInput(1.0, (0.0,) * 4, (0,) * 7), '7 buttons'),
    (JoyInput(1.0, (0.0, math.nan, 0.0, 0.0), (0,) * 8), 'axis 1 is nan'),
    (JoyInput(1.0, (0.0, 0.0, math.inf, 0.0), (0,) * 8), 'axis 2 is inf'),
    (JoyInput(1.0, (0.0, 0.0, 0.0, -1.01), (0,) * 8), r'axis 3 = -1.01 outside'),
    (JoyInput(math.nan, (0.0,) * 4, (0,) * 8), 'stamp'),
])
def test_malformed_joy_raises_bad_input_and_changes_nothing(bad, match):
    m = machine()
    m.on_joy(joy(0.0, axes=(0.0, 1.0, 0.0, 0.0), deadman=1))
    m.tick(0.05)
    with pytest.raises(BadInput, match=match):
        m.on_joy(bad)
    # Still driving on the previous axes; a malformed release is not a release.
    out = m.tick(0.1)
    assert out.mode is Mode.OPERATOR and out.events == []
    assert out.action.translation[0] == pytest.approx(0.2 * PERIOD)
    # Nor does a malformed message refresh the timeout.
    assert m.tick(0.51).reason == 'timeout'
    assert isinstance(BadInput('x'), ValueError)


def test_malformed_joy_does_not_take_over():
    m = machine()
    with pytest.raises(BadInput):
        m.on_joy(JoyInput(0.0, (0.0, math.nan, 0.0, 0.0), (1,) * 8))
    assert m.mode is Mode.POLICY and m.tick(0.05).events == []


def test_check_joy_accepts_rounding_and_more_than_needed():
    check_joy(JoyInput(0.0, (1.0 + 1e-7, -1.0, 0.0, 0.0, 0.5), (0,) * 10), PAD)


def test_machine_rejects_bad_period():
    with pytest.raises(ValueError, match='period'):
        TakeoverMachine(PAD, 0.0)


# -- device configs ------------------------------------------------------------------------------
@pytest.mark.parametrize('device', DEVICES)
def test_every_shipped_device_loads_and_validates(device):
    config = load_device(device)
    assert config.name == device
    assert config.validate() is config
    assert config.from_yaml(device_config_dir() / f'{device}.yaml') == config
    assert 'deadman' in config.buttons
    # A Joy of the device's size at rest is well-formed and moves nothing.
    rest = JoyInput(0.0, (0.0,) * config.min_axes, (0,) * config.min_buttons)
    m = TakeoverMachine(config, PERIOD)
    m.on_joy(rest)
    assert m.tick(0.0).action is None


def test_shipped_layouts():
    xbox, ps, space, keys = (load_device(d) for d in DEVICES)
    assert (xbox.buttons['deadman'], xbox.deadman_mode) == (4, 'hold')  # LB
    assert (ps.buttons['deadman'], ps.deadman_mode) == (4, 'hold')  # L1
    assert (space.buttons['deadman'], space.deadman_mode) == (0, 'hold')
    assert (keys.buttons['deadman'], keys.deadman_mode) == (0, 'toggle')
    assert (xbox.min_axes, xbox.min_buttons, ps.min_buttons) == (8, 11, 13)
    assert (space.min_axes, space.min_buttons, keys.min_axes, keys.min_buttons) == (6, 2, 6, 8)
    assert set(space.axes) == set(keys.axes) == {'x', 'y', 'z', 'roll', 'pitch', 'yaw'}
    assert keys.deadzone == 0.0
    # Left stick up (axis 1 = +1 on the joy node) drives forward on both pads.
    for pad in (xbox, ps):
        translation, _ = map_axes(axes_for((0, 0, 0), (0, 0, 0), pad)[:1] + [1.0] + [0.0] * 6,
                                  pad, 1.0)
        assert translation == pytest.approx((0.25, 0.0, 0.0))


def test_load_device_by_path_and_unknown_name(tmp_path):
    path = tmp_path / 'mine.yaml'
    path.write_text(yaml.safe_dump({'axes': {'z': {'axis': 2, 'scale': 0.1}},
                                    'buttons': {'deadman': 3}}))
    config = load_device(str(path))
    assert config.name == 'mine'  # the file stem when the YAML has no name
    assert (config.min_axes, config.min_buttons) == (3, 4)  # derived from the indices
    assert config.axes['z'] == AxisMap(2, 0.1, 1.0)
    with pytest.raises(ValueError, match="unknown teleop device 'joystick9'.*xbox"):
        load_device('joystick9')
    with pytest.raises(ValueError, match='cannot read'):
        load_device(str(tmp_path / 'missing.yaml'))
    (tmp_path / 'broken.yaml').write_text('axes: [')
    with pytest.raises(ValueError, match='not valid YAML'):
        load_device(str(tmp_path / 'broken.yaml'))


def good():
    return {'name': 'good', 'axes': {'x': {'axis': 0, 'scale': 0.2, 'sign': -1}},
            'buttons': {'deadman': 1, 'stop': 0}, 'deadzone': 0.2, 'timeout': 1,
            'deadman_mode': 'hold', 'min_axes': 2, 'min_buttons': 3}


def test_from_dict_good():
    config = DeviceConfig.from_dict(good())
    assert config.axes['x'] == AxisMap(0, 0.2, -1.0)
    assert (config.min_axes, config.min_buttons, config.timeout) == (2, 3, 1.0)


@pytest.mark.parametrize(('path', 'value', 'match'), [
    ('name', '', 'name'),
    ('name', 3, 'name'),
    ('axes', {}, 'axes is empty'),
    ('axes', [1], 'axes must map'),
    ('axes.x', 3, 'axes.x must be a mapping'),
    ('axes.q', {'axis': 1, 'scale': 0.1}, "unknown dimension 'q'"),
    ('axes.x.axis', -1, 'axes.x.axis -1'),
    ('axes.x.axis', 1.5, 'axes.x.axis 1.5'),
    ('axes.x.scale', 0.0, r'axes.x.scale 0.0 m/s outside'),
    ('axes.x.scale', 2.0, r'axes.x.scale 2.0 m/s outside'),
    ('axes.x.scale', 'fast', 'axes.x.scale'),
    ('axes.x.sign', 0.5, 'axes.x.sign 0.5'),
    ('axes.x.speed', 1.0, r"axes.x: unknown field\(s\) \['speed'\]"),
    ('axes.yaw', {'axis': 1, 'scale': 4.0}, r'axes.yaw.scale 4.0 rad/s'),
    ('axes.yaw', {'axis': 0, 'scale': 1.0}, "axes.yaw.axis 0 already drives 'x'"),
    ('axes.yaw', {'scale': 1.0}, 'axes.yaw.axis is missing'),
    ('deadzone', 0.95, 'deadzone 0.95'),
    ('deadzone', -0.1, 'deadzone -0.1'),
    ('buttons', {'stop': 0}, 'buttons.deadman is missing'),
    ('buttons', 4, 'buttons must map'),
    ('buttons.jump', 2, "unknown role 'jump'"),
    ('buttons.stop', 1, 'buttons.stop 1 is already buttons.deadman'),
    ('buttons.deadman', True, 'buttons.deadman True'),
    ('deadman_mode', 'latch', "deadman_mode 'latch'"),
    ('min_axes', 0, 'min_axes 0 below'),
    ('min_buttons', 1, 'min_buttons 1 below'),
    ('min_buttons', -1, 'min_buttons -1'),
    ('timeout', 0.0, 'timeout 0.0'),
    ('timeout', 60, 'timeout 60'),
    ('rate', 10, r"unknown device config field\(s\) \['rate'\]"),
])
def test_bad_fields_raise_value_error_naming_the_field(path, value, match):
    data = good()
    *parents, key = path.split('.')
    node = data
    for part in parents:
        node = node[part]
    node[key] = value
    with pytest.raises(ValueError, match=match):
        DeviceConfig.from_dict(data)


@pytest.mark.parametrize('missing', ['axes', 'buttons'])
def test_missing_required_fields(missing):
    data = good()
    del data[missing]
    with pytest.raises(ValueError, match=f"'{missing}' is missing"):
        DeviceConfig.from_dict(data)


def test_bad_yaml_file_names_file_and_field(tmp_path):
    data = good()
    data['deadzone'] = 2
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r'bad\.yaml: deadzone 2'):
        DeviceConfig.from_yaml(path)
    path.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='must be a mapping'):
        DeviceConfig.from_yaml(path)


def test_core_imports_without_ros():
    script = ('import importlib.abc, sys\n'
              'class Block(importlib.abc.MetaPathFinder):\n'
              '    def find_spec(self, name, path=None, target=None):\n'
              "        if name.split('.')[0] in {'rclpy', 'sensor_msgs', 'std_msgs',\n"
              "                                  'vlac_interfaces', 'vlac_ros'}:\n"
              "            raise ImportError(name + ' is blocked')\n"
              'sys.meta_path.insert(0, Block())\n'
              'from hitl_teleop.core import load_device, TakeoverMachine\n'
              "TakeoverMachine(load_device('xbox'), 0.1).tick(0.0)\n")
    subprocess.run([sys.executable, '-c', script], check=True, timeout=60)
