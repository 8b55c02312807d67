"""Arm command handling with the safety behaviour of a real driver. ROS-free.

One ``ArmController`` owns the motor targets of a ``PandaScene``. Each command interface of a
real arm stack has a method here (servo twist, Cartesian pose target, joint trajectory, forward
position, gripper); ``update`` turns the active command into joint targets once per control
period. Every command is validated first: non-finite values, wrong lengths, unknown joint
names, unknown frames, stale or future stamps and out-of-workspace targets raise
``CommandRejected`` with the reason, and the arm holds its current position. A servo command
that is not refreshed within ``command_timeout`` stops the arm.

Times are seconds on the owner's clock (the node's ROS clock, or simulated time when recording
offline); ``stamp=None`` means "now" (zero stamps, as joint_trajectory_controller reads them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Sequence

import numpy as np
from vlac_models.config import doc

from vlac_sim.scene import (
    ARM_JOINTS,
    BASE_FRAME,
    EE_FRAME,
    FINGER_JOINTS,
    MAX_GRIPPER_WIDTH,
    PandaScene,
)


class CommandRejected(ValueError):
    """A command the driver refuses; the message says which value is wrong."""


@dataclass(frozen=True)
class SafetyLimits:
    """Driver-side safety limits (SI units, base frame).

    Attributes:
        workspace_min, workspace_max: box the end effector must stay in, metres.
        max_linear_speed: end-effector speed limit for servo and pose commands, m/s.
        max_angular_speed: end-effector angular speed limit, rad/s.
        joint_margin: distance kept from each joint's URDF limit, rad.
        command_timeout: a servo command older than this stops the arm, s.
        max_command_age: commands stamped further than this from now are stale, s.

    """

    workspace_min: tuple[float, float, float] = field(
        default=(0.2, -0.45, 0.0), metadata=doc('end-effector workspace box minimum x y z, m'))
    workspace_max: tuple[float, float, float] = field(
        default=(0.85, 0.45, 0.6), metadata=doc('end-effector workspace box maximum x y z, m'))
    max_linear_speed: float = field(default=0.5, metadata=doc('EE speed limit, m/s'))
    max_angular_speed: float = field(default=1.5, metadata=doc('EE angular speed limit, rad/s'))
    joint_margin: float = field(default=0.01, metadata=doc('margin inside joint limits, rad'))
    command_timeout: float = field(
        default=0.25, metadata=doc('a servo command older than this stops the arm, s'))
    max_command_age: float = field(
        default=0.5, metadata=doc('commands stamped further than this from now are stale, s'))

    def validate(self) -> 'SafetyLimits':
        """Raise ValueError naming the bad value; return self."""
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ValueError(f'workspace_min {self.workspace_min} must be below workspace_max '
                             f'{self.workspace_max} on every axis')
        for name in ('max_linear_speed', 'max_angular_speed', 'command_timeout',
                     'max_command_age'):
            if not getattr(self, name) > 0.0:
                raise ValueError(f'{name} must be > 0, got {getattr(self, name)}')
        if not 0.0 <= self.joint_margin < 0.2:
            raise ValueError(f'joint_margin must be in [0, 0.2) rad, got {self.joint_margin}')
        return self


def _finite(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise CommandRejected(f'{name} has non-finite values: {array.tolist()}')
    return array


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions (x, y, z, w)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def rotvec_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation vector (axis * angle, rad)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    axis = rotvec / angle
    return np.append(axis * math.sin(angle / 2.0), math.cos(angle / 2.0))


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vector (rad) of a unit quaternion (x, y, z, w), shortest way round."""
    q = q if q[3] >= 0 else -q
    s = float(np.linalg.norm(q[:3]))
    if s < 1e-12:
        return np.zeros(3)
    return q[:3] / s * 2.0 * math.atan2(s, q[3])


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion (x, y, z, w)."""
    return np.array([-q[0], -q[1], -q[2], q[3]])


@dataclass
class _Trajectory:
    start: float
    times: np.ndarray  # time_from_start of each point, s; times[0] == 0 is the start state
    positions: np.ndarray  # (points, joints)


@dataclass
class ControllerState:
    """What the controller is doing; exposed for logs and tests."""

    mode: str = 'hold'
    last_command: float = -math.inf
    reason: str = 'startup'
    rejected: int = 0
    events: list[str] = field(default_factory=list)


class ArmController:
    """Turns commands into joint targets for a ``PandaScene``, safely."""

    def __init__(self, scene: PandaScene, limits: SafetyLimits | None = None) -> None:
        self.scene = scene
        self.limits = (limits or SafetyLimits()).validate()
        self.state = ControllerState()
        lower, upper = scene.joint_limits
        margin = self.limits.joint_margin
        self._lower, self._upper = lower + margin, upper - margin
        self._box_min = np.array(self.limits.workspace_min)
        self._box_max = np.array(self.limits.workspace_max)
        self._twist = (np.zeros(3), np.zeros(3))
        self._target_pos, self._target_quat = scene.ee_pose()
        self._goal_pos, self._goal_quat = self._target_pos, self._target_quat
        self._trajectory: _Trajectory | None = None
        self._gripper_trajectory: tuple[float, float, float, float] | None = None

    # -- helpers ---------------------------------------------------------------------------
    def _check_stamp(self, stamp: float | None, now: float) -> float:
        if stamp is None:
            return now
        age = now - stamp
        if age > self.limits.max_command_age or age < -self.limits.max_command_age:
            raise CommandRejected(f'stale command: stamp is {age:+.3f} s from now (limit '
                                  f'{self.limits.max_command_age} s)')
        return stamp

    def _reject(self, reason: str) -> CommandRejected:
        self.state.rejected += 1
        self.hold(f'rejected: {reason}')
        return CommandRejected(reason)

    def _frame_rotation(self, frame: str) -> np.ndarray | None:
        """Quaternion taking vectors in ``frame`` to the base frame (None = identity)."""
        if frame in ('', BASE_FRAME):
            return None
        if frame in (EE_FRAME, 'panda_hand', 'panda_hand_tcp'):
            return self.scene.ee_pose()[1]
        raise CommandRejected(f'unknown frame {frame!r}; use {BASE_FRAME!r} or {EE_FRAME!r}')

    def _in_box(self, position: np.ndarray, margin: float = 0.0) -> bool:
        return bool(np.all(position >= self._box_min - margin)
                    and np.all(position <= self._box_max + margin))

    def reset(self) -> None:
        """Forget every command (after a scene reset): hold where the arm now is."""
        self.state.last_command = -math.inf
        self._gripper_trajectory = None
        self.hold('reset')

    def hold(self, reason: str) -> None:
        """Stop: freeze the motor targets at the measured arm position."""
        self.scene.arm_target = np.clip(self.scene.arm_positions(), self._lower, self._upper)
        self._target_pos, self._target_quat = self.scene.ee_pose()
        self._trajectory = None
        self._twist = (np.zeros(3), np.zeros(3))
        if self.state.mode != 'hold' or reason.startswith('rejected'):
            self.state.events.append(reason)
        self.state.mode, self.state.reason = 'hold', reason

    # -- command interfaces ----------------------------------------------------------------
    def servo(self, linear: Sequence[float], angular: Sequence[float], frame: str, now: float,
              stamp: float | None = None) -> None:
        """Cartesian velocity (m/s, rad/s) of the end effector, as MoveIt Servo takes it."""
        try:
            lin, ang = _finite('linear velocity', linear), _finite('angular velocity', angular)
            if lin.shape != (3,) or ang.shape != (3,):
                raise CommandRejected(f'twist needs 3 + 3 values, got {lin.shape}, {ang.shape}')
            self._check_stamp(stamp, now)
            rotation = self._frame_rotation(frame)
        except CommandRejected as err:
            raise self._reject(str(err)) from None
        if rotation is not None:
            lin, ang = _rotate(rotation, lin), _rotate(rotation, ang)
        speed, spin = np.linalg.norm(lin), np.linalg.norm(ang)
        if speed > self.limits.max_linear_speed:
            lin = lin * self.limits.max_linear_speed / speed
        if spin > self.limits.max_angular_speed:
            ang = ang * self.limits.max_angular_speed / spin
        if self.state.mode != 'servo':
            self._target_pos, self._target_quat = self.scene.ee_pose()
        self._twist = (lin, ang)
        self.state.mode, self.state.last_command, self.state.reason = 'servo', now, 'servo'

    def pose_target(self, position: Sequence[float], orientation: Sequence[float], frame: str,
                    now: float, stamp: float | None = None) -> None:
        """Move the end effector to a pose (m, quaternion x y z w) at the speed limits."""
        try:
            pos, quat = _finite('position', position), _finite('orientation', orientation)
            norm = float(np.linalg.norm(quat))
            if pos.shape != (3,) or quat.shape != (4,) or not 0.9 < norm < 1.1:
                raise CommandRejected(f'pose needs a position and a unit quaternion, got '
                                      f'{pos.tolist()}, {quat.tolist()} (norm {norm:.3f})')
            self._check_stamp(stamp, now)
            if frame not in ('', BASE_FRAME):
                raise CommandRejected(f'pose targets must be in {BASE_FRAME!r}, got {frame!r}')
            if not self._in_box(pos):
                raise CommandRejected(f'target {pos.round(3).tolist()} outside the workspace '
                                      f'{self._box_min.tolist()}..{self._box_max.tolist()}')
        except CommandRejected as err:
            raise self._reject(str(err)) from None
        if self.state.mode != 'pose':
            self._target_pos, self._target_quat = self.scene.ee_pose()
        self._goal_pos, self._goal_quat = pos, quat / norm
        self.state.mode, self.state.last_command, self.state.reason = 'pose', now, 'pose target'

    def trajectory(self, joint_names: Sequence[str],
                   points: Sequence[tuple[float, Sequence[float]]], now: float,
                   stamp: float | None = None) -> None:
        """Follow joint-space waypoints ``(time_from_start s, positions)``, as a JTC does.

        Names may list the 7 arm joints (any order, all of them) or the finger joints (gripper).
        Motion starts at ``stamp`` (or now) from the current position.
        """
        try:
            names = list(joint_names)
            unknown = [n for n in names if n not in ARM_JOINTS + FINGER_JOINTS]
            if unknown:
                raise CommandRejected(f'unknown joint names {unknown}; this arm has '
                                      f'{list(ARM_JOINTS + FINGER_JOINTS)}')
            if len(set(names)) != len(names):
                raise CommandRejected(f'duplicate joint names in {names}')
            arm = [n for n in names if n in ARM_JOINTS]
            fingers = [n for n in names if n in FINGER_JOINTS]
            if arm and len(arm) != len(ARM_JOINTS):
                raise CommandRejected(f'a trajectory must name all 7 arm joints, got {arm}')
            if not points:
                raise CommandRejected('trajectory has no points')
            times = _finite('time_from_start', [t for t, _ in points])
            positions = [_finite('positions', p) for _, p in points]
            if any(p.shape != (len(names),) for p in positions):
                raise CommandRejected(f'every point needs {len(names)} positions, got '
                                      f'{[p.shape[0] for p in positions]}')
            if times[0] < 0 or np.any(np.diff(times) <= 0):
                raise CommandRejected(f'time_from_start must increase from >= 0: {times.tolist()}')
            start = self._check_stamp(stamp, now)
            table = np.array(positions)
        except CommandRejected as err:
            raise self._reject(str(err)) from None
        if fingers:
            widths = table[:, [names.index(n) for n in fingers]].sum(axis=1) * (2 / len(fingers))
            self._gripper_trajectory = (start, float(times[-1]), self.scene.gripper_width(),
                                        float(np.clip(widths[-1], 0.0, MAX_GRIPPER_WIDTH)))
        if arm:
            order = [names.index(n) for n in ARM_JOINTS]
            table = np.clip(table[:, order], self._lower, self._upper)
            if times[0] > 0:  # motion starts from where the arm is
                times = np.concatenate([[0.0], times])
                table = np.vstack([self.scene.arm_positions(), table])
            self._trajectory = _Trajectory(start, times, table)
            self.state.mode, self.state.reason = 'trajectory', 'joint trajectory'
        self.state.last_command = now

    def forward_position(self, positions: Sequence[float], now: float) -> None:
        """Absolute arm joint positions (rad, URDF joint order), as a forward controller."""
        try:
            q = _finite('joint positions', positions)
            if q.shape != (7,):
                raise CommandRejected(f'forward position command needs 7 values '
                                      f'({list(ARM_JOINTS)}), got {q.shape[0]}')
        except CommandRejected as err:
            raise self._reject(str(err)) from None
        self.scene.arm_target = np.clip(q, self._lower, self._upper)
        self._trajectory = None
        self.state.mode, self.state.last_command, self.state.reason = 'position', now, 'position'

    def gripper(self, width: float, now: float) -> None:
        """Finger opening target, metres (0 closed .. 0.08 open)."""
        try:
            value = float(_finite('gripper width', [width])[0])
            if not -0.001 <= value <= MAX_GRIPPER_WIDTH + 0.001:
                raise CommandRejected(f'gripper width {value} m outside 0..{MAX_GRIPPER_WIDTH}')
        except CommandRejected as err:
            self.state.rejected += 1
            raise CommandRejected(str(err)) from None
        self._gripper_trajectory = None
        self.scene.gripper_target = float(np.clip(value, 0.0, MAX_GRIPPER_WIDTH))

    # -- control period --------------------------------------------------------------------
    def update(self, now: float, dt: float) -> None:
        """Set the scene's motor targets for the next ``dt`` seconds of physics."""
        if self._gripper_trajectory is not None:
            start, duration, w0, w1 = self._gripper_trajectory
            alpha = 1.0 if duration <= 0 else np.clip((now - start) / duration, 0.0, 1.0)
            self.scene.gripper_target = w0 + alpha * (w1 - w0)
        ee_pos = self.scene.ee_pose()[0]
        mode = self.state.mode
        if mode in ('position', 'trajectory') and not self._in_box(ee_pos, margin=0.02):
            self.hold(f'workspace: end effector at {ee_pos.round(3).tolist()} left the box')
            return
        if mode == 'servo':
            age = now - self.state.last_command
            if age > self.limits.command_timeout or age < -self.limits.max_command_age:
                self.hold('servo command timeout' if age > 0 else 'clock went backwards')
                return
            lin, ang = self._twist
            self._target_pos = np.clip(self._target_pos + lin * dt, self._box_min, self._box_max)
            # Never let the target run away from the arm (e.g. when pushing against a wall).
            lag = self._target_pos - ee_pos
            if np.linalg.norm(lag) > 0.05:
                self._target_pos = ee_pos + lag * 0.05 / np.linalg.norm(lag)
            self._target_quat = quat_multiply(rotvec_to_quat(ang * dt), self._target_quat)
            # Same for orientation (e.g. a joint at its limit): cap the lead at 0.3 rad.
            measured = self.scene.ee_pose()[1]
            lead = quat_to_rotvec(quat_multiply(self._target_quat, quat_conjugate(measured)))
            if np.linalg.norm(lead) > 0.3:
                self._target_quat = quat_multiply(
                    rotvec_to_quat(lead * 0.3 / np.linalg.norm(lead)), measured)
            self._track_target()
        elif mode == 'pose':
            step_pos = self._goal_pos - self._target_pos
            dist = float(np.linalg.norm(step_pos))
            max_step = self.limits.max_linear_speed * dt
            if dist > max_step:
                step_pos *= max_step / dist
            self._target_pos = self._target_pos + step_pos
            delta = quat_to_rotvec(quat_multiply(self._goal_quat,
                                                 quat_conjugate(self._target_quat)))
            angle = float(np.linalg.norm(delta))
            max_turn = self.limits.max_angular_speed * dt
            if angle > max_turn:
                delta *= max_turn / angle
            self._target_quat = quat_multiply(rotvec_to_quat(delta), self._target_quat)
            self._track_target()
        elif mode == 'trajectory' and self._trajectory is not None:
            traj = self._trajectory
            t = now - traj.start
            if t <= 0:
                return
            if t >= traj.times[-1]:
                self.scene.arm_target = traj.positions[-1].copy()
                return
            k = int(np.searchsorted(traj.times, t, side='right'))
            t0, t1 = traj.times[k - 1], traj.times[k]
            alpha = (t - t0) / (t1 - t0)
            self.scene.arm_target = (1 - alpha) * traj.positions[k - 1] + alpha * traj.positions[k]

    def _track_target(self) -> None:
        q = self.scene.ik(self._target_pos, self._target_quat / np.linalg.norm(self._target_quat))
        self.scene.arm_target = np.clip(q, self._lower, self._upper)


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector ``v`` by unit quaternion ``q`` (x, y, z, w)."""
    return quat_multiply(quat_multiply(q, np.append(v, 0.0)), quat_conjugate(q))[:3]
