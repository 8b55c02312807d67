"""teleop_keyboard: the key logic without ROS, then the real tool in a pseudo-terminal over DDS."""

import os
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time

from hitl_teleop.core import JoyInput, Mode, TakeoverMachine, load_device
from hitl_teleop.keyboard import (
    AXIS_KEYS,
    BUTTON_KEYS,
    KEY_MAP,
    N_AXES,
    N_BUTTONS,
    KeyboardConfig,
    KeyboardState,
    help_line,
    parse_keys,
)
import pytest
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool
from vlac_ros.qos import LATCHED, RELIABLE


# -- KeyboardState -------------------------------------------------------------------------------
def test_idle_keyboard_sends_zeros():
    state = KeyboardState()
    assert state.joy_values(0.0) == ([0.0] * N_AXES, [0] * N_BUTTONS)
    assert state.status(0.0) == '[no teleop node yet] moving: -  last: -'


def test_axis_key_holds_for_hold_time_and_repeat_keeps_it_alive():
    state = KeyboardState(hold_time=0.25)
    assert state.press('w', 10.0) == '+x'
    assert state.joy_values(10.0)[0] == [1.0, 0, 0, 0, 0, 0]
    assert state.joy_values(10.25)[0][0] == 1.0
    assert state.joy_values(10.26)[0][0] == 0.0
    for t in (11.0, 11.03, 11.06, 11.2, 11.4):  # auto-repeat
        state.press('w', t)
        assert state.joy_values(t + 0.02)[0][0] == 1.0
    assert state.joy_values(11.66)[0][0] == 0.0


def test_each_axis_key_and_opposite_keys():
    state = KeyboardState()
    for key, (index, value, label) in AXIS_KEYS.items():
        assert state.press(key, 1.0) == label
        axes, _ = state.joy_values(1.0)
        assert axes[index] == value
    # The last of two opposite keys wins; several axes move at once.
    state.press('w', 2.0)
    state.press('s', 2.01)
    state.press('q', 2.02)
    state.press('E', 2.03)  # caps lock
    state.press('a', 2.04)
    assert state.joy_values(2.05)[0] == [-1.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    assert state.moving(2.05) == ['-x', '+y', '-yaw']
    assert 'moving: -x +y -yaw' in state.status(2.05)


def test_button_is_one_for_exactly_one_message():
    state = KeyboardState()
    assert state.press(' ', 1.0) == 'deadman'
    assert state.joy_values(1.0)[1] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert state.joy_values(1.05)[1] == [0] * N_BUTTONS
    assert state.joy_values(1.1)[1] == [0] * N_BUTTONS


def test_two_presses_before_a_message_stay_two_rising_edges():
    state = KeyboardState(repeat_guard=0.0)
    state.press(' ', 1.0)
    state.joy_values(1.0)
    state.press(' ', 1.01)
    # The button was 1 in the last message: 0 first, so the teleop node sees a new edge.
    assert [state.joy_values(t)[1][0] for t in (1.02, 1.07, 1.12)] == [0, 1, 0]


def test_auto_repeat_of_a_button_key_is_ignored():
    state = KeyboardState(repeat_guard=0.7)
    state.press(' ', 1.0)
    state.joy_values(1.0)
    for t in (1.5, 1.53, 1.56, 2.0, 2.5):  # the key is held: repeats keep being ignored
        assert state.press(' ', t) is None
        assert state.joy_values(t)[1][0] == 0
    assert state.press(' ', 3.3) == 'deadman'  # a new press
    assert state.joy_values(3.3)[1][0] == 1


def test_every_button_key():
    state = KeyboardState()
    for key, (index, label) in BUTTON_KEYS.items():
        state = KeyboardState()
        assert state.press(key, 1.0) == label
        buttons = state.joy_values(1.0)[1]
        assert buttons == [int(i == index) for i in range(N_BUTTONS)]
    assert state.press('7', 1.0) is None and state.press('\x1b', 1.0) is None


def test_key_map_shows_every_key():
    for key in AXIS_KEYS:
        assert f'{key} /' in KEY_MAP or f'/ {key}' in KEY_MAP
    for word in ('space', 'Enter or y', 'n  failure', 'z ', 'x  stop', 'p ', 'g / h',
                 'Ctrl-C'):
        assert word in KEY_MAP


def test_status_shows_who_drives():
    state = KeyboardState()
    state.active = True
    state.press('g', 1.0)
    assert state.status(1.0) == '[OPERATOR drives] moving: -  last: gripper open'
    state.active = False
    assert state.status(1.0).startswith('[POLICY drives]')


def test_parse_keys_drops_escape_sequences():
    assert parse_keys('w\x1b[Aa\x1bOB \x1b[15~q\r') == ['w', 'a', ' ', 'q', '\r']
    assert parse_keys('\x1b') == []
    assert parse_keys('\x03') == ['\x03']


def test_help_line():
    class Request:
        robot_id, episode_id, step = 'robot_1', 'ep7', 42
        reason, detail = 'stagnation', 'progress rose 0.01 in 3.0 s'

    assert help_line(Request()) == ('HELP REQUESTED by robot_1 (episode ep7, step 42): '
                                    'stagnation: progress rose 0.01 in 3.0 s')
    assert help_line(object()) == 'HELP REQUESTED by the robot'


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match='rate_hz 1.0'):
        KeyboardConfig(rate_hz=1.0).validate()
    with pytest.raises(ValueError, match='hold_time 0.0'):
        KeyboardState(hold_time=0.0)
    with pytest.raises(ValueError, match='repeat_guard -1'):
        KeyboardConfig(repeat_guard=-1).validate()
    with pytest.raises(ValueError, match='joy_topic'):
        KeyboardConfig(joy_topic='').validate()


def test_keyboard_drives_the_takeover_machine_through_keyboard_yaml():
    """The tool's layout is the one config/teleop/keyboard.yaml describes."""
    device = load_device('keyboard')
    assert (device.min_axes, device.min_buttons) == (N_AXES, N_BUTTONS)
    state, machine, period = KeyboardState(), TakeoverMachine(device, 0.1), 0.1

    def send(now):
        axes, buttons = state.joy_values(now)
        machine.on_joy(JoyInput(now, tuple(axes), tuple(buttons)))
        return machine.tick(now)

    state.press(' ', 0.0)
    assert send(0.0).mode is Mode.OPERATOR
    state.press('w', 0.05)
    state.press('a', 0.05)
    state.press('q', 0.05)
    out = send(0.1)
    assert out.action.translation == pytest.approx((0.1 * period, 0.1 * period, 0.0))
    assert out.action.rotation == pytest.approx((0.0, 0.0, 0.5 * period))
    for key, role in (('g', 'gripper_open'), ('h', 'gripper_close'), ('y', 'success'),
                      ('n', 'failure'), ('z', 'ready'), ('x', 'stop'), ('p', 'pause')):
        assert BUTTON_KEYS[key][0] == device.buttons[role]
    state.press(' ', 1.0)
    out = send(1.0)
    assert out.mode is Mode.POLICY and out.action.is_zero()


# -- the real tool in a pseudo-terminal ----------------------------------------------------------
class PtyReader:
    """Everything the tool writes to its terminal, read in the background."""

    def __init__(self, fd):
        self.fd = fd
        self.data = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if select.select([self.fd], [], [], 0.05)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                self.data += chunk

    def text(self):
        return self.data.decode('utf-8', errors='replace')

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2.0)


def test_keyboard_tool_in_a_terminal_publishes_joy(ros_graph):
    joys = ros_graph.subscribe(Joy, '/joy', RELIABLE)
    active = ros_graph.node.create_publisher(Bool, '/intervention/active', LATCHED)
    from vlac_interfaces.msg import HelpRequest

    helps = ros_graph.node.create_publisher(HelpRequest, '/help_request', RELIABLE)
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    prefix = ['setpriv', '--pdeathsig', 'KILL', '--'] if shutil.which('setpriv') else []
    proc = subprocess.Popen(
        [*prefix, sys.executable, '-m', 'hitl_teleop.keyboard'], stdin=slave, stdout=slave,
        stderr=slave, env=ros_graph.env, cwd=ros_graph.workdir, start_new_session=True)
    screen = PtyReader(master)
    try:
        ros_graph.wait_for(lambda: 'Ctrl-C' in screen.text() and joys.count() >= 2, 15.0,
                           f'key map and Joy messages; screen so far: {screen.text()!r}')
        during = termios.tcgetattr(slave)
        assert not during[3] & (termios.ECHO | termios.ICANON | termios.ISIG)
        for word in ('w / s', 'space', 'take over', '/joy at 20 Hz'):
            assert word in screen.text()
        assert list(joys.last.axes) == [0.0] * 6 and list(joys.last.buttons) == [0] * 8

        os.write(master, b' ')  # deadman: button 0 is 1 in exactly one message
        ros_graph.wait_for(lambda: any(m.buttons[0] for m in joys.messages), 5.0, 'deadman')
        count = joys.count()
        ros_graph.wait_for(lambda: joys.count() >= count + 3, 5.0, 'three more Joy messages')
        assert sum(m.buttons[0] for m in joys.messages) == 1

        os.write(master, b'wq')  # forward and turn left, held for hold_time
        ros_graph.wait_for(lambda: joys.last.axes[0] == 1.0 and joys.last.axes[5] == 1.0,
                           5.0, 'axes x and yaw at +1')
        assert list(joys.last.axes[1:5]) == [0.0] * 4
        ros_graph.wait_for(lambda: 'moving: +x +yaw' in screen.text(), 5.0, 'status line')
        ros_graph.wait_for(lambda: joys.last.axes[0] == 0.0, 5.0, 'x back to 0 after hold')

        active.publish(Bool(data=True))
        ros_graph.wait_for(lambda: '[OPERATOR drives]' in screen.text(), 5.0, 'who drives')
        helps.publish(HelpRequest(robot_id='robot_1', episode_id='ep3', step=12,
                                  reason='stagnation', detail='progress rose 0.01'))
        ros_graph.wait_for(lambda: '\aHELP REQUESTED by robot_1 (episode ep3, step 12): '
                           'stagnation: progress rose 0.01' in screen.text(), 5.0, 'help line')

        os.write(master, b'\x03')  # Ctrl-C
        assert proc.wait(timeout=10.0) == 0, screen.text()
        time.sleep(0.2)  # the last bytes reach the reader
        assert termios.tcgetattr(slave) == before  # the terminal is restored
        tail = screen.text().rstrip('\r\n').rsplit('\n', 1)[-1]
        assert 'OPERATOR drives' in tail  # the status line, then a new line for the shell
        assert screen.text().endswith('\n')
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        screen.stop()
        os.close(master)
        os.close(slave)


def test_keyboard_tool_refuses_to_run_without_a_terminal(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'hitl_teleop.keyboard'],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert 'reads keys from a terminal' in result.stderr
