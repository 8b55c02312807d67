"""teleop_node: the operator's device -> takeover, intervention actions and operator events.

A thin node around the ROS-free ``hitl_teleop.core.TakeoverMachine`` (device mapping,
deadzone, deadman, takeover state machine) and ``hitl_teleop.help.HelpDetector``.

Topics (relative to the robot namespace):
  in   joy (sensor_msgs/Joy: the ``joy`` node, ``spacenav`` or ``teleop_keyboard``), progress
       (vlac_interfaces/ProgressReward: the critic, for help requests), episode
       (std_msgs/String, latched: a new episode resets the help detector), the policy node's
       ``~/action_preview`` (vlac_interfaces/DeltaAction: the gripper state a takeover starts
       from)
  out  intervention/action (vlac_interfaces/DeltaAction, every control period while the
       operator drives; exactly one zero action when it gives back), intervention/active
       (std_msgs/Bool, latched), operator/ready, operator/stop, operator/success,
       operator/failure (std_msgs/Bool true on the button press), operator/events
       (std_msgs/String: every event's name), help_request (vlac_interfaces/HelpRequest),
       /diagnostics (1 Hz)

Safety: releasing the deadman gives back after exactly one zero action; no Joy message for
the device's ``timeout`` (unplugged, crashed driver) gives back the same way, so the policy
node holds or the policy resumes; a malformed Joy (too few axes or buttons, NaN, out of range)
is rejected with a throttled error and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Vector3
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Header, String
from vlac_models.config import doc
from vlac_models.stamps import stamp_seconds
from vlac_models.throttle import RejectLog
from vlac_ros.params import declare_dataclass
from vlac_ros.qos import LATCHED, RELIABLE
from vlac_ros.spin import run_node

from hitl_teleop.core import BadInput, Event, JoyInput, Mode, TakeoverMachine, load_device
from hitl_teleop.help import HelpConfig, HelpDetector
from vlac_interfaces.msg import DeltaAction, HelpRequest, ProgressReward

EVENT_TOPICS = {Event.READY: 'operator/ready', Event.STOP: 'operator/stop',
                Event.SUCCESS: 'operator/success', Event.FAILURE: 'operator/failure'}
"""The episode runner's operator topics, by event."""


@dataclass(frozen=True)
class TeleopConfig:
    """Parameters of ``teleop_node`` (SI units)."""

    device: str = field(default='xbox', metadata=doc(
        'device configuration: a name in config/teleop (xbox, playstation, spacemouse, '
        'keyboard) or a YAML path'))
    rate_hz: float = field(default=10.0, metadata=doc(
        "control rate, Hz: one operator action per period (the policy node's rate)"))
    joy_topic: str = field(default='joy', metadata=doc('sensor_msgs/Joy input'))
    base_frame: str = field(default='panda_link0', metadata=doc(
        "frame of the published actions (the arm's base frame, REP 103)"))
    policy_action_topic: str = field(default='vlac_policy_node/action_preview', metadata=doc(
        "the policy node's executed actions (gripper state at takeover)"))
    help_config: str = field(default='help', metadata=doc(
        'help-request thresholds: a name in config/teleop or a YAML path; empty: no help '
        'requests'))
    robot_id: str = field(default='', metadata=doc('robot identifier; empty: the namespace'))
    bell: bool = field(default=True, metadata=doc(
        'ring the terminal bell on a help request'))

    def validate(self) -> 'TeleopConfig':
        """Raise ValueError naming the bad value; return self."""
        if not self.device:
            raise ValueError('device is empty')
        if not 1.0 <= self.rate_hz <= 500.0:
            raise ValueError(f'rate_hz {self.rate_hz} outside 1..500')
        if not self.joy_topic:
            raise ValueError('joy_topic is empty')
        if not self.base_frame:
            raise ValueError('base_frame is empty')
        return self


def help_config(name_or_path: str) -> HelpConfig:
    """The help thresholds of a config/teleop name or a YAML path."""
    import pathlib

    from hitl_teleop.core import device_config_dir

    path = pathlib.Path(name_or_path)
    if not path.suffix:
        path = device_config_dir() / f'{name_or_path}.yaml'
    return HelpConfig.from_yaml(path)


class TeleopNode(Node):
    """Operator device in, takeover and operator events out."""

    def __init__(self, **kwargs) -> None:
        super().__init__('teleop_node', **kwargs)
        self.config = cfg = declare_dataclass(self, TeleopConfig)
        self.device = load_device(cfg.device)
        self.period = 1.0 / cfg.rate_hz
        self.machine = TakeoverMachine(self.device, self.period)
        self.detector = HelpDetector(help_config(cfg.help_config)) if cfg.help_config else None
        self.robot_id = cfg.robot_id or self.get_namespace().strip('/') or 'robot'
        self.rejects = RejectLog(self.get_logger(), period=2.0)
        self.episode_id = ''
        self.episode_start: float | None = None
        self.counts = {'joy': 0, 'rejected': 0, 'takeovers': 0, 'help_requests': 0}
        group = MutuallyExclusiveCallbackGroup()
        self.action_pub = self.create_publisher(DeltaAction, 'intervention/action', RELIABLE)
        self.active_pub = self.create_publisher(Bool, 'intervention/active', LATCHED)
        self.event_pubs = {event: self.create_publisher(Bool, topic, RELIABLE)
                           for event, topic in EVENT_TOPICS.items()}
        self.events_pub = self.create_publisher(String, 'operator/events', RELIABLE)
        self.help_pub = self.create_publisher(HelpRequest, 'help_request', RELIABLE)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        self.create_subscription(Joy, cfg.joy_topic, self._on_joy, RELIABLE,
                                 callback_group=group)
        self.create_subscription(ProgressReward, 'progress', self._on_progress, RELIABLE,
                                 callback_group=group)
        self.create_subscription(String, 'episode', self._on_episode, LATCHED,
                                 callback_group=group)
        self.create_subscription(DeltaAction, cfg.policy_action_topic, self._on_policy_action,
                                 RELIABLE, callback_group=group)
        self.create_timer(self.period, self._tick, callback_group=group)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group)
        self.active_pub.publish(Bool(data=False))
        self.get_logger().info(
            f'teleop ready: device {self.device.name!r} on {cfg.joy_topic!r}, deadman button '
            f'{self.device.buttons["deadman"]} ({self.device.deadman_mode}), '
            f'{cfg.rate_hz} Hz' + ('' if self.detector else ', help requests off'))

    # -- inputs ------------------------------------------------------------------------------
    def _on_joy(self, msg: Joy) -> None:
        self.counts['joy'] += 1
        joy = JoyInput(time.monotonic(), tuple(float(v) for v in msg.axes),
                       tuple(int(b) for b in msg.buttons))
        try:
            self.machine.on_joy(joy)
        except BadInput as err:
            self.counts['rejected'] += 1
            self.rejects.report('joy', f'Joy message rejected, no motion from it: {err}')

    def _on_policy_action(self, msg: DeltaAction) -> None:
        if self.machine.mode is Mode.POLICY and 0.0 <= msg.gripper <= 1.0:
            self.machine.set_gripper(float(msg.gripper))

    def _on_episode(self, msg: String) -> None:
        self.episode_id = msg.data.strip()
        self.episode_start = None  # the episode's first progress value starts it
        if self.detector is not None:
            self.detector = HelpDetector(self.detector.config)

    def _on_progress(self, msg: ProgressReward) -> None:
        if self.detector is None or not self.episode_id:
            return
        stamp = stamp_seconds(msg.stamp_b)
        if self.episode_start is None:
            self.episode_start = stamp
            self.detector.reset(stamp)
        try:
            request = self.detector.update(stamp, float(msg.value))
        except ValueError as err:
            self.rejects.report('progress', f'progress value rejected: {err}')
            return
        if request is None or self.machine.mode is not Mode.POLICY:
            return  # the operator drives: no one to ask
        self.counts['help_requests'] += 1
        step = int((stamp - self.episode_start) / self.period)
        self.help_pub.publish(HelpRequest(
            header=Header(stamp=msg.stamp_b), robot_id=self.robot_id,
            episode_id=self.episode_id, step=step, reason=request.reason.value,
            progress=float(request.progress), detail=request.detail))
        line = (f'HELP REQUESTED by {self.robot_id} (episode {self.episode_id}, step {step}): '
                f'{request.reason.value}: {request.detail}')
        self.get_logger().warning(line)
        if self.config.bell:
            print('\a' + line, file=sys.stderr, flush=True)

    # -- control period ----------------------------------------------------------------------
    def _tick(self) -> None:
        out = self.machine.tick(time.monotonic())
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.config.base_frame)
        for event in out.events:
            self.events_pub.publish(String(data=event.value))
            if event is Event.TAKEOVER:
                self.counts['takeovers'] += 1
                self.active_pub.publish(Bool(data=True))
                self.get_logger().info('operator takes over')
            elif event in EVENT_TOPICS:
                self.event_pubs[event].publish(Bool(data=True))
                self.get_logger().info(f'operator event: {event.value}')
        if out.action is not None:  # the last one of a give-back is the zero action
            t, r = out.action.translation, out.action.rotation
            self.action_pub.publish(DeltaAction(
                header=header, translation=Vector3(x=t[0], y=t[1], z=t[2]),
                rotation=Vector3(x=r[0], y=r[1], z=r[2]), gripper=float(out.action.gripper)))
        if Event.GIVE_BACK in out.events:
            self.active_pub.publish(Bool(data=False))
            self.get_logger().info(f'operator gives back ({out.reason or "released"})')

    def _publish_diagnostics(self) -> None:
        values = {'mode': self.machine.mode.value, 'device': self.device.name,
                  **{k: str(v) for k, v in self.counts.items()}}
        self.diagnostics_pub.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()),
            status=[DiagnosticStatus(
                level=DiagnosticStatus.OK, name=self.get_fully_qualified_name(),
                message=f'{self.machine.mode.value} drives',
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])]))


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run hitl_teleop teleop_node``."""
    run_node(TeleopNode, args)


if __name__ == '__main__':
    main()
