"""From a policy action to arm commands: safety limits and the arm adapters (no node here).

An action is an end-effector delta in the base frame (``EefAction``): the translation is added
to the current tip position, and the rotation delta ``R_d = rpy(roll, pitch, yaw)`` (fixed
x-y-z axes of the base frame) is applied on the left, ``R_target = R_d R_current``.

``limit_action`` enforces the safety config (finite values, per-step translation/rotation
limits by scaling, the workspace box on the target position, gripper limits). The adapters
turn the limited action into the message a driver expects:

- ``servo``: geometry_msgs/TwistStamped, the delta divided by the control period (MoveIt Servo's
  ``delta_twist_cmds``), in the base frame; holding = a zero twist every period.
- ``pose``: geometry_msgs/PoseStamped target pose in the base frame; holding = no new target.
- ``joint_trajectory``: trajectory_msgs/JointTrajectory with one point (IK of the target pose,
  ``time_from_start`` one period), as ros2_control's joint_trajectory_controller takes.
- ``forward_position``: std_msgs/Float64MultiArray of the IK joint positions, in
  ``arm.joint_names`` order, as ros2_control's forward_command_controller takes.
- gripper ``position``: Float64MultiArray ``[open_position or closed_position]``;
  ``joint_trajectory``: the finger joints in a JointTrajectory; ``none``: no gripper command.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Sequence

from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Twist, TwistStamped, Vector3
import numpy as np
import pinocchio as pin
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vlac_models.policy.base import EefAction
from vlac_models.stamps import to_duration
from vlac_models.state import policy_state

from vlac_policy_node.config import ArmConfig, SafetyConfig
from vlac_policy_node.kinematics import ArmKinematics, IkError


class UnsafeAction(ValueError):
    """The action cannot be made safe (e.g. NaN); the arm must hold."""


@dataclass
class ArmState:
    """The arm at the observation: tip pose in the base frame and joint positions by name."""

    position: np.ndarray
    """Tip position (3,), m."""
    rotation: np.ndarray
    """Tip orientation as a rotation matrix (3, 3)."""
    joints: dict[str, float]
    """Joint positions (rad or m) by joint name."""
    gripper: float
    """Normalised opening, 0 closed .. 1 open."""

    def state_vector(self) -> np.ndarray:
        """The policy state: x, y, z (m), roll, pitch, yaw (rad), gripper (0..1)."""
        return policy_state(self.position, self.rotation, self.gripper)


def delta_rotation(action: EefAction) -> np.ndarray:
    """Rotation matrix of the action's roll/pitch/yaw delta (fixed base axes)."""
    return pin.rpy.rpyToMatrix(*action.rotation)


def limit_action(action: EefAction, state: ArmState, safety: SafetyConfig
                 ) -> tuple[EefAction, list[str]]:
    """The action within the safety limits and what was changed; UnsafeAction if impossible."""
    vector = action.as_vector()
    if not np.all(np.isfinite(vector)):
        raise UnsafeAction(f'non-finite action {vector.tolist()}')
    notes: list[str] = []
    translation = vector[:3].copy()
    norm = float(np.linalg.norm(translation))
    if norm > safety.max_step_translation * (1.0 + 1e-9):
        translation *= safety.max_step_translation / norm
        notes.append(f'translation {norm:.4g} m scaled to {safety.max_step_translation:g} m')
    rotation = delta_rotation(action)
    angle = float(np.linalg.norm(pin.log3(rotation)))
    rpy = vector[3:6]
    if angle > safety.max_step_rotation * (1.0 + 1e-9):
        rotation = pin.exp3(pin.log3(rotation) * (safety.max_step_rotation / angle))
        rpy = pin.rpy.matrixToRpy(rotation)
        notes.append(f'rotation {angle:.4g} rad scaled to {safety.max_step_rotation:g} rad')
    target = np.clip(state.position + translation, safety.workspace_min, safety.workspace_max)
    if not np.allclose(target, state.position + translation):
        notes.append('target clipped to the workspace box')
        translation = target - state.position
    gripper = float(np.clip(vector[6], safety.gripper_min, safety.gripper_max))
    return EefAction(tuple(translation), tuple(float(v) for v in rpy), gripper), notes


def target_pose(action: EefAction, state: ArmState) -> pin.SE3:
    """Tip pose after the action, in the base frame."""
    return pin.SE3(delta_rotation(action) @ state.rotation,
                   state.position + np.asarray(action.translation))


def _pose_msg(pose: pin.SE3) -> Pose:
    q = pin.Quaternion(pose.rotation)
    q.normalize()
    return Pose(position=Point(x=float(pose.translation[0]), y=float(pose.translation[1]),
                               z=float(pose.translation[2])),
                orientation=Quaternion(x=q.x, y=q.y, z=q.z, w=q.w))





class ArmAdapter:
    """Builds the arm and gripper command messages of one configured driver setup."""

    def __init__(self, config: ArmConfig, period: float) -> None:
        self.config = config
        self.period = period
        self.kinematics: ArmKinematics | None = None

    @property
    def message_type(self):
        """ROS message type of the arm command."""
        return {'servo': TwistStamped, 'pose': PoseStamped,
                'joint_trajectory': JointTrajectory,
                'forward_position': Float64MultiArray}[self.config.adapter]

    @property
    def gripper_message_type(self):
        """ROS message type of the gripper command (None: no gripper command)."""
        return {'position': Float64MultiArray, 'joint_trajectory': JointTrajectory,
                'none': None}[self.config.gripper_adapter]

    @property
    def needs_kinematics(self) -> bool:
        """Whether the adapter needs IK (joint-space commands)."""
        return self.config.adapter in ('joint_trajectory', 'forward_position')

    def set_robot_description(self, urdf_xml: str) -> None:
        """Build the kinematics (ValueError for a bad URDF or unknown joint/link names)."""
        self.kinematics = ArmKinematics(urdf_xml, self.config.joint_names, self.config.tip_link)

    def command(self, action: EefAction, state: ArmState, header: Header):
        """The arm command for a limited action (IkError when no joint solution exists)."""
        cfg = self.config
        if cfg.adapter == 'servo':
            linear = np.asarray(action.translation) / self.period
            angular = pin.log3(delta_rotation(action)) / self.period
            return TwistStamped(header=header, twist=Twist(
                linear=Vector3(x=float(linear[0]), y=float(linear[1]), z=float(linear[2])),
                angular=Vector3(x=float(angular[0]), y=float(angular[1]),
                                z=float(angular[2]))))
        target = target_pose(action, state)
        if cfg.adapter == 'pose':
            return PoseStamped(header=header, pose=_pose_msg(target))
        positions = self.inverse_kinematics(state, target)
        if cfg.adapter == 'forward_position':
            return Float64MultiArray(data=[float(v) for v in positions])
        duration = cfg.trajectory_duration or self.period
        return JointTrajectory(header=header, joint_names=list(cfg.joint_names), points=[
            JointTrajectoryPoint(positions=[float(v) for v in positions],
                                 time_from_start=to_duration(duration))])

    def inverse_kinematics(self, state: ArmState, target: pin.SE3) -> np.ndarray:
        """Joint positions for ``target``, warm-started from the observed joints."""
        if self.kinematics is None:
            raise IkError(f'no robot_description received yet on '
                          f'{self.config.robot_description_topic!r}')
        missing = [n for n in self.config.joint_names if n not in state.joints]
        if missing:
            raise IkError(f'joint_states lack {missing}')
        current = [state.joints[name] for name in self.config.joint_names]
        return self.kinematics.inverse(current, target)

    def hold(self, header: Header):
        """The message that holds the arm, or None when holding means sending nothing."""
        if self.config.adapter == 'servo':
            return TwistStamped(header=header)
        return None

    def gripper_command(self, action: EefAction, header: Header):
        """The gripper command (None for the 'none' adapter)."""
        cfg = self.config
        value = cfg.gripper_open_position if action.gripper >= 0.5 \
            else cfg.gripper_closed_position
        if cfg.gripper_adapter == 'position':
            return Float64MultiArray(data=[float(value)])
        if cfg.gripper_adapter == 'joint_trajectory':
            share = float(value) / max(1, len(cfg.gripper_joint_names))
            return JointTrajectory(header=header, joint_names=list(cfg.gripper_joint_names),
                                   points=[JointTrajectoryPoint(
                                       positions=[share] * len(cfg.gripper_joint_names),
                                       time_from_start=to_duration(self.period))])
        return None


def gripper_opening(names: Sequence[str], positions: Sequence[float], config: ArmConfig
                    ) -> float:
    """Normalised gripper opening from the finger joints (NaN when they are missing)."""
    index = {name: i for i, name in enumerate(names)}
    if not all(name in index for name in config.gripper_joint_names):
        return math.nan
    total = sum(float(positions[index[name]]) for name in config.gripper_joint_names)
    return float(np.clip(total / config.gripper_max_opening, 0.0, 1.0))
