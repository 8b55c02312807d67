"""A scripted expert playing the human teleoperator, through the arm's own command interfaces.

It sees what an operator standing at the table sees, taken from the simulator's
evaluation-only ground truth (object positions), plus the arm's ``ee_pose`` and
``joint_states``, and drives the arm exactly as a person with a teleop device would: servo
twists (geometry_msgs/TwistStamped) and gripper commands (std_msgs/Float64MultiArray). Tests
use it as the "human" in human-in-the-loop runs; the behaviour parameter makes it a
deliberately failing operator too ('random', 'stalled', 'reversed').

The expert restarts its script whenever the simulator publishes a (new) instruction, i.e. on
every reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from vlac_models.config import doc
from vlac_ros.params import declare_dataclass
from vlac_ros.qos import LATCHED, RELIABLE
from vlac_ros.spin import run_node

from vlac_interfaces.msg import GroundTruth
from vlac_sim import ros_msgs
from vlac_sim.experts import BEHAVIOURS, ScriptedExpert
from vlac_sim.scene import BASE_FRAME
from vlac_sim.tasks import TASKS


@dataclass(frozen=True)
class ExpertNodeConfig:
    """Parameters of ``expert_teleop``."""

    behaviour: str = field(default='expert', metadata=doc(
        f'operator behaviour, one of {", ".join(BEHAVIOURS)}'))
    seed: int = field(default=0, metadata=doc('seed of the random behaviours'))
    rate_hz: float = field(default=20.0, metadata=doc('command rate, Hz'))
    servo_topic: str = field(default='servo_node/delta_twist_cmds', metadata=doc(
        'geometry_msgs/TwistStamped output'))
    gripper_topic: str = field(default='gripper_controller/commands', metadata=doc(
        'std_msgs/Float64MultiArray gripper opening output, m'))

    def validate(self) -> 'ExpertNodeConfig':
        """Raise ValueError naming the bad value; return self."""
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f'behaviour {self.behaviour!r} unknown; one of {BEHAVIOURS}')
        if not 1.0 <= self.rate_hz <= 200.0:
            raise ValueError(f'rate_hz {self.rate_hz} outside 1..200')
        return self


class ExpertTeleop(Node):
    """Scripted operator driving the arm through its servo and gripper interfaces."""

    def __init__(self, **kwargs) -> None:
        super().__init__('expert_teleop', **kwargs)
        self.config = declare_dataclass(self, ExpertNodeConfig)
        self.expert: ScriptedExpert | None = None
        self._truth: GroundTruth | None = None
        self._pose: PoseStamped | None = None
        self._gripper = 0.08
        self._start = None
        self.twist_pub = self.create_publisher(TwistStamped, self.config.servo_topic, RELIABLE)
        self.gripper_pub = self.create_publisher(Float64MultiArray, self.config.gripper_topic,
                                                 RELIABLE)
        self.create_subscription(GroundTruth, 'eval_only/ground_truth', self._on_truth, RELIABLE)
        self.create_subscription(PoseStamped, 'ee_pose', self._on_pose, RELIABLE)
        self.create_subscription(JointState, 'joint_states', self._on_joints, RELIABLE)
        self.create_subscription(String, 'sim/instruction', self._on_instruction, LATCHED)
        self.create_timer(1.0 / self.config.rate_hz, self.on_timer)

    def _on_truth(self, msg: GroundTruth) -> None:
        if msg.task not in TASKS:
            return
        if self.expert is None or self.expert.task_name != msg.task:
            self._restart(msg.task)
        self._truth = msg

    def _on_pose(self, msg: PoseStamped) -> None:
        self._pose = msg

    def _on_joints(self, msg: JointState) -> None:
        opening = ros_msgs.finger_opening(msg)
        if opening is not None:
            self._gripper = opening

    def _on_instruction(self, msg: String) -> None:
        if self.expert is not None:  # every (re)published instruction marks a reset
            self._restart(self.expert.task_name)

    def _restart(self, task: str) -> None:
        self.expert = ScriptedExpert(task, self.config.behaviour, self.config.seed)
        self._start = self.get_clock().now()
        self._truth = None
        self.get_logger().info(f'operator script restarted: {task} ({self.config.behaviour})')

    def on_timer(self) -> None:
        """Act on the latest view of the scene and send one twist and one gripper command."""
        if self.expert is None or self._truth is None or self._pose is None:
            return
        now = self.get_clock().now()
        obs = ros_msgs.expert_observation(self._truth, self._pose, self._gripper,
                                          (now - self._start).nanoseconds * 1e-9)
        command = self.expert.act(obs)
        twist = TwistStamped()
        twist.header.stamp, twist.header.frame_id = now.to_msg(), BASE_FRAME
        (twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z) = \
            (float(v) for v in command.linear)
        (twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z) = \
            (float(v) for v in command.angular)
        self.twist_pub.publish(twist)
        self.gripper_pub.publish(Float64MultiArray(data=[float(command.gripper_width)]))


def main(args: list[str] | None = None) -> None:
    """Run the node until interrupted."""
    run_node(ExpertTeleop, args)


if __name__ == '__main__':
    main()
