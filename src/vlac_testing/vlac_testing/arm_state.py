"""The proprioception of a Panda standing still, as test and benchmark publishers send it."""

from __future__ import annotations

from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import JointState

PANDA_JOINTS = [f'panda_joint{i}' for i in range(1, 8)] + ['panda_finger_joint1',
                                                           'panda_finger_joint2']
"""Arm joints then finger joints, as vlac_sim publishes joint_states."""


def still_panda(base_frame: str = 'panda_link0') -> tuple[JointState, PoseStamped]:
    """joint_states and ee_pose (gripper down, 0.5 m ahead, 0.3 m up, open), unstamped."""
    joint = JointState(name=PANDA_JOINTS, position=[0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8,
                                                    0.04, 0.04])
    pose = PoseStamped()
    pose.header.frame_id = base_frame
    pose.pose.position.x, pose.pose.position.z = 0.5, 0.3
    pose.pose.orientation.x = 1.0
    return joint, pose
