"""Takeover over real DDS: the test's Joy -> teleop_node -> vlac_policy_node -> simulated arm.

Separate processes for the simulator, the policy node (the real compact backend, randomly
initialised, saved and loaded by the real code) and the teleop node with the shipped Xbox
configuration; the test publishes sensor_msgs/Joy as the ``joy`` node would.
"""

import math
import threading
import time

from geometry_msgs.msg import PoseStamped
from hitl_teleop.core import apply_deadzone, load_device
import numpy as np
import pytest
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, String
import torch
from vlac_models.policy.compact import (
    CompactPolicy,
    CompactPolicyNet,
    PolicyConfig,
    save_model_dir,
)
from vlac_policy_node.config import arm_config_dir
from vlac_ros.qos import LATCHED, RELIABLE, SENSOR

from vlac_interfaces.msg import DeltaAction, Transition

NS = '/robot_1'
XBOX = load_device('xbox')
DEADMAN = XBOX.buttons['deadman']
STICK_X = XBOX.axes['x'].axis
PERIOD = 0.1  # s, the policy node's and teleop node's control period (10 Hz)


@pytest.fixture(scope='module')
def policy_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = CompactPolicyNet(PolicyConfig(frame_size=64, channels=(8, 16, 16, 8), embed_dim=32,
                                        hidden_dim=64, keypoint_temperature=1.0))
    return save_model_dir(CompactPolicy(net, seed=0), tmp_path_factory.mktemp('p') / 'model')


class Pad:
    """The test's gamepad: publishes Joy at 20 Hz from a thread while ``on``."""

    def __init__(self, graph) -> None:
        self.pub = graph.node.create_publisher(Joy, f'{NS}/joy', RELIABLE)
        self.axes, self.buttons = [0.0] * XBOX.min_axes, [0] * XBOX.min_buttons
        self.on, self.last_sent = True, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.on:
                self.pub.publish(Joy(axes=list(self.axes), buttons=list(self.buttons)))
                self.last_sent = time.monotonic()

    def hold(self, stick_x: float, deadman: bool) -> None:
        axes, buttons = [0.0] * XBOX.min_axes, [0] * XBOX.min_buttons
        axes[STICK_X], buttons[DEADMAN] = stick_x, int(deadman)
        self.axes, self.buttons = axes, buttons

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


def start(graph, policy_dir):
    graph.start_node('sim_node', package='vlac_sim', name='sim_node', namespace=NS,
                     parameters={'task': 'press_button', 'seed': 3,
                                 'cameras.camera.rate_hz': 15.0})
    graph.start_node('vlac_policy_node', package='vlac_policy_node', name='vlac_policy_node',
                     namespace=NS, params_files=[arm_config_dir() / 'sim_panda_servo.yaml'],
                     parameters={'model_path': str(policy_dir), 'autostart': True,
                                 'task': 'press the yellow button', 'deterministic': True,
                                 'safety.max_step_rotation': 0.02})
    graph.start_node('teleop_node', package='hitl_teleop', name='teleop_node', namespace=NS,
                     parameters={'device': 'xbox', 'rate_hz': 1.0 / PERIOD, 'bell': False})
    logs = {
        'poses': graph.subscribe(PoseStamped, f'{NS}/ee_pose', SENSOR, limit=100000),
        'transitions': graph.subscribe(Transition, f'{NS}/transitions', RELIABLE,
                                       limit=100000),
        'actions': graph.subscribe(DeltaAction, f'{NS}/intervention/action', RELIABLE,
                                   limit=100000),
        'active': graph.subscribe(Bool, f'{NS}/intervention/active', LATCHED),
    }
    graph.wait_for(lambda: logs['poses'].count() > 0, 60.0, 'simulator running')
    graph.wait_for(lambda: 'teleop ready' in graph.logs(), 60.0, 'teleop node up')
    return logs


def x_of(msg: PoseStamped) -> float:
    return msg.pose.position.x


def test_takeover_moves_the_arm_and_release_gives_one_zero_action(ros_graph, policy_dir):
    logs = start(ros_graph, policy_dir)
    ros_graph.wait_for(lambda: logs['transitions'].count() >= 5, 90.0, 'the policy acting')
    assert not any(t.is_intervention for t in logs['transitions'].messages)
    pad = Pad(ros_graph)
    try:
        x0 = x_of(logs['poses'].last)
        pad.hold(0.6, deadman=True)
        ros_graph.wait_for(lambda: logs['active'].last is not None and logs['active'].last.data,
                           5.0, 'takeover')
        n_before = logs['transitions'].count()
        time.sleep(1.2)
        x1 = x_of(logs['poses'].last)
        pad.hold(0.0, deadman=False)
        ros_graph.wait_for(lambda: not logs['active'].last.data, 5.0, 'give back')
        ros_graph.wait_for(lambda: logs['transitions'].count() >= n_before + 20, 30.0,
                           'the policy resumes')
    finally:
        pad.close()
    step = apply_deadzone(0.6, XBOX.deadzone) * XBOX.axes['x'].scale * PERIOD
    assert x1 - x0 > 6 * step, f'the arm moved {x1 - x0:.3f} m forward in 1.2 s of takeover'
    operated = [t for t in logs['transitions'].messages if t.is_intervention]
    assert len(operated) >= 8
    for t in operated:
        assert t.action.translation.x == pytest.approx(step, abs=1e-6)
        assert abs(t.action.translation.y) < 1e-9 and len(t.action_tokens) == 7
        assert math.isfinite(t.log_prob) and math.isfinite(t.value) and t.log_prob != 0.0
    after = logs['transitions'].messages[-5:]
    assert not any(t.is_intervention for t in after), 'the policy did not take back over'
    actions = logs['actions'].messages
    last_moving = max(i for i, a in enumerate(actions) if a.translation.x != 0.0)
    tail = actions[last_moving + 1:]
    assert len(tail) == 1 and tail[0].translation.x == 0.0, \
        f'{len(tail)} actions after the last moving one (want exactly one zero action)'
    assert 'operator takes over' in ros_graph.logs() and 'released' in ros_graph.logs()


def test_silent_or_malformed_joy_never_moves_the_arm(ros_graph, policy_dir):
    mode = ros_graph.node.create_publisher(String, f'{NS}/episode_mode', LATCHED)
    mode.publish(String(data='demonstration'))  # the policy never acts: only the operator
    logs = start(ros_graph, policy_dir)
    ros_graph.wait_for(lambda: 'demonstration: waiting for the operator' in ros_graph.logs(),
                       90.0, 'the policy node holding for the operator')
    pad = Pad(ros_graph)
    try:
        # Malformed: too few axes, then NaN, both with the deadman pressed and a stick pushed.
        x0 = x_of(logs['poses'].last)
        pad.axes, pad.buttons = [0.9, 0.9, 0.9], [0] * XBOX.min_buttons
        pad.buttons[DEADMAN] = 1
        time.sleep(1.0)
        pad.hold(0.9, deadman=True)
        pad.axes[STICK_X] = float('nan')
        time.sleep(1.0)
        assert logs['active'].last is None or not logs['active'].last.data
        assert not logs['transitions'].messages and not logs['actions'].messages
        assert abs(x_of(logs['poses'].last) - x0) < 0.002
        assert 'Joy message rejected' in ros_graph.logs()
        # Silent: drive, then the pad goes quiet (unplugged) with the stick still pushed.
        pad.hold(0.6, deadman=True)
        ros_graph.wait_for(lambda: logs['active'].last is not None and logs['active'].last.data,
                           5.0, 'takeover')
        time.sleep(0.8)
        pad.on = False
        silent_at = pad.last_sent
        ros_graph.wait_for(lambda: not logs['active'].last.data, 5.0, 'give back on timeout')
        gave_back = time.monotonic()
        time.sleep(0.5)
        x_rest = x_of(logs['poses'].last)
        time.sleep(1.0)
        drift = abs(x_of(logs['poses'].last) - x_rest)
    finally:
        pad.close()
    assert gave_back - silent_at <= XBOX.timeout + PERIOD + 0.3, \
        f'gave back {gave_back - silent_at:.2f} s after the last Joy message'
    assert drift < 0.002, f'the arm kept moving {drift:.4f} m after the pad went silent'
    assert 'timeout' in ros_graph.logs()
    moved = [t for t in logs['transitions'].messages if t.is_intervention]
    assert moved and all(t.is_intervention for t in logs['transitions'].messages)
    assert np.isfinite([t.action.translation.x for t in moved]).all()
