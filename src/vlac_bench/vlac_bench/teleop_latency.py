"""Benchmark of the operator's takeover path: Joy in, arm command out; prints its figures.

  benchmark_teleop [--takeovers 30] [--rate 10] [--model POLICY_DIR] [--seed 0]

Over real DDS (loopback, private domain), separate processes: sim_node (the simulated Panda,
press_button), vlac_policy_node (servo adapter, ``sim_panda_servo.yaml``; the compact policy,
randomly initialised unless ``--model``, acting deterministically) and teleop_node with the
shipped Xbox layout, both at ``--rate``. This process is the gamepad: it publishes
sensor_msgs/Joy on ``robot_1/joy`` as ``joy_node`` does (on every change, and repeated at
20 Hz), and listens to the arm commands (``robot_1/servo_node/delta_twist_cmds``,
geometry_msgs/TwistStamped) and the teleop node's ``intervention/action``.

Each of ``--takeovers`` takeovers presses the deadman with the left stick already pushed
(0.5 of full travel, towards the middle of the workspace so the safety box never clips it),
pushes the stick further (0.9) while driving, then releases and lets the policy drive again;
the hold times are random (seeded) so the presses fall at every phase of the two nodes'
control periods. Printed, in ms (p50 / p99 / max):

- takeover latency: from publishing the Joy that pressed the deadman to receiving the first
  arm command whose linear.x is the operator's (deflection after the deadzone x scale; the
  deterministic policy's commands never carry that value), and its first stage, the same Joy
  to the teleop node's first ``intervention/action`` carrying it;
- stick change latency: from publishing the Joy with the new stick value to the first arm
  command reflecting it;
- the control period: requested, and the intervals between consecutive arm commands.

Both nodes tick on their own timers, so a takeover waits up to one teleop period and then up
to one policy period (plus the policy's work): expect latencies between a few ms and about
two control periods.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import threading
import time

import numpy as np

NS = '/robot_1'
JOY_PERIOD = 0.05
"""s between two repeated Joy messages (joy_node's autorepeat at 20 Hz)."""
WAIT = 2.0
"""s without the expected command before a takeover counts as missed."""
TOLERANCE = 1e-6
"""m/s: an arm command reflects the stick when its linear.x is this close to the expected."""
START_STICK, CHANGED_STICK = 0.5, 0.9
"""Stick deflections at the takeover and after the change while driving."""


def random_policy(folder: pathlib.Path, seed: int) -> pathlib.Path:
    """A randomly initialised compact policy saved in ``folder`` (the node tests' size)."""
    import torch
    from vlac_models.policy.compact import (
        CompactPolicy,
        CompactPolicyNet,
        PolicyConfig,
        save_model_dir,
    )

    torch.manual_seed(seed)
    net = CompactPolicyNet(PolicyConfig(frame_size=64, channels=(8, 16, 16, 8), embed_dim=32,
                                        hidden_dim=64, keypoint_temperature=1.0))
    return save_model_dir(CompactPolicy(net, seed=seed), folder / 'policy')


def figures(name: str, samples_s: list[float]) -> str:
    """One line: ``name``: p50 / p99 / max of ``samples_s`` (seconds) in ms."""
    ms = np.array(samples_s) * 1e3
    return (f'{name}: p50 {np.percentile(ms, 50):6.1f} ms, p99 {np.percentile(ms, 99):6.1f} ms, '
            f'max {ms.max():6.1f} ms ({len(ms)} samples)')


class Pad:
    """The benchmark's gamepad: Xbox layout, published on every change and every 50 ms."""

    def __init__(self, node, topic: str) -> None:
        from hitl_teleop.core import load_device
        from sensor_msgs.msg import Joy
        from vlac_ros.qos import RELIABLE

        self.device = load_device('xbox')
        self._joy = Joy
        self.pub = node.create_publisher(Joy, topic, RELIABLE)
        self.stick, self.deadman = 0.0, False
        self.sent_at = 0.0

    def set(self, stick: float, deadman: bool) -> float:
        """Move the left stick (x axis) and the deadman; publish now; the publish time (s)."""
        self.stick, self.deadman = stick, deadman
        return self.send()

    def send(self) -> float:
        """Publish the current state; return the monotonic time just before publishing."""
        axes, buttons = [0.0] * self.device.min_axes, [0] * self.device.min_buttons
        axes[self.device.axes['x'].axis] = self.stick
        buttons[self.device.buttons['deadman']] = int(self.deadman)
        msg = self._joy(axes=axes, buttons=buttons)
        self.sent_at = time.monotonic()
        self.pub.publish(msg)
        return self.sent_at

    def repeat(self) -> None:
        """Publish again if the last message is a repeat period old (autorepeat)."""
        if time.monotonic() - self.sent_at >= JOY_PERIOD:
            self.send()

    def hold_for(self, seconds: float) -> None:
        """Keep publishing the current state for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.repeat()
            time.sleep(0.005)

    def speed(self, stick: float) -> float:
        """The arm's x speed, m/s, that the x stick at ``stick`` commands (deadzone, scale)."""
        from hitl_teleop.core import apply_deadzone

        spec = self.device.axes['x']
        return apply_deadzone(stick, self.device.deadzone) * spec.sign * spec.scale


class Recorder:
    """(receipt time, linear.x) of every arm command and operator action, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.commands: list[tuple[float, float, bool]] = []
        self.actions: list[tuple[float, float]] = []
        self.x = float('nan')
        """The arm's newest end-effector x, m (base frame)."""

    def on_command(self, msg) -> None:
        """An arm command (TwistStamped): its receipt time, linear.x, whether it moves."""
        twist = msg.twist
        moving = any(v != 0.0 for v in (twist.linear.x, twist.linear.y, twist.linear.z,
                                         twist.angular.x, twist.angular.y, twist.angular.z))
        with self._lock:
            self.commands.append((time.monotonic(), float(twist.linear.x), moving))

    def on_action(self, msg) -> None:
        """An operator action (DeltaAction): its receipt time and x translation per period."""
        with self._lock:
            self.actions.append((time.monotonic(), float(msg.translation.x)))

    def on_pose(self, msg) -> None:
        """The arm's end-effector pose."""
        self.x = float(msg.pose.position.x)

    def first_command(self, after: float, speed: float) -> float | None:
        """Receipt time of the first arm command after ``after`` with linear.x == ``speed``."""
        with self._lock:
            return next((t for t, x, _ in self.commands
                         if t >= after and abs(x - speed) <= TOLERANCE), None)

    def first_action(self, after: float, step: float) -> float | None:
        """Receipt time of the first operator action after ``after`` moving x by ``step``."""
        with self._lock:
            return next((t for t, x in self.actions
                         if t >= after and abs(x - step) <= TOLERANCE), None)

    def policy_moving(self) -> bool:
        """Whether the policy has sent a moving command (it acts, not holds)."""
        with self._lock:
            return any(moving for _, _, moving in self.commands)

    def command_times(self) -> np.ndarray:
        """Receipt times of every arm command so far, s."""
        with self._lock:
            return np.array([t for t, _, _ in self.commands])


def wait_until(pad: Pad, done, timeout: float):
    """Keep the pad publishing until ``done()`` is truthy (returned) or ``timeout`` s pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = done()
        if result:
            return result
        pad.repeat()
        time.sleep(0.002)
    return None


def drive(pad: Pad, record: Recorder, stick: float, deadman: bool
          ) -> tuple[float, float | None]:
    """Set the pad; (publish time, receipt of the first arm command reflecting it or None)."""
    sent = pad.set(stick, deadman)
    speed = pad.speed(stick)
    return sent, wait_until(pad, lambda: record.first_command(sent, speed), WAIT)


def run(takeovers: int, rate: float, model: str, seed: int) -> int:
    """Start the nodes, run the takeovers, print the figures; exit status."""
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from std_msgs.msg import Bool
    from vlac_policy_node.config import arm_config_dir
    from vlac_ros.dds import apply_loopback_env
    from vlac_ros.qos import LATCHED, RELIABLE, SENSOR
    from vlac_testing.ros_graph import RosGraph

    from vlac_interfaces.msg import DeltaAction

    apply_loopback_env()
    period = 1.0 / rate
    rng = np.random.default_rng(seed)
    record = Recorder()
    takeover_s, teleop_s, change_s, missed = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, RosGraph(tmp) as graph:
        tmp_path = pathlib.Path(tmp)
        model = model or str(random_policy(tmp_path, seed))
        graph.start_node('sim_node', package='vlac_sim', name='sim_node', namespace=NS,
                         parameters={'task': 'press_button', 'seed': 3,
                                     'cameras.camera.rate_hz': 15.0})
        graph.start_node('vlac_policy_node', package='vlac_policy_node',
                         name='vlac_policy_node', namespace=NS,
                         params_files=[arm_config_dir() / 'sim_panda_servo.yaml'],
                         parameters={'model_path': model, 'autostart': True, 'rate_hz': rate,
                                     'task': 'press the yellow button', 'deterministic': True,
                                     'transition_images': False,
                                     'safety.max_step_rotation': 0.02})
        graph.start_node('teleop_node', package='hitl_teleop', name='teleop_node',
                         namespace=NS, parameters={'device': 'xbox', 'rate_hz': rate,
                                                   'bell': False, 'help_config': ''})
        node = graph.node
        node.create_subscription(TwistStamped, f'{NS}/servo_node/delta_twist_cmds',
                                 record.on_command, RELIABLE)
        node.create_subscription(DeltaAction, f'{NS}/intervention/action', record.on_action,
                                 RELIABLE)
        node.create_subscription(PoseStamped, f'{NS}/ee_pose', record.on_pose, SENSOR)
        active = graph.subscribe(Bool, f'{NS}/intervention/active', LATCHED)
        pad = Pad(node, f'{NS}/joy')
        graph.wait_for(lambda: 'teleop ready' in graph.logs(), 120.0, 'teleop node up')
        graph.wait_for_subscribers(f'{NS}/joy', timeout=60.0)
        graph.wait_for(record.policy_moving, 180.0, 'the policy acting')
        pad.hold_for(0.5)  # the pad at rest, as joy_node publishes it
        measured_from = time.monotonic()
        for _ in range(takeovers):
            # Towards the middle of the workspace along x: the safety box never clips it.
            direction = 1.0 if not record.x > 0.525 else -1.0
            start, changed = direction * START_STICK, direction * CHANGED_STICK
            pressed, got = drive(pad, record, start, deadman=True)
            action = record.first_action(pressed, pad.speed(start) * period)
            if got is None:
                missed.append('takeover')
            else:
                takeover_s.append(got - pressed)
                if action is not None:
                    teleop_s.append(action - pressed)
            pad.hold_for(rng.uniform(0.2, 0.4))
            moved, got = drive(pad, record, changed, deadman=True)
            if got is None:
                missed.append('stick change')
            else:
                change_s.append(got - moved)
            pad.hold_for(rng.uniform(0.2, 0.4))
            pad.set(0.0, deadman=False)
            if wait_until(pad, lambda: active.last is not None and not active.last.data,
                          WAIT) is None:
                missed.append('give back')
            pad.hold_for(rng.uniform(0.3, 0.6))  # the policy drives again
        intervals = np.diff(record.command_times()[record.command_times() >= measured_from])
        errors = [line for line in graph.logs().splitlines() if '[ERROR]' in line]
    cores, load = os.cpu_count(), os.getloadavg()[0]
    print(f'setup: sim_node, vlac_policy_node (compact policy, deterministic, servo adapter) '
          f'and teleop_node (xbox) at {rate:g} Hz, separate processes on loopback DDS; '
          f'{cores} cores, load average {load:.2f}', flush=True)
    print(f'control period: requested {period * 1e3:.1f} ms; arm command intervals p50 '
          f'{np.percentile(intervals, 50) * 1e3:.1f} ms, p99 '
          f'{np.percentile(intervals, 99) * 1e3:.1f} ms', flush=True)
    if takeover_s:
        print(figures(f'takeover latency (deadman Joy published -> first arm command with the '
                      f"operator's value), {takeovers} takeovers", takeover_s), flush=True)
    if teleop_s:
        print(figures('  of which Joy -> intervention/action (teleop_node)', teleop_s),
              flush=True)
    if change_s:
        print(figures('stick change latency (Joy with the new stick value -> first arm command '
                      'reflecting it)', change_s), flush=True)
    for line in errors[-5:]:
        print(f'node log: {line}', flush=True)
    if missed:
        print(f'missed: {len(missed)} ({", ".join(sorted(set(missed)))}) got no arm command '
              f'within {WAIT:g} s', flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark; 0 when every takeover was measured."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--takeovers', type=int, default=30, help='takeovers to measure')
    parser.add_argument('--rate', type=float, default=10.0,
                        help='control rate of the policy node and the teleop node, Hz')
    parser.add_argument('--model', default='',
                        help='compact policy directory (default: a random one, as the tests)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the hold times and policy')
    args = parser.parse_args(argv)
    if args.takeovers < 1:
        parser.error(f'--takeovers {args.takeovers} must be >= 1')
    if not 1.0 <= args.rate <= 100.0:
        parser.error(f'--rate {args.rate} Hz outside 1..100')
    model = str(pathlib.Path(args.model).resolve()) if args.model else ''
    return run(args.takeovers, args.rate, model, args.seed)


if __name__ == '__main__':
    sys.exit(main())
