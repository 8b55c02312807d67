"""Teleop devices and the takeover state machine (ROS-free: plain values in, plain values out).

A device (game pad, SpaceMouse, the keyboard tool) publishes ``sensor_msgs/Joy``; the teleop
node turns each message into a ``JoyInput`` and hands it to ``TakeoverMachine.on_joy``, and
calls ``TakeoverMachine.tick`` once per control period. The machine decides who drives the
arm (``Mode``), which operator events happened (``Event``) and, while the operator drives,
the end-effector delta to execute (``OperatorAction``: base frame, REP 103, m and rad per
control period).

Safety, as teleop_twist_joy: nothing moves unless the deadman is held (or toggled on for the
keyboard); a give-back for any reason (release, stop, device silent for ``timeout``) is
followed by exactly one zero action so the arm stops; a takeover starts from the gripper's
current opening so it never snaps the gripper.

Device layouts are data: one YAML per device in ``config/teleop`` (``load_device``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import enum
import math
import pathlib
from typing import Any

Vec3 = tuple[float, float, float]

DIMENSIONS = ('x', 'y', 'z', 'roll', 'pitch', 'yaw')
"""Action dimensions a device axis can drive: translation (m) then rotation (rad), base frame."""

ROLES = ('deadman', 'success', 'failure', 'ready', 'stop', 'pause', 'gripper_open',
         'gripper_close')
"""Button roles; 'deadman' is required, the others optional."""

DEADMAN_MODES = ('hold', 'toggle')
MAX_LINEAR_SCALE = 1.0
"""Largest translation speed at full deflection a device config may ask for, m/s."""
MAX_ANGULAR_SCALE = math.pi
"""Largest rotation speed at full deflection a device config may ask for, rad/s."""
AXIS_TOLERANCE = 1e-6
"""Joy axes may exceed +-1 by this much (float rounding in drivers) before being malformed."""


class Event(enum.Enum):
    """Operator events, in the order the operator caused them."""

    TAKEOVER = 'takeover'
    GIVE_BACK = 'give_back'
    SUCCESS = 'success'
    FAILURE = 'failure'
    READY = 'ready'
    STOP = 'stop'
    PAUSE = 'pause'
    RESUME = 'resume'


class Mode(enum.Enum):
    """Who drives the arm."""

    POLICY = 'policy'
    """The policy drives."""
    OPERATOR = 'operator'
    """The operator drives (an intervention)."""
    PAUSED = 'paused'
    """The operator holds the arm still: zero actions, still an intervention."""


class BadInput(ValueError):
    """A malformed device message (too few axes or buttons, non-finite or out-of-range axis)."""


@dataclass(frozen=True)
class AxisMap:
    """One action dimension driven by one device axis."""

    axis: int
    """Index into Joy.axes."""
    scale: float
    """Speed at full deflection: m/s for x, y, z; rad/s for roll, pitch, yaw (> 0)."""
    sign: float = 1.0
    """+1 or -1: -1 when the device's positive direction is the dimension's negative one."""


@dataclass(frozen=True)
class DeviceConfig:
    """The layout of one teleop device: which axis drives what, which button does what.

    ``min_axes`` and ``min_buttons`` default to the largest index used + 1; a device config
    may ask for more (its driver's full layout) so a wrong device is rejected.
    """

    name: str
    """Device name (the YAML's file stem for shipped devices)."""
    axes: dict[str, AxisMap]
    """Dimension ('x', 'y', 'z', 'roll', 'pitch', 'yaw'; REP 103 base frame: x forward, y left,
    z up) -> axis. A missing dimension is never commanded."""
    deadzone: float = 0.1
    """Fraction of full deflection read as zero, in [0, 0.9]; the rest is rescaled to 0..1."""
    buttons: dict[str, int] = field(default_factory=dict)
    """Role (see ROLES) -> index into Joy.buttons; 'deadman' is required."""
    deadman_mode: str = 'hold'
    """'hold': the operator drives while the deadman is held; 'toggle': a press takes over,
    the next press gives back (the keyboard)."""
    min_axes: int | None = None
    """A Joy with fewer axes is malformed (None: largest axis index used + 1)."""
    min_buttons: int | None = None
    """A Joy with fewer buttons is malformed (None: largest button index used + 1)."""
    timeout: float = 0.5
    """s without a device message while the operator drives before giving back (unplugged)."""

    def __post_init__(self) -> None:
        if self.min_axes is None:
            used = [m.axis for m in self.axes.values() if isinstance(m, AxisMap)]
            object.__setattr__(self, 'min_axes', max(used, default=-1) + 1)
        if self.min_buttons is None:
            used = [b for b in self.buttons.values() if isinstance(b, int)]
            object.__setattr__(self, 'min_buttons', max(used, default=-1) + 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'DeviceConfig':
        """Build and validate a config from plain data (a parsed YAML); ValueError names the field.

        ``axes`` maps dimensions to ``{axis, scale, sign}`` mappings.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f'device config must be a mapping, got {type(data).__name__}')
        known = ('name', 'axes', 'deadzone', 'buttons', 'deadman_mode', 'min_axes',
                 'min_buttons', 'timeout')
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f'unknown device config field(s) {unknown}; known: {list(known)}')
        for required in ('name', 'axes', 'buttons'):
            if required not in data:
                raise ValueError(f'device config field {required!r} is missing')
        raw_axes = data['axes']
        if not isinstance(raw_axes, Mapping):
            raise ValueError(f'axes must map dimensions to axis specs, got {raw_axes!r}')
        axes = {}
        for dim, spec in raw_axes.items():
            where = f'axes.{dim}'
            if not isinstance(spec, Mapping):
                raise ValueError(f'{where} must be a mapping with axis, scale, sign; got {spec!r}')
            extra = sorted(str(k) for k in spec if k not in ('axis', 'scale', 'sign'))
            if extra:
                raise ValueError(f'{where}: unknown field(s) {extra}; known: axis, scale, sign')
            for required in ('axis', 'scale'):
                if required not in spec:
                    raise ValueError(f'{where}.{required} is missing')
            axes[str(dim)] = AxisMap(axis=_as_int(spec['axis'], f'{where}.axis'),
                                     scale=_as_float(spec['scale'], f'{where}.scale'),
                                     sign=_as_float(spec.get('sign', 1.0), f'{where}.sign'))
        raw_buttons = data['buttons']
        if not isinstance(raw_buttons, Mapping):
            raise ValueError(f'buttons must map roles to button indices, got {raw_buttons!r}')
        buttons = {str(role): _as_int(index, f'buttons.{role}')
                   for role, index in raw_buttons.items()}
        name = data['name']
        if not isinstance(name, str):
            raise ValueError(f'name must be a string, got {name!r}')
        kwargs: dict[str, Any] = {'name': name, 'axes': axes, 'buttons': buttons}
        for key in ('deadzone', 'timeout'):
            if key in data:
                kwargs[key] = _as_float(data[key], key)
        for key in ('min_axes', 'min_buttons'):
            if data.get(key) is not None:
                kwargs[key] = _as_int(data[key], key)
        if 'deadman_mode' in data:
            kwargs['deadman_mode'] = data['deadman_mode']
        return cls(**kwargs).validate()

    @classmethod
    def from_yaml(cls, path: str | pathlib.Path) -> 'DeviceConfig':
        """Load and validate a device YAML (top-level keys are the fields; name = stem if absent).

        ValueError names the file and the bad field.
        """
        import yaml

        path = pathlib.Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ValueError(f'cannot read device config {path}: {err}') from None
        except yaml.YAMLError as err:
            raise ValueError(f'device config {path} is not valid YAML: {err}') from None
        if isinstance(data, dict):
            data.setdefault('name', path.stem)
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f'{path}: {err}') from None

    def validate(self) -> 'DeviceConfig':
        """Raise ValueError naming the bad field and value; return self."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f'name {self.name!r} must be a non-empty string')
        if not self.axes:
            raise ValueError('axes is empty: the device would command nothing')
        used_axes: dict[int, str] = {}
        for dim, spec in self.axes.items():
            if dim not in DIMENSIONS:
                raise ValueError(f'axes: unknown dimension {dim!r}; known: {list(DIMENSIONS)}')
            if not isinstance(spec, AxisMap):
                raise ValueError(f'axes.{dim} must be an AxisMap, got {spec!r}')
            _check_index(spec.axis, f'axes.{dim}.axis')
            limit, unit = ((MAX_LINEAR_SCALE, 'm/s') if dim in DIMENSIONS[:3]
                           else (MAX_ANGULAR_SCALE, 'rad/s'))
            if not (math.isfinite(spec.scale) and 0.0 < spec.scale <= limit):
                raise ValueError(f'axes.{dim}.scale {spec.scale} {unit} outside (0, {limit:g}]')
            if spec.sign not in (1.0, -1.0):
                raise ValueError(f'axes.{dim}.sign {spec.sign} must be +1 or -1')
            if spec.axis in used_axes:
                raise ValueError(f'axes.{dim}.axis {spec.axis} already drives '
                                 f'{used_axes[spec.axis]!r}')
            used_axes[spec.axis] = dim
        if not (isinstance(self.deadzone, (int, float)) and 0.0 <= self.deadzone <= 0.9):
            raise ValueError(f'deadzone {self.deadzone!r} outside [0, 0.9]')
        if 'deadman' not in self.buttons:
            raise ValueError('buttons.deadman is missing: every device needs a deadman button')
        used_buttons: dict[int, str] = {}
        for role, index in self.buttons.items():
            if role not in ROLES:
                raise ValueError(f'buttons: unknown role {role!r}; known: {list(ROLES)}')
            _check_index(index, f'buttons.{role}')
            if index in used_buttons:
                raise ValueError(f'buttons.{role} {index} is already buttons.'
                                 f'{used_buttons[index]}')
            used_buttons[index] = role
        if self.deadman_mode not in DEADMAN_MODES:
            raise ValueError(f'deadman_mode {self.deadman_mode!r} must be one of '
                             f'{list(DEADMAN_MODES)}')
        _check_index(self.min_axes, 'min_axes')
        if self.min_axes < max(used_axes) + 1:
            raise ValueError(f'min_axes {self.min_axes} below the largest axis index used + 1 '
                             f'({max(used_axes) + 1})')
        _check_index(self.min_buttons, 'min_buttons')
        if self.min_buttons < max(used_buttons) + 1:
            raise ValueError(f'min_buttons {self.min_buttons} below the largest button index '
                             f'used + 1 ({max(used_buttons) + 1})')
        if not (isinstance(self.timeout, (int, float)) and 0.0 < self.timeout <= 10.0):
            raise ValueError(f'timeout {self.timeout!r} s outside (0, 10]')
        return self


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'{where} {value!r} must be an integer')
    return value


def _as_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{where} {value!r} must be a number')
    return float(value)


def _check_index(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'{where} {value!r} must be an integer >= 0')


def device_config_dir() -> pathlib.Path:
    """Folder of the shipped device configurations (config/teleop).

    The source tree's copy when running from a checkout (editable install), else the one
    installed in vlac_bringup's share directory.
    """
    source = pathlib.Path(__file__).resolve().parents[3] / 'config' / 'teleop'
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return pathlib.Path(get_package_share_directory('vlac_bringup')) / 'config' / 'teleop'


def load_device(name_or_path: str) -> DeviceConfig:
    """A shipped device by name ('xbox' -> config/teleop/xbox.yaml) or a YAML file by path."""
    text = str(name_or_path)
    if '/' in text or text.endswith(('.yaml', '.yml')):
        return DeviceConfig.from_yaml(text)
    folder = device_config_dir()
    path = folder / f'{text}.yaml'
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob('*.yaml'))
        raise ValueError(f'unknown teleop device {text!r}: one of {known} or a path to a YAML')
    return DeviceConfig.from_yaml(path)


@dataclass(frozen=True)
class JoyInput:
    """A sensor_msgs/Joy as plain values."""

    stamp: float
    """When the teleop node received it, s (monotonic or ROS clock, as ``tick``'s ``now``)."""
    axes: tuple[float, ...]
    """Axis deflections, each in [-1, 1]."""
    buttons: tuple[int, ...]
    """Button states, nonzero = pressed."""


def check_joy(joy: JoyInput, config: DeviceConfig) -> None:
    """Raise BadInput if ``joy`` cannot come from ``config``'s device.

    Too few axes or buttons, a non-finite stamp or axis, or an axis beyond +-1 (by more than
    AXIS_TOLERANCE) are malformed.
    """
    if not math.isfinite(joy.stamp):
        raise BadInput(f'Joy stamp {joy.stamp} is not finite')
    if len(joy.axes) < config.min_axes:
        raise BadInput(f'Joy has {len(joy.axes)} axes, device {config.name!r} needs at least '
                       f'{config.min_axes}')
    if len(joy.buttons) < config.min_buttons:
        raise BadInput(f'Joy has {len(joy.buttons)} buttons, device {config.name!r} needs at '
                       f'least {config.min_buttons}')
    for index, value in enumerate(joy.axes):
        if not math.isfinite(value):
            raise BadInput(f'Joy axis {index} is {value}')
        if abs(value) > 1.0 + AXIS_TOLERANCE:
            raise BadInput(f'Joy axis {index} = {value} outside [-1, 1]')


@dataclass(frozen=True)
class OperatorAction:
    """An end-effector delta over one control period in the base frame (REP 103)."""

    translation: Vec3
    """x, y, z, m per control period."""
    rotation: Vec3
    """roll, pitch, yaw, rad per control period."""
    gripper: float
    """Gripper target, 0 closed .. 1 open."""

    @classmethod
    def zero(cls, gripper: float) -> 'OperatorAction':
        """Hold the arm still, the gripper at ``gripper``."""
        return cls((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), gripper)

    def is_zero(self) -> bool:
        """Return True if neither translation nor rotation moves the arm."""
        return all(v == 0.0 for v in self.translation + self.rotation)


def apply_deadzone(value: float, deadzone: float) -> float:
    """0 inside ``deadzone``; outside, rescaled so full deflection (+-1) still gives +-1.

    The result is clipped to [-1, 1]; ``deadzone`` is a fraction of full deflection in [0, 1).
    """
    if not 0.0 <= deadzone < 1.0:
        raise ValueError(f'deadzone {deadzone} outside [0, 1)')
    magnitude = abs(value)
    if magnitude <= deadzone:
        return 0.0
    scaled = min((magnitude - deadzone) / (1.0 - deadzone), 1.0)
    return math.copysign(scaled, value)


def map_axes(axes: Sequence[float], config: DeviceConfig, period: float) -> tuple[Vec3, Vec3]:
    """Device axes -> (translation m per period, rotation rad per period), base frame.

    Each mapped dimension is deadzone(axis) * sign * scale * period; unmapped ones are 0.
    """
    if not (math.isfinite(period) and period > 0.0):
        raise ValueError(f'period {period} s must be > 0')
    values = []
    for dim in DIMENSIONS:
        spec = config.axes.get(dim)
        if spec is None:
            values.append(0.0)
            continue
        if spec.axis >= len(axes):
            raise BadInput(f'Joy has {len(axes)} axes, {dim} needs axis {spec.axis}')
        deflection = apply_deadzone(axes[spec.axis], config.deadzone)
        values.append(deflection * spec.sign * spec.scale * period + 0.0)  # + 0.0: no -0.0
    return (values[0], values[1], values[2]), (values[3], values[4], values[5])


def axes_for(linear: Sequence[float], angular: Sequence[float], config: DeviceConfig,
             length: int | None = None) -> list[float]:
    """The Joy axes a device would show for a twist (m/s, rad/s in the base frame).

    The inverse of ``map_axes``: map_axes(axes_for(v, w, c), c, period) == (v, w) * period
    wherever the twist is within the device's scale (larger components are clipped to full
    deflection); zero stays zero. Dimensions the device does not map are dropped; unmapped
    axes read 0. ``length`` is the number of axes (default ``config.min_axes``).
    """
    if len(linear) != 3 or len(angular) != 3:
        raise ValueError(f'linear {tuple(linear)} and angular {tuple(angular)} need 3 values')
    twist = [float(v) for v in (*linear, *angular)]
    if not all(math.isfinite(v) for v in twist):
        raise ValueError(f'twist {twist} is not finite')
    length = config.min_axes if length is None else length
    if length < config.min_axes:
        raise ValueError(f'length {length} below the min_axes {config.min_axes} of '
                         f'device {config.name!r}')
    axes = [0.0] * length
    for dim, speed in zip(DIMENSIONS, twist, strict=True):
        spec = config.axes.get(dim)
        if spec is None or speed == 0.0:
            continue
        deflection = max(-1.0, min(1.0, speed / (spec.sign * spec.scale)))
        raw = config.deadzone + abs(deflection) * (1.0 - config.deadzone)
        axes[spec.axis] = math.copysign(min(raw, 1.0), deflection)
    return axes


@dataclass
class Output:
    """What one control step of the takeover machine says."""

    mode: Mode
    """Who drives after this step."""
    action: OperatorAction | None
    """Publish this operator action this step; None: publish nothing (the policy drives)."""
    events: list[Event]
    """Events since the previous tick, in order."""
    reason: str = ''
    """Why the last give-back happened: 'released' (deadman released, or pressed again in
    toggle mode), 'timeout' (no device message for ``timeout``), 'stop'; '' before any."""


class TakeoverMachine:
    """Who drives the arm, from device messages and the control clock.

    ``on_joy`` for every device message, ``tick`` once per control period with the same clock
    as ``JoyInput.stamp``. Buttons act on their rising edge (the message where they become
    pressed), except the hold-mode deadman whose release also gives back. A device that
    starts sending with the deadman already held after a timeout does not take over again
    until the deadman is pressed anew.
    """

    def __init__(self, config: DeviceConfig, period: float) -> None:
        config.validate()
        if not (math.isfinite(period) and period > 0.0):
            raise ValueError(f'period {period} s must be > 0')
        self.config = config
        self.period = period
        self._mode = Mode.POLICY
        self._axes: tuple[float, ...] = (0.0,) * config.min_axes
        self._pressed: tuple[bool, ...] = ()
        self._last_stamp: float | None = None
        self._opening = 1.0
        self._gripper = 1.0
        self._events: list[Event] = []
        self._zero_pending = False
        self._reason = ''

    @property
    def mode(self) -> Mode:
        """Who drives now."""
        return self._mode

    @property
    def gripper_target(self) -> float:
        """The gripper opening the operator commands (0 closed .. 1 open)."""
        return self._gripper

    def set_gripper(self, opening: float) -> None:
        """Tell the machine the arm's current gripper opening (0..1, clipped).

        The next takeover starts its gripper target here, so a takeover never snaps the
        gripper. Call it from the arm's state before the first takeover (until then the
        opening is taken as 1, open). While the operator drives the target is theirs.
        """
        if not math.isfinite(opening):
            raise ValueError(f'gripper opening {opening} is not finite')
        self._opening = max(0.0, min(1.0, float(opening)))
        if self._mode is Mode.POLICY:
            self._gripper = self._opening

    def on_joy(self, joy: JoyInput) -> None:
        """Take one device message: BadInput (state untouched) if malformed, else act on it."""
        check_joy(joy, self.config)
        pressed = tuple(b != 0 for b in joy.buttons)
        previous = self._pressed
        self._pressed = pressed
        self._axes = tuple(float(v) for v in joy.axes)
        self._last_stamp = joy.stamp

        def was_pressed(index: int) -> bool:
            return index < len(previous) and previous[index]

        def rising(role: str) -> bool:
            index = self.config.buttons.get(role)
            return index is not None and pressed[index] and not was_pressed(index)

        deadman = self.config.buttons['deadman']
        deadman_held = pressed[deadman]
        if self.config.deadman_mode == 'hold':
            if rising('deadman') and self._mode is Mode.POLICY:
                self._take_over()
            elif was_pressed(deadman) and not deadman_held and self._mode is not Mode.POLICY:
                self._give_back('released')
        elif rising('deadman'):
            if self._mode is Mode.POLICY:
                self._take_over()
            else:
                self._give_back('released')
        if rising('pause'):
            self._on_pause(deadman_held)
        if self._mode is Mode.OPERATOR:
            if rising('gripper_open'):
                self._gripper = 1.0
            if rising('gripper_close'):
                self._gripper = 0.0
        for role, event in (('success', Event.SUCCESS), ('failure', Event.FAILURE),
                            ('ready', Event.READY)):
            if rising(role):
                self._events.append(event)
        if rising('stop'):
            self._events.append(Event.STOP)
            if self._mode is not Mode.POLICY:
                self._give_back('stop')

    def tick(self, now: float) -> Output:
        """One control step at time ``now`` (s, the clock of ``JoyInput.stamp``).

        OPERATOR: the action from the newest axes and the gripper target. PAUSED: a zero
        action. If the newest device message is older than ``timeout`` while intervening, give
        back ('timeout'). On the step after any give-back: exactly one zero action, then None
        while the policy drives.
        """
        if (self._mode is not Mode.POLICY and self._last_stamp is not None
                and now - self._last_stamp > self.config.timeout):
            self._give_back('timeout')
        action: OperatorAction | None = None
        if self._mode is Mode.OPERATOR:
            translation, rotation = map_axes(self._axes, self.config, self.period)
            action = OperatorAction(translation, rotation, self._gripper)
        elif self._mode is Mode.PAUSED or self._zero_pending:
            action = OperatorAction.zero(self._gripper)
        self._zero_pending = False
        events, self._events = self._events, []
        return Output(self._mode, action, events, self._reason)

    # -- transitions ---------------------------------------------------------------------------
    def _take_over(self, mode: Mode = Mode.OPERATOR) -> None:
        self._mode = mode
        self._gripper = self._opening
        self._events.append(Event.TAKEOVER)

    def _give_back(self, reason: str) -> None:
        self._mode = Mode.POLICY
        self._reason = reason
        self._zero_pending = True
        self._events.append(Event.GIVE_BACK)

    def _on_pause(self, deadman_held: bool) -> None:
        if self._mode is Mode.POLICY:
            self._take_over(Mode.PAUSED)
            self._events.append(Event.PAUSE)
        elif self._mode is Mode.OPERATOR:
            self._mode = Mode.PAUSED
            self._events.append(Event.PAUSE)
        else:
            self._mode = Mode.OPERATOR
            self._events.append(Event.RESUME)
            if self.config.deadman_mode == 'hold' and not deadman_held:
                # Hold mode never lets the operator drive without the deadman: resuming a
                # freeze that began without it hands the arm back to the policy.
                self._give_back('released')
