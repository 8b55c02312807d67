"""teleop_keyboard: the keyboard as the operator's teleop device, in any terminal (also ssh).

Reads single keys from its terminal and publishes ``sensor_msgs/Joy`` on ``joy`` in the layout
of ``config/teleop/keyboard.yaml`` (6 axes x, y, z, roll, pitch, yaw; 8 buttons) at a fixed
rate (``rate_hz``, 20 Hz), so a teleop node with ``device: keyboard`` sees a live device and
its timeout fires only when this tool stops. Terminals send no key release: an axis key holds
its axis at +-1 for ``hold_time`` after its last press (the terminal's auto-repeat keeps a held
key alive). A button key sends its button as 1 in exactly one message; presses of the same
key closer than ``repeat_guard`` apart are auto-repeat of a held key and ignored, so holding
space does not toggle the takeover on and off.

The status line shows who drives (``intervention/active``, std_msgs/Bool, latched); a help
request (``help_request``, vlac_interfaces/HelpRequest) prints a line and rings the bell.
Ctrl-C quits and restores the terminal.

``KeyboardState`` (keys in, Joy values out) and ``Terminal`` hold the logic without ROS; the
node only wires them to topics and a timer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import os
import select
import sys
import termios
import time
from typing import Any, TextIO

from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Header
from vlac_models.config import doc
from vlac_ros.params import declare_dataclass
from vlac_ros.qos import LATCHED, RELIABLE
from vlac_ros.spin import run_node

N_AXES = 6
"""Joy axes: x, y, z, roll, pitch, yaw (config/teleop/keyboard.yaml)."""
N_BUTTONS = 8
"""Joy buttons: deadman, gripper_open, gripper_close, success, failure, ready, stop, pause."""

AXIS_KEYS = {
    'w': (0, 1.0, '+x'), 's': (0, -1.0, '-x'),
    'a': (1, 1.0, '+y'), 'd': (1, -1.0, '-y'),
    'r': (2, 1.0, '+z'), 'f': (2, -1.0, '-z'),
    'u': (3, 1.0, '+roll'), 'o': (3, -1.0, '-roll'),
    'i': (4, 1.0, '+pitch'), 'k': (4, -1.0, '-pitch'),
    'q': (5, 1.0, '+yaw'), 'e': (5, -1.0, '-yaw'),
}
"""Key -> (axis index, value while held, label)."""

BUTTON_KEYS = {
    ' ': (0, 'deadman'), 'g': (1, 'gripper open'), 'h': (2, 'gripper close'),
    '\r': (3, 'success'), '\n': (3, 'success'), 'y': (3, 'success'), 'n': (4, 'failure'),
    'z': (5, 'ready'), 'x': (6, 'stop'), 'p': (7, 'pause'),
}
"""Key -> (button index, label)."""

QUIT_KEY = '\x03'
"""Ctrl-C (the terminal's signal keys are off, so it arrives as a key)."""

KEY_MAP = """\
Move the gripper (base frame; a key holds its motion while it repeats):
  w / s  forward / back  (+x / -x)      q / e  turn left / right  (+yaw / -yaw)
  a / d  left / right    (+y / -y)      u / o  roll  + / -
  r / f  up / down       (+z / -z)      i / k  pitch + / -
Operator:
  space        take over / give back (deadman toggle)
  p            pause / resume (hold the arm still)
  g / h        gripper open / close
  Enter or y   success        n  failure
  z            ready (next episode)    x  stop
  Ctrl-C       quit"""


@dataclass(frozen=True)
class KeyboardConfig:
    """Parameters of ``teleop_keyboard``."""

    rate_hz: float = field(default=20.0, metadata=doc(
        'Joy publish rate, Hz (well above 1 / the teleop timeout so it never fires)'))
    hold_time: float = field(default=0.25, metadata=doc(
        'an axis key holds its axis at +-1 this long after its last press, s'))
    repeat_guard: float = field(default=0.7, metadata=doc(
        'a button key pressed again within this time of its previous press is auto-repeat '
        'and ignored, s (above the terminal key-repeat delay)'))
    joy_topic: str = field(default='joy', metadata=doc('sensor_msgs/Joy output'))

    def validate(self) -> 'KeyboardConfig':
        """Raise ValueError naming the bad value; return self."""
        if not 2.0 < self.rate_hz <= 200.0:
            raise ValueError(f'rate_hz {self.rate_hz} outside (2, 200]')
        if not 0.0 < self.hold_time <= 2.0:
            raise ValueError(f'hold_time {self.hold_time} s outside (0, 2]')
        if not 0.0 <= self.repeat_guard <= 5.0:
            raise ValueError(f'repeat_guard {self.repeat_guard} s outside [0, 5]')
        if not self.joy_topic:
            raise ValueError('joy_topic is empty')
        return self


class KeyboardState:
    """Keys in, Joy values out (ROS-free). Times are seconds on one monotonic clock."""

    def __init__(self, hold_time: float = 0.25, repeat_guard: float = 0.7) -> None:
        KeyboardConfig(hold_time=hold_time, repeat_guard=repeat_guard).validate()
        self.hold_time = hold_time
        self.repeat_guard = repeat_guard
        self.active: bool | None = None
        """Whether the operator drives (intervention/active); None until the node is heard."""
        self.last = ''
        """Label of the last key that did something."""
        self._axes = [(0.0, -math.inf)] * N_AXES  # (value, time of the last press)
        self._pending = [False] * N_BUTTONS
        self._sent = [False] * N_BUTTONS
        self._button_pressed_at: dict[str, float] = {}

    def press(self, key: str, now: float) -> str | None:
        """Take one key at time ``now``; return its label, or None if the key does nothing."""
        key = key.lower()
        if key in AXIS_KEYS:
            index, value, label = AXIS_KEYS[key]
            self._axes[index] = (value, now)
            self.last = label
            return label
        if key in BUTTON_KEYS:
            index, label = BUTTON_KEYS[key]
            previous = self._button_pressed_at.get(label, -math.inf)
            self._button_pressed_at[label] = now
            if now - previous < self.repeat_guard:
                return None  # auto-repeat of a held key
            self._pending[index] = True
            self.last = label
            return label
        return None

    def joy_values(self, now: float) -> tuple[list[float], list[int]]:
        """The Joy (axes, buttons) to publish at ``now``.

        An axis is its key's value until ``hold_time`` after the key's last press, else 0. A
        pressed button is 1 in exactly one message, and a button that was 1 is 0 in the next
        one (so two quick presses stay two rising edges).
        """
        axes = [value if now - pressed <= self.hold_time else 0.0
                for value, pressed in self._axes]
        buttons = [0] * N_BUTTONS
        for index in range(N_BUTTONS):
            if self._pending[index] and not self._sent[index]:
                buttons[index] = 1
                self._pending[index] = False
            self._sent[index] = bool(buttons[index])
        return axes, buttons

    def moving(self, now: float) -> list[str]:
        """Labels of the axes held at ``now`` (e.g. ['+x', '-yaw'])."""
        labels = []
        for index, value, label in AXIS_KEYS.values():
            held_value, pressed = self._axes[index]
            if held_value == value and now - pressed <= self.hold_time:
                labels.append(label)
        return labels

    def status(self, now: float) -> str:
        """The one-line status: who drives, what moves, the last key."""
        drives = {None: 'no teleop node yet', True: 'OPERATOR drives',
                  False: 'POLICY drives'}[self.active]
        moving = ' '.join(self.moving(now)) or '-'
        return f'[{drives}] moving: {moving}  last: {self.last or "-"}'


def parse_keys(text: str) -> list[str]:
    """Single keys from terminal input; escape sequences (arrows, F-keys) are dropped."""
    keys = []
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if char != '\x1b':
            keys.append(char)
            continue
        if index < len(text) and text[index] in '[O':
            index += 1
            while index < len(text) and not '\x40' <= text[index] <= '\x7e':
                index += 1
            index += 1  # the final byte
    return keys


def help_line(msg: Any) -> str:
    """A one-line text for a vlac_interfaces/HelpRequest (missing fields are left out)."""
    robot = getattr(msg, 'robot_id', '') or 'the robot'
    where = ', '.join(part for part in (
        f'episode {msg.episode_id}' if getattr(msg, 'episode_id', '') else '',
        f'step {msg.step}' if hasattr(msg, 'step') else '') if part)
    reason = ': '.join(str(part) for part in (getattr(msg, 'reason', ''),
                                              getattr(msg, 'detail', '')) if part)
    return f'HELP REQUESTED by {robot}' + (f' ({where})' if where else '') + (
        f': {reason}' if reason else '')


class Terminal:
    """The tool's terminal: keys without echo or line buffering, one status line redrawn.

    ``open`` switches the input to single keys with echo and the signal keys off (Ctrl-C
    arrives as a key, so the tool always quits through ``close``); ``close`` restores the
    saved settings. Lines printed go above the status line.
    """

    def __init__(self, fd: int, out: TextIO) -> None:
        self.fd = fd
        self.out = out
        self._saved: list | None = None
        self._status = ''
        self.eof = False

    def open(self) -> None:
        """Save the terminal settings and switch to single keys without echo."""
        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG)
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSADRAIN, mode)

    def close(self) -> None:
        """Restore the saved settings and end the status line (safe to call twice)."""
        if self._saved is None:
            return
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        finally:
            self._saved = None
            self._write('\n')

    def read_keys(self) -> list[str]:
        """The keys typed since the last call, without waiting."""
        keys: list[str] = []
        while select.select([self.fd], [], [], 0.0)[0]:
            data = os.read(self.fd, 1024)
            if not data:  # the terminal went away
                self.eof = True
                break
            keys += parse_keys(data.decode('utf-8', errors='ignore'))
        return keys

    def print(self, text: str) -> None:
        """Print lines above the status line."""
        self._write('\r\x1b[K' + text + '\n' + self._status)

    def status(self, text: str) -> None:
        """Redraw the status line (only when it changed: little traffic over ssh)."""
        if text == self._status:
            return
        self._status = text
        self._write('\r\x1b[K' + text)

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


class KeyboardTeleop(Node):
    """Keys from the terminal -> sensor_msgs/Joy at a fixed rate."""

    def __init__(self, **kwargs) -> None:
        super().__init__('teleop_keyboard', **kwargs)
        self.config = cfg = declare_dataclass(self, KeyboardConfig)
        self.state = KeyboardState(cfg.hold_time, cfg.repeat_guard)
        self.terminal = Terminal(sys.stdin.fileno(), sys.stdout)
        self.joy_pub = self.create_publisher(Joy, cfg.joy_topic, RELIABLE)
        self.create_subscription(Bool, 'intervention/active', self._on_active, LATCHED)
        try:
            from vlac_interfaces.msg import HelpRequest
        except ImportError:
            self.get_logger().warning('vlac_interfaces/msg/HelpRequest is not built: help '
                                      'requests will not be shown')
        else:
            self.create_subscription(HelpRequest, 'help_request', self._on_help, RELIABLE)
        self.create_timer(1.0 / cfg.rate_hz, self._tick)
        self.terminal.open()  # last: nothing above can fail with the terminal switched
        self.terminal.print(f'teleop_keyboard: sensor_msgs/Joy on '
                            f'{self.resolve_topic_name(cfg.joy_topic)} at {cfg.rate_hz:g} Hz '
                            f'for a teleop node with device "keyboard"\n{KEY_MAP}')

    def _tick(self) -> None:
        now = time.monotonic()
        for key in self.terminal.read_keys():
            if key == QUIT_KEY:
                raise KeyboardInterrupt
            self.state.press(key, now)
        if self.terminal.eof:
            raise KeyboardInterrupt
        axes, buttons = self.state.joy_values(now)
        self.joy_pub.publish(Joy(header=Header(stamp=self.get_clock().now().to_msg()),
                                 axes=axes, buttons=buttons))
        self.terminal.status(self.state.status(now))

    def _on_active(self, msg: Bool) -> None:
        if self.state.active != bool(msg.data):
            self.state.active = bool(msg.data)
            self.terminal.print('the operator drives' if msg.data else 'the policy drives')

    def _on_help(self, msg: Any) -> None:
        self.terminal.print('\a' + help_line(msg))

    def destroy_node(self) -> None:
        """Restore the terminal, then destroy the node."""
        self.terminal.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run hitl_teleop teleop_keyboard`` in a terminal."""
    if not sys.stdin.isatty():
        sys.exit('teleop_keyboard reads keys from a terminal: run it in one (ros2 run '
                 'hitl_teleop teleop_keyboard), not from a launch file or a pipe')
    run_node(KeyboardTeleop, args)


if __name__ == '__main__':
    main()
