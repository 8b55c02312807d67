"""sim_operator: a simulated person at a teleop device, publishing sensor_msgs/Joy.

The ROS side of ``vlac_sim.operator.SimulatedOperator``: it sees what an operator at the table
sees (the simulator's evaluation-only ground truth for object positions, ``ee_pose``,
``joint_states``), follows the episode runner (``episode_mode`` and ``episode``, latched) and
the robot's help requests (``help_request``), and publishes the Joy messages of a real device
layout (``device``, default the Xbox pad) on ``joy`` at ``rate_hz``, as the ``joy`` node
would. ``teleop_node`` turns them into takeovers, operator actions and events: the same path a
person's gamepad takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geometry_msgs.msg import PoseStamped
from hitl_teleop.core import load_device
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String
from vlac_models.config import doc
from vlac_ros.params import declare_dataclass
from vlac_ros.qos import LATCHED, RELIABLE
from vlac_ros.spin import run_node

from vlac_interfaces.msg import GroundTruth, HelpRequest
from vlac_sim import ros_msgs
from vlac_sim.experts import BEHAVIOURS
from vlac_sim.operator import OperatorSettings, SimulatedOperator
from vlac_sim.scene import MAX_GRIPPER_WIDTH
from vlac_sim.tasks import TASKS


@dataclass(frozen=True)
class SimOperatorConfig:
    """Parameters of ``sim_operator``."""

    device: str = field(default='xbox', metadata=doc(
        'device layout it publishes (config/teleop name or YAML path); teleop_node must use '
        'the same'))
    rate_hz: float = field(default=20.0, metadata=doc('Joy rate, Hz'))
    joy_topic: str = field(default='joy', metadata=doc('sensor_msgs/Joy output'))
    behaviour: str = field(default='expert', metadata=doc(
        f'script while driving, one of {", ".join(BEHAVIOURS)}'))
    seed: int = field(default=0, metadata=doc('seed of the random behaviours'))
    guide_time: float = field(default=3.0, metadata=doc(
        'human-guided: longest takeover, s'))
    takeover_at: float = field(default=-1.0, metadata=doc(
        'human-guided: also take over this long into the episode, s (< 0: only on help '
        'requests)'))
    verdict_after: float = field(default=1.0, metadata=doc(
        'demonstration: press success once the script held its final pose this long, s'))
    answer_help: bool = field(default=True, metadata=doc(
        'human-guided: take over on help requests'))

    def validate(self) -> 'SimOperatorConfig':
        """Raise ValueError naming the bad value; return self."""
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f'behaviour {self.behaviour!r} unknown; one of {BEHAVIOURS}')
        if not 1.0 <= self.rate_hz <= 500.0:
            raise ValueError(f'rate_hz {self.rate_hz} outside 1..500')
        self.settings().validate()
        return self

    def settings(self) -> OperatorSettings:
        """The ROS-free operator's settings."""
        return OperatorSettings(self.guide_time, self.takeover_at, self.verdict_after,
                                self.answer_help)


class SimOperatorNode(Node):
    """The scripted expert at a teleop device."""

    def __init__(self, **kwargs) -> None:
        super().__init__('sim_operator', **kwargs)
        self.config = cfg = declare_dataclass(self, SimOperatorConfig)
        self.device = load_device(cfg.device)
        self.operator = SimulatedOperator(next(iter(TASKS)), self.device, cfg.settings(),
                                          cfg.behaviour, cfg.seed)
        self._truth: GroundTruth | None = None
        self._pose: PoseStamped | None = None
        self._gripper = MAX_GRIPPER_WIDTH
        self._mode = ''
        self._episode_at = -1e9  # when the last episode message came (s)
        self.joy_pub = self.create_publisher(Joy, cfg.joy_topic, RELIABLE)
        self.create_subscription(GroundTruth, 'eval_only/ground_truth', self._on_truth, RELIABLE)
        self.create_subscription(PoseStamped, 'ee_pose', self._on_pose, RELIABLE)
        self.create_subscription(JointState, 'joint_states', self._on_joints, RELIABLE)
        self.create_subscription(String, 'episode_mode', self._on_mode, LATCHED)
        self.create_subscription(String, 'episode', self._on_episode, LATCHED)
        self.create_subscription(HelpRequest, 'help_request', self._on_help, RELIABLE)
        self.create_timer(1.0 / cfg.rate_hz, self._on_timer)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_truth(self, msg: GroundTruth) -> None:
        self._truth = msg

    def _on_pose(self, msg: PoseStamped) -> None:
        self._pose = msg

    def _on_joints(self, msg: JointState) -> None:
        opening = ros_msgs.finger_opening(msg)
        if opening is not None:
            self._gripper = opening

    def _on_mode(self, msg: String) -> None:
        mode, self._mode = msg.data.strip(), msg.data.strip()
        # Mode and episode id come on two topics: a mode just after its episode id is its own.
        if mode != self.operator.mode and self._now() - self._episode_at < 1.0:
            self.operator.start(mode, self._episode_at, self.operator.task_name)

    def _on_episode(self, msg: String) -> None:
        task = self._truth.task if self._truth is not None and self._truth.task in TASKS \
            else None
        self._episode_at = self._now()
        self.operator.start(self._mode, self._episode_at, task)
        self.get_logger().info(f'episode {msg.data.strip()!r}: {self._mode or "autonomous"}'
                               + (', driving' if self.operator.driving else ''))

    def _on_help(self, msg: HelpRequest) -> None:
        self.operator.on_help()
        self.get_logger().info(f'help requested ({msg.reason}): '
                               + ('taking over' if self.operator.mode == 'human_guided'
                                  else 'not in a human-guided episode'))

    def _on_timer(self) -> None:
        axes, buttons = [0.0] * self.device.min_axes, [0] * self.device.min_buttons
        if self._truth is not None and self._pose is not None:
            obs = ros_msgs.expert_observation(self._truth, self._pose, self._gripper, 0.0)
            axes, buttons = self.operator.joy(obs, self._now())
        msg = Joy(axes=[float(a) for a in axes], buttons=[int(b) for b in buttons])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.joy_pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    """Console entry point: ``ros2 run vlac_sim sim_operator``."""
    run_node(SimOperatorNode, args)


if __name__ == '__main__':
    main()
