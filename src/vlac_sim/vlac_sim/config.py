"""Configuration of the simulated arm node (ROS-free, validated dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlac_models.config import doc

from vlac_sim.control import SafetyLimits
from vlac_sim.tasks import TASKS


@dataclass(frozen=True)
class CommandTopics:
    """Command interfaces: each enabled (non-empty topic) like the real controller it mimics."""

    servo: str = field(default='servo_node/delta_twist_cmds', metadata=doc(
        'geometry_msgs/TwistStamped Cartesian velocity (MoveIt Servo); empty disables'))
    pose: str = field(default='target_pose', metadata=doc(
        'geometry_msgs/PoseStamped Cartesian target in the base frame; empty disables'))
    trajectory: str = field(default='joint_trajectory_controller/joint_trajectory', metadata=doc(
        'trajectory_msgs/JointTrajectory (ros2_control JTC topic interface); empty disables'))
    position: str = field(default='forward_position_controller/commands', metadata=doc(
        'std_msgs/Float64MultiArray with 7 arm joint positions, rad; empty disables'))
    gripper: str = field(default='gripper_controller/commands', metadata=doc(
        'std_msgs/Float64MultiArray with one finger opening, m (0..0.08); empty disables'))

    def validate(self) -> 'CommandTopics':
        """Raise ValueError if two interfaces share a topic; return self."""
        topics = [t for t in (self.servo, self.pose, self.trajectory, self.position,
                              self.gripper) if t]
        if len(set(topics)) != len(topics):
            raise ValueError(f'command topics must be distinct, got {topics}')
        return self


@dataclass(frozen=True)
class SimConfig:
    """Parameters of ``sim_node`` (cameras are configured per name, see ``camera_names``)."""

    task: str = field(default='pick_place_red', metadata=doc(
        f'initial task, one of {", ".join(TASKS)}'))
    seed: int = field(default=0, metadata=doc('seed of the initial-state randomisation'))
    control_rate_hz: float = field(default=50.0, metadata=doc(
        'physics/controller tick and joint_states/ee_pose publish rate, Hz'))
    ground_truth_rate_hz: float = field(default=10.0, metadata=doc(
        'rate of the evaluation-only ground truth topic, Hz'))
    camera_names: tuple[str, ...] = field(default=('camera',), metadata=doc(
        'cameras; each is configured under cameras.<name>.*'))
    commands: CommandTopics = field(default_factory=CommandTopics)
    safety: SafetyLimits = field(default_factory=SafetyLimits)

    def validate(self) -> 'SimConfig':
        """Raise ValueError naming the bad value; return self."""
        if self.task not in TASKS:
            raise ValueError(f'task {self.task!r} unknown; known: {", ".join(TASKS)}')
        if not 0 <= self.seed < 2**32:
            raise ValueError(f'seed {self.seed} must be in [0, 2^32)')
        if not 5.0 <= self.control_rate_hz <= 1000.0:
            raise ValueError(f'control_rate_hz {self.control_rate_hz} outside 5..1000')
        if not 0.1 <= self.ground_truth_rate_hz <= self.control_rate_hz:
            raise ValueError(f'ground_truth_rate_hz {self.ground_truth_rate_hz} outside '
                             f'0.1..control_rate_hz')
        if len(set(self.camera_names)) != len(self.camera_names) or '' in self.camera_names:
            raise ValueError(f'camera_names must be distinct and non-empty: {self.camera_names}')
        return self
