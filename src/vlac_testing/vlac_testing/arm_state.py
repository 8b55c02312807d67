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


def chain_urdf(base_link: str, joint_names: list[str], tip_link: str) -> str:
    """A URDF for an arm this machine has no description of (a UR, an FR3), by joint name.

    A serial chain of revolute joints with the given names from ``base_link`` to
    ``tip_link``: a shoulder (z, y), an elbow (y) bent at a right angle, then a wrist of the
    remaining joints (x, y, z, x, ...). At all-zero joint positions the tip is 0.4 m ahead
    of the base and 0.3 m up, away from singularities, inside every shipped config's
    workspace. It is not the arm's real geometry: it gives the kinematics adapters a chain
    with the configured names and frames.
    """
    axes = ['0 0 1', '0 1 0', '0 1 0'] + ['1 0 0', '0 1 0', '0 0 1'] * 2
    offsets = ['0 0 0.5', '0 0 0', '0.3 0 0', '0 0 -0.2'] + ['0 0 0'] * 6
    inertial = ('<inertial><mass value="1.0"/><inertia ixx="0.01" ixy="0" ixz="0" iyy="0.01" '
                'iyz="0" izz="0.01"/></inertial>')
    links = [base_link] + [f'{name}_link' for name in joint_names]
    parts = ['<robot name="chain">'] + [f'<link name="{link}">{inertial}</link>'
                                       for link in links + [tip_link]]
    for i, name in enumerate(joint_names):
        parts.append(f'<joint name="{name}" type="revolute"><parent link="{links[i]}"/>'
                     f'<child link="{links[i + 1]}"/><origin xyz="{offsets[i]}" rpy="0 0 0"/>'
                     f'<axis xyz="{axes[i]}"/><limit lower="-2.9" upper="2.9" effort="100" '
                     f'velocity="2.0"/></joint>')
    parts.append(f'<joint name="{tip_link}_fixed" type="fixed"><parent link="{links[-1]}"/>'
                 f'<child link="{tip_link}"/><origin xyz="0.1 0 0" rpy="0 0 0"/></joint>')
    return ''.join(parts) + '</robot>'
