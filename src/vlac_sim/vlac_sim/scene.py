"""The simulated world: a Franka Panda on a table with two cubes, a target pad and a button.

ROS-free. Built on pybullet (DIRECT mode, CPU TinyRenderer) with the Panda URDF shipped in
``pybullet_data`` and panda-gym's scene helpers. Frames follow REP 103: the robot base frame
``panda_link0`` is the world origin, x forward, y left, z up; the table top is z = 0.

The scene holds the physics and the joint-level motor targets. Everything that decides those
targets from commands (servo, pose, trajectory, position, gripper) lives in ``control``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np
from vlac_models.config import doc

from vlac_sim.quiet import quiet_c_output

with quiet_c_output():  # pybullet prints its build time on import
    from panda_gym.pybullet import PyBullet
    import pybullet
    import pybullet_data

BASE_FRAME = 'panda_link0'
EE_FRAME = 'panda_grasptarget'
ARM_JOINTS = tuple(f'panda_joint{i}' for i in range(1, 8))
FINGER_JOINTS = ('panda_finger_joint1', 'panda_finger_joint2')
MAX_GRIPPER_WIDTH = 0.08  # m, both fingers fully open

# Neutral arm configuration: gripper pointing down, 0.28 m above the table, 0.45 m in front.
NEUTRAL_ARM = np.array([0.0, -0.23, 0.0, -2.453, 0.0, 2.223, 0.785])
# End-effector orientation the scripted tasks use: gripper pointing down (x, y, z, w).
DOWN = np.array([1.0, 0.0, 0.0, 0.0])

CUBE_HALF = 0.02  # m
PAD_HALF = 0.05  # m
BUTTON_HALF = np.array([0.03, 0.03, 0.01])  # m
OBJECTS = ('red_cube', 'blue_cube', 'green_pad', 'yellow_button')
_COLOURS = {
    'red_cube': [0.85, 0.1, 0.1, 1.0], 'blue_cube': [0.1, 0.25, 0.9, 1.0],
    'green_pad': [0.1, 0.75, 0.2, 1.0], 'yellow_button': [0.95, 0.85, 0.1, 1.0],
}


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera looking at the scene, posed in the base frame (REP 103)."""

    name: str = field(default='camera', metadata=doc(
        'camera name; topics are <name>/image_raw and <name>/camera_info'))
    width: int = field(default=224, metadata=doc('image width, pixels'))
    height: int = field(default=224, metadata=doc('image height, pixels'))
    rate_hz: float = field(default=30.0, metadata=doc('publish rate, Hz'))
    position: tuple[float, float, float] = field(default=(1.0, 0.0, 0.65), metadata=doc(
        'optical centre in the base frame, m'))
    look_at: tuple[float, float, float] = field(default=(0.45, 0.0, 0.02), metadata=doc(
        'point the optical axis goes through, base frame, m'))
    fov_deg: float = field(default=50.0, metadata=doc('vertical field of view, degrees'))
    frame_id: str = field(default='camera_color_optical_frame', metadata=doc(
        'optical frame name (REP 103 optical convention: z forward, x right, y down)'))

    def validate(self) -> 'CameraSpec':
        """Raise ValueError naming the bad value; return self."""
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f'camera {self.name!r}: size {self.width}x{self.height} '
                             'outside 16..4096 pixels')
        if not 0.1 <= self.rate_hz <= 120.0:
            raise ValueError(f'camera {self.name!r}: rate_hz {self.rate_hz} outside 0.1..120')
        if not 5.0 <= self.fov_deg <= 150.0:
            raise ValueError(f'camera {self.name!r}: fov_deg {self.fov_deg} outside 5..150')
        if np.allclose(self.position, self.look_at):
            raise ValueError(f'camera {self.name!r}: position equals look_at')
        return self

    def intrinsics(self) -> tuple[float, float, float, float]:
        """Return (fx, fy, cx, cy) in pixels for this camera's field of view."""
        fy = 0.5 * self.height / math.tan(math.radians(self.fov_deg) / 2.0)
        return fy, fy, (self.width - 1) / 2.0, (self.height - 1) / 2.0


class PandaScene:
    """Physics of one Panda arm and the task objects. Not thread-safe: one owner thread."""

    def __init__(self, physics_dt: float = 1.0 / 500.0) -> None:
        with quiet_c_output():  # argv[0]= lines from the physics client
            self.sim = PyBullet(render_mode='rgb_array', renderer='Tiny', n_substeps=1)
        self.client = self.sim.physics_client
        self.physics_dt = physics_dt
        self.client.setTimeStep(physics_dt)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.time = 0.0  # simulated seconds since the last reset
        with self.sim.no_rendering():
            self.sim.create_box('floor', np.array([2.0, 2.0, 0.01]), 0.0,
                                np.array([0.0, 0.0, -0.41]),
                                rgba_color=np.array([0.3, 0.3, 0.32, 1.0]))
            self.sim.create_table(length=1.2, width=0.9, height=0.4, x_offset=0.35,
                                  lateral_friction=1.0)
            self.robot = self.client.loadURDF('franka_panda/panda.urdf', useFixedBase=True,
                                              flags=pybullet.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT)
            self._create_objects()
        self._joint_index, self.lower, self.upper, self.max_velocity, self.max_force = \
            self._read_joints()
        self.arm_idx = [self._joint_index[n] for n in ARM_JOINTS]
        self.finger_idx = [self._joint_index[n] for n in FINGER_JOINTS]
        self.ee_link = self._link_index(EE_FRAME)
        for finger in self.finger_idx:
            self.client.changeDynamics(self.robot, finger, lateralFriction=1.5,
                                       spinningFriction=0.001)
        self.arm_target = NEUTRAL_ARM.copy()
        self.gripper_target = MAX_GRIPPER_WIDTH
        self.set_arm(NEUTRAL_ARM, MAX_GRIPPER_WIDTH)

    # -- construction ----------------------------------------------------------------------
    def _create_objects(self) -> None:
        for cube in ('red_cube', 'blue_cube'):
            self.sim.create_box(cube, np.full(3, CUBE_HALF), 0.08, np.array([0.5, 0.0, CUBE_HALF]),
                                rgba_color=np.array(_COLOURS[cube]), lateral_friction=1.0,
                                spinning_friction=0.002)
        # The pad is flat and ghost: objects rest on the table, the pad is only a marking.
        self.sim.create_box('green_pad', np.array([PAD_HALF, PAD_HALF, 0.001]), 0.0,
                            np.array([0.5, 0.2, 0.001]),
                            rgba_color=np.array(_COLOURS['green_pad']), ghost=True)
        self.sim.create_box('yellow_button', BUTTON_HALF, 0.0,
                            np.array([0.5, -0.2, BUTTON_HALF[2]]),
                            rgba_color=np.array(_COLOURS['yellow_button']))

    def _read_joints(self):
        index, lower, upper, vmax, fmax = {}, {}, {}, {}, {}
        for j in range(self.client.getNumJoints(self.robot)):
            info = self.client.getJointInfo(self.robot, j)
            name = info[1].decode()
            index[name] = j
            lower[name], upper[name], fmax[name], vmax[name] = info[8], info[9], info[10], info[11]
        return index, lower, upper, vmax, fmax

    def _link_index(self, link_name: str) -> int:
        for j in range(self.client.getNumJoints(self.robot)):
            if self.client.getJointInfo(self.robot, j)[12].decode() == link_name:
                return j
        raise ValueError(f'link {link_name!r} not in the Panda URDF')

    def body(self, name: str) -> int:
        """Return the pybullet body id of a scene object."""
        return self.sim._bodies_idx[name]

    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) position limits of the 7 arm joints, rad."""
        return (np.array([self.lower[n] for n in ARM_JOINTS]),
                np.array([self.upper[n] for n in ARM_JOINTS]))

    @property
    def joint_velocity_limits(self) -> np.ndarray:
        """Velocity limits of the 7 arm joints, rad/s."""
        return np.array([self.max_velocity[n] for n in ARM_JOINTS])

    # -- state -----------------------------------------------------------------------------
    def set_arm(self, arm: np.ndarray, gripper_width: float) -> None:
        """Teleport the arm and fingers (reset only) and make that the motor target."""
        for idx, q in zip(self.arm_idx, arm, strict=True):
            self.client.resetJointState(self.robot, idx, float(q), 0.0)
        for idx in self.finger_idx:
            self.client.resetJointState(self.robot, idx, gripper_width / 2.0, 0.0)
        self.arm_target = np.asarray(arm, float).copy()
        self.gripper_target = float(gripper_width)

    def joint_names(self) -> tuple[str, ...]:
        """Names of the joints reported by ``joint_positions``/``joint_velocities``."""
        return ARM_JOINTS + FINGER_JOINTS

    def joint_positions(self) -> np.ndarray:
        """Positions of the 7 arm joints (rad) and 2 finger joints (m)."""
        states = self.client.getJointStates(self.robot, self.arm_idx + self.finger_idx)
        return np.array([s[0] for s in states])

    def joint_velocities(self) -> np.ndarray:
        """Velocities of the 7 arm joints (rad/s) and 2 finger joints (m/s)."""
        states = self.client.getJointStates(self.robot, self.arm_idx + self.finger_idx)
        return np.array([s[1] for s in states])

    def arm_positions(self) -> np.ndarray:
        """Positions of the 7 arm joints, rad."""
        return self.joint_positions()[:7]

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (grasp target) position (m) and quaternion (x, y, z, w), base frame."""
        state = self.client.getLinkState(self.robot, self.ee_link, computeForwardKinematics=True)
        return np.array(state[4]), np.array(state[5])

    def gripper_width(self) -> float:
        """Current finger opening, metres (0 closed, 0.08 fully open)."""
        return float(sum(self.joint_positions()[7:]))

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Position (m) and quaternion (x, y, z, w) of a scene object in the base frame."""
        pos, quat = self.client.getBasePositionAndOrientation(self.body(name))
        return np.array(pos), np.array(quat)

    def place_object(self, name: str, position: np.ndarray, yaw: float = 0.0) -> None:
        """Teleport an object (reset only), at rest."""
        quat = self.client.getQuaternionFromEuler([0.0, 0.0, yaw])
        self.client.resetBasePositionAndOrientation(self.body(name), list(position), quat)
        self.client.resetBaseVelocity(self.body(name), [0, 0, 0], [0, 0, 0])

    def ik(self, position: np.ndarray, orientation: np.ndarray) -> np.ndarray:
        """Arm joint angles (rad) that put the end effector at the pose, seeded at the current.

        Uses pybullet's damped least squares with the Panda's joint limits and a null-space
        pull towards the neutral configuration, the sim-side equivalent of a servo's IK.
        """
        lower, upper = self.joint_limits
        lower_all = list(lower) + [0.0, 0.0]
        upper_all = list(upper) + [0.04, 0.04]
        ranges = [u - lo for lo, u in zip(lower_all, upper_all, strict=True)]
        rest = list(NEUTRAL_ARM) + [0.02, 0.02]
        q = self.client.calculateInverseKinematics(
            self.robot, self.ee_link, list(position), list(orientation),
            lowerLimits=lower_all, upperLimits=upper_all, jointRanges=ranges, restPoses=rest,
            maxNumIterations=50, residualThreshold=1e-5)
        return np.clip(np.array(q[:7]), lower, upper)

    # -- stepping and rendering ------------------------------------------------------------
    def step(self, duration: float) -> None:
        """Advance physics by ``duration`` seconds (whole physics steps) toward the targets."""
        lower, upper = self.joint_limits
        arm = np.clip(self.arm_target, lower, upper)
        for idx, q, name in zip(self.arm_idx, arm, ARM_JOINTS, strict=True):
            self.client.setJointMotorControl2(
                self.robot, idx, pybullet.POSITION_CONTROL, targetPosition=float(q),
                force=self.max_force[name], maxVelocity=self.max_velocity[name])
        finger = float(np.clip(self.gripper_target, 0.0, MAX_GRIPPER_WIDTH)) / 2.0
        for idx in self.finger_idx:
            self.client.setJointMotorControl2(self.robot, idx, pybullet.POSITION_CONTROL,
                                              targetPosition=finger, force=40.0, maxVelocity=0.1)
        for _ in range(max(1, int(round(duration / self.physics_dt)))):
            self.client.stepSimulation()
            self.time += self.physics_dt

    def render(self, camera: CameraSpec) -> np.ndarray:
        """Render an (H, W, 3) uint8 RGB image with the CPU TinyRenderer (no shadows)."""
        view = self.client.computeViewMatrix(list(camera.position), list(camera.look_at),
                                             [0.0, 0.0, 1.0])
        proj = self.client.computeProjectionMatrixFOV(
            camera.fov_deg, camera.width / camera.height, 0.05, 5.0)
        _, _, rgba, _, _ = self.client.getCameraImage(
            camera.width, camera.height, view, proj, shadow=0,
            renderer=pybullet.ER_TINY_RENDERER, flags=pybullet.ER_NO_SEGMENTATION_MASK)
        return np.asarray(rgba, np.uint8).reshape(camera.height, camera.width, 4)[..., :3].copy()

    # -- snapshots -------------------------------------------------------------------------
    def state(self) -> dict:
        """JSON-serialisable physical state: joints, objects, motor targets, time."""
        objects = {}
        for name in OBJECTS:
            pos, quat = self.object_pose(name)
            lin, ang = self.client.getBaseVelocity(self.body(name))
            objects[name] = {'position': pos.tolist(), 'orientation': quat.tolist(),
                             'linear_velocity': list(lin), 'angular_velocity': list(ang)}
        return {
            'time': self.time,
            'joint_positions': self.joint_positions().tolist(),
            'joint_velocities': self.joint_velocities().tolist(),
            'arm_target': np.asarray(self.arm_target).tolist(),
            'gripper_target': self.gripper_target,
            'objects': objects,
        }

    def restore(self, state: dict) -> None:
        """Restore a ``state()`` dict; raises ValueError naming a missing or bad entry."""
        try:
            q = np.asarray(state['joint_positions'], float)
            qd = np.asarray(state['joint_velocities'], float)
            objects = state['objects']
            arm_target = np.asarray(state['arm_target'], float)
            gripper_target = float(state['gripper_target'])
            sim_time = float(state['time'])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f'bad scene state: {err!r}') from err
        if q.shape != (9,) or qd.shape != (9,) or arm_target.shape != (7,):
            raise ValueError(f'bad scene state: joint arrays of shapes {q.shape}, {qd.shape}, '
                             f'{arm_target.shape} (want 9, 9, 7)')
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
            raise ValueError('bad scene state: non-finite joint values')
        if set(objects) != set(OBJECTS):
            raise ValueError(f'bad scene state: objects {sorted(objects)} != {sorted(OBJECTS)}')
        for idx, pos, vel in zip(self.arm_idx + self.finger_idx, q, qd, strict=True):
            self.client.resetJointState(self.robot, idx, float(pos), float(vel))
        for name, obj in objects.items():
            self.client.resetBasePositionAndOrientation(self.body(name), obj['position'],
                                                        obj['orientation'])
            self.client.resetBaseVelocity(self.body(name), obj['linear_velocity'],
                                          obj['angular_velocity'])
        self.arm_target, self.gripper_target, self.time = arm_target, gripper_target, sim_time

    def close(self) -> None:
        """Disconnect from pybullet."""
        self.sim.close()
