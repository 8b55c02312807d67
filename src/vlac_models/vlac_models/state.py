"""THE policy state vector (ROS-free): one function for the robot, the trainer and the tools.

``[x, y, z, roll, pitch, yaw, gripper]``: end-effector position in metres and orientation as
fixed-axis roll/pitch/yaw in radians (``R = Rz(yaw) Ry(pitch) Rx(roll)``, scipy's 'xyz'),
both in the robot base frame (REP 103); gripper opening normalised to [0, 1] (0 closed, 1
fully open). The policy node builds it from the arm's pose, the trainer from a stored
``Observation``, the demonstration datasets from recorded poses and the simulator rollouts
from the scene: all through ``policy_state``, so a trained policy sees on the robot exactly
the numbers it was trained on.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

STATE_DIM = 7
"""x, y, z (m), roll, pitch, yaw (rad), gripper opening (0..1)."""


def rpy_from_matrix(matrix: Any) -> np.ndarray:
    """Fixed-axis roll, pitch, yaw (rad) of rotation matrices (..., 3, 3) -> (..., 3).

    ``R = Rz(yaw) Ry(pitch) Rx(roll)``, pitch in [-pi/2, pi/2]: scipy's ``as_euler('xyz')``
    to 1e-14 away from gimbal lock, in closed form (a control tick must not pay scipy's
    ~0.2 ms per call).
    """
    m = np.asarray(matrix, dtype=np.float64)
    roll = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    pitch = np.arctan2(-m[..., 2, 0], np.hypot(m[..., 0, 0], m[..., 1, 0]))
    yaw = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return np.stack([roll, pitch, yaw], axis=-1)


def rpy_of(rotation: Rotation) -> np.ndarray:
    """Fixed-axis roll, pitch, yaw (rad) of scipy rotations (see ``rpy_from_matrix``)."""
    return rpy_from_matrix(rotation.as_matrix())


def rotation_of(rpy: Sequence[float]) -> Rotation:
    """Inverse of ``rpy_of``."""
    return Rotation.from_euler('xyz', np.asarray(rpy, dtype=np.float64))


def policy_state(position: Any, rotation: Any, gripper: Any) -> np.ndarray:
    """The state vector(s): (7,) for one pose, (N, 7) for N poses; float64.

    ``position`` (3,) or (N, 3) m, ``rotation`` one or N scipy Rotations or rotation
    matrices ((3, 3) or (N, 3, 3)), ``gripper`` the normalised opening (scalar or (N,)).
    """
    position = np.asarray(position, dtype=np.float64)
    matrix = rotation.as_matrix() if isinstance(rotation, Rotation) else rotation
    rpy = rpy_from_matrix(matrix)
    if position.ndim == 1:
        return np.array([*position, *rpy, float(gripper)], dtype=np.float64)
    gripper = np.broadcast_to(np.asarray(gripper, dtype=np.float64), (len(position),))
    return np.concatenate([position, rpy, gripper[:, None]], axis=1)


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """The (3, 3) rotation matrix of a quaternion (normalised); ValueError if far from unit.

    A quaternion whose norm is below 0.5 (a zero or garbage orientation) or that is not finite
    is rejected rather than normalised into an arbitrary rotation.
    """
    quat = np.array([x, y, z, w], dtype=np.float64)
    norm = float(np.linalg.norm(quat))
    if not np.all(np.isfinite(quat)) or norm < 0.5:
        raise ValueError(f'invalid orientation quaternion (x, y, z, w) = {quat.tolist()}')
    x, y, z, w = quat / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def state_from_pose(pose: Any, gripper: float) -> np.ndarray:
    """The state of a geometry_msgs/Pose (rclpy or bag message) and a gripper opening.

    ValueError for a non-finite position or an invalid orientation.
    """
    p, q = pose.position, pose.orientation
    position = np.array([p.x, p.y, p.z], dtype=np.float64)
    if not np.all(np.isfinite(position)):
        raise ValueError(f'non-finite end-effector position {position.tolist()}')
    return policy_state(position, quaternion_matrix(q.x, q.y, q.z, q.w), gripper)
