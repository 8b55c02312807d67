"""Forward and inverse kinematics from a URDF with Pinocchio (ROS-free).

Real arms publish their URDF on ``robot_description``; the joint-space adapters build an
``ArmKinematics`` from it for the configured arm joints (all other joints, e.g. fingers, are
locked at their neutral position) and the configured tip link. Poses are in the URDF's root
frame, which must be the base frame of the actions (REP 103: the robot's ``base_link`` or, for
the Panda, ``panda_link0``).

IK is Levenberg-Marquardt on the 6-D pose error (SE(3) log map, local frame) within the
URDF's joint limits, warm-started from the current joint positions. It raises ``IkError``
when it does not converge: callers hold the arm instead of commanding a guess.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pinocchio as pin


class IkError(RuntimeError):
    """No joint solution within tolerance (or a malformed request)."""


class ArmKinematics:
    """Kinematic chain of the configured arm joints up to ``tip_link``."""

    def __init__(self, urdf_xml: str, joint_names: Sequence[str], tip_link: str) -> None:
        try:
            full = pin.buildModelFromXML(urdf_xml)
        except (RuntimeError, ValueError) as err:
            raise ValueError(f'robot_description is not a valid URDF: {err}') from err
        known = list(full.names)[1:]
        unknown = [name for name in joint_names if name not in known]
        if unknown:
            raise ValueError(f'unknown joint name(s) {unknown} (URDF has {known})')
        if not full.existFrame(tip_link):
            raise ValueError(f'tip link {tip_link!r} is not in the URDF')
        locked = [full.getJointId(name) for name in known if name not in joint_names]
        self.model = pin.buildReducedModel(full, locked, pin.neutral(full))
        self.data = self.model.createData()
        self.frame = self.model.getFrameId(tip_link)
        self.joint_names = tuple(joint_names)
        # Map between the configured joint order and the model's configuration vector.
        self._index = np.array([self.model.joints[self.model.getJointId(name)].idx_q
                                for name in joint_names])
        self.lower = self.model.lowerPositionLimit[self._index]
        self.upper = self.model.upperPositionLimit[self._index]

    def _q(self, positions: Sequence[float]) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (len(self.joint_names),) or not np.all(np.isfinite(positions)):
            raise IkError(f'expected {len(self.joint_names)} finite joint positions, '
                          f'got {positions!r}')
        q = pin.neutral(self.model)
        q[self._index] = positions
        return q

    def forward(self, positions: Sequence[float]) -> pin.SE3:
        """Pose of the tip link in the root frame."""
        q = self._q(positions)
        pin.framesForwardKinematics(self.model, self.data, q)
        return self.data.oMf[self.frame].copy()

    def _residual(self, q: np.ndarray, target: pin.SE3) -> tuple[np.ndarray, pin.SE3]:
        """Pose error of the tip at ``q`` against ``target``: (6-D log, local frame; SE3)."""
        pin.framesForwardKinematics(self.model, self.data, q)
        offset = self.data.oMf[self.frame].actInv(target)
        return pin.log6(offset).vector, offset

    def inverse(self, positions: Sequence[float], target: pin.SE3, *,
                iterations: int = 200, tolerance: float = 1e-4, damping: float = 1e-3
                ) -> np.ndarray:
        """Joint positions (configured order) placing the tip at ``target``.

        Levenberg-Marquardt: a step is taken only when it lowers the pose error, and the
        damping adapts (down after a good step, up after a bad one), so the solver neither
        overshoots near singularities nor stalls where plain Gauss-Newton would. Joints at
        a limit whose step points outward are frozen for that step (active set) instead of
        being clipped after the fact, which would bend the step into a worse direction.
        """
        q = self._q(positions)
        lower = self.model.lowerPositionLimit
        upper = self.model.upperPositionLimit
        error, offset = self._residual(q, target)
        norm = float(np.linalg.norm(error))
        for _ in range(iterations):
            if norm < tolerance:
                return q[self._index].copy()
            jacobian = pin.computeFrameJacobian(self.model, self.data, q, self.frame,
                                                pin.ReferenceFrame.LOCAL)
            jacobian = -pin.Jlog6(offset) @ jacobian
            step = self._damped_step(jacobian, error, damping, q, lower, upper)
            candidate = np.clip(pin.integrate(self.model, q, step), lower, upper)
            candidate_error, candidate_offset = self._residual(candidate, target)
            candidate_norm = float(np.linalg.norm(candidate_error))
            if candidate_norm < norm:
                q, error, offset, norm = candidate, candidate_error, candidate_offset, \
                    candidate_norm
                damping = max(damping * 0.1, 1e-9)
            else:
                damping *= 10.0
                if damping > 1e6:  # no step lowers the error: a local minimum or a limit
                    break
        raise IkError(f'IK did not converge (residual {norm:.2e}, tolerance {tolerance:.0e})')

    @staticmethod
    def _damped_step(jacobian: np.ndarray, error: np.ndarray, damping: float,
                     q: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """LM step ``-(J^T J + lambda I)^-1 J^T e``; joints pushed past a limit are frozen."""
        free = np.ones(q.shape[0], dtype=bool)
        step = np.zeros(q.shape[0])
        for _ in range(q.shape[0]):
            columns = jacobian[:, free]
            step[:] = 0.0
            step[free] = -np.linalg.solve(columns.T @ columns + damping * np.eye(int(free.sum())),
                                          columns.T @ error)
            blocked = free & (((q <= lower) & (step < 0.0)) | ((q >= upper) & (step > 0.0)))
            if not blocked.any():
                break
            free &= ~blocked
            if not free.any():
                step[:] = 0.0
                break
        return step


def pose_to_se3(position: Sequence[float], quaternion_xyzw: Sequence[float]) -> pin.SE3:
    """SE3 from a position (m) and a unit quaternion (x, y, z, w)."""
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    rotation = pin.Quaternion(w, x, y, z)
    rotation.normalize()
    return pin.SE3(rotation.matrix(), np.asarray(position, dtype=np.float64))
