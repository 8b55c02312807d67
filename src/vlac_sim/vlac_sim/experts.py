"""Scripted operators for the simulated tasks: one that solves each task and some that fail.

ROS-free. A ``ScriptedExpert`` plays a human operator at a teleoperation console: it sees the
privileged ground truth of the scene (object positions) and answers each observation with a
Cartesian velocity command and a gripper width, exactly what MoveIt Servo and a gripper action
take. The ``'expert'`` behaviour is a readable phase state machine per task with a
proportional controller on the end-effector position (speed-limited) that keeps the gripper
pointing down. The other behaviours fail on purpose, to give a reward model negative and
zero-progress examples: ``'random'`` (smoothed random motion), ``'stalled'`` (starts toward
the object, then stops) and ``'reversed'`` (works *against* the task, e.g. carries the cube
away from the pad).

``run_offline_episode`` drives a scene and an ``ArmController`` with an expert, without ROS,
on simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
from typing import Callable

import numpy as np

from vlac_sim.control import (
    ArmController,
    quat_conjugate,
    quat_multiply,
    quat_to_rotvec,
    rotvec_to_quat,
)
from vlac_sim.scene import (
    BUTTON_HALF,
    CUBE_HALF,
    DOWN,
    MAX_GRIPPER_WIDTH,
    OBJECTS,
    PandaScene,
)
from vlac_sim.tasks import TASKS, Task, get_task, reset_scene

BEHAVIOURS = ('expert', 'random', 'stalled', 'reversed', 'missed')

MAX_SPEED = 0.25  # m/s, end-effector speed limit of the scripted operator
SLOW_SPEED = 0.1  # m/s, for the last centimetres before contact
POSITION_GAIN = 4.0  # 1/s, proportional gain on the end-effector position error
ORIENTATION_GAIN = 3.0  # 1/s, proportional gain on the orientation error
MAX_SPIN = 1.0  # rad/s
DEADBAND = 0.001  # m, position errors below this are not corrected (no wind-up on contact)
HOVER = 0.10  # m above an object's centre before descending onto it
CARRY_Z = 0.12  # m, end-effector height while carrying a cube
RETREAT_Z = 0.20  # m, end-effector height after the task is done
PUSH_Z = 0.02  # m, end-effector height while pushing
PUSH_STANDOFF = 0.055  # m from the cube centre to the pusher when it starts pushing
PUSH_TILT = math.radians(10.0)  # fingertips ahead of the hand while pushing
PUSH_SPEED = 0.07  # m/s, slow enough for the sideways correction to keep up
SETTLE_AFTER_SUCCESS = 0.5  # s success must hold before an expert episode ends
# Where the 'reversed' operator may set a cube down, base frame, metres.
_FAR_X = (0.36, 0.64)
MISS_RADIUS = {'press_button': (0.04, 0.08)}
"""How far (m, uniform) the 'missed' operator's goal lies from the right one, per task."""
MISS_RADIUS_DEFAULT = (0.07, 0.10)  # a cube centre 7 cm off the pad's centre is off the pad
_FAR_Y = (-0.24, 0.24)
# Soft box the 'random' operator wanders in; its floor keeps it above the objects.
_RANDOM_BOX_MIN = np.array([0.32, -0.25, 0.07])
_RANDOM_BOX_MAX = np.array([0.68, 0.25, 0.32])


@dataclass
class ExpertObservation:
    """What the scripted operator sees.

    Attributes:
        ee_position: end-effector (grasp target) position in the base frame, m, shape (3,).
        ee_orientation: end-effector quaternion (x, y, z, w) in the base frame, shape (4,).
        gripper_width: current finger opening, m.
        objects: object name -> position in the base frame, m, shape (3,) (ground truth).
        time: seconds since the episode started.

    """

    ee_position: np.ndarray
    ee_orientation: np.ndarray
    gripper_width: float
    objects: dict[str, np.ndarray]
    time: float


@dataclass
class ExpertCommand:
    """What the scripted operator commands.

    Attributes:
        linear: end-effector linear velocity in the base frame, m/s, shape (3,).
        angular: end-effector angular velocity in the base frame, rad/s, shape (3,).
        gripper_width: finger opening target, m (0 closed .. 0.08 open).

    """

    linear: np.ndarray
    angular: np.ndarray
    gripper_width: float


@dataclass
class EpisodeOutcome:
    """Result of ``run_offline_episode``.

    Attributes:
        success: whether the task is achieved at the end of the episode.
        steps: control periods run.
        duration: simulated seconds run.
        final_progress: ground-truth progress at the end, in [0, 1].
        progress: ground-truth progress after every control period.

    """

    success: bool
    steps: int
    duration: float
    final_progress: float
    progress: list[float] = field(default_factory=list)


def observe(scene: PandaScene, time: float | None = None) -> ExpertObservation:
    """Read an ``ExpertObservation`` from the scene (``time`` defaults to ``scene.time``)."""
    position, orientation = scene.ee_pose()
    objects = {name: scene.object_pose(name)[0] for name in OBJECTS}
    return ExpertObservation(position, orientation, scene.gripper_width(), objects,
                             scene.time if time is None else float(time))


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-9 else np.zeros_like(vector)


def _toward(position: np.ndarray, goal: np.ndarray, max_speed: float = MAX_SPEED) -> np.ndarray:
    """Speed-limited proportional velocity (m/s) from ``position`` to ``goal``."""
    error = np.asarray(goal, float) - position
    if np.linalg.norm(error) < DEADBAND:
        return np.zeros(3)
    velocity = POSITION_GAIN * error
    speed = float(np.linalg.norm(velocity))
    return velocity * max_speed / speed if speed > max_speed else velocity


def _steer(orientation: np.ndarray, goal: np.ndarray = DOWN) -> np.ndarray:
    """Angular velocity (rad/s, base frame) turning the gripper to ``goal`` (default DOWN)."""
    error = quat_to_rotvec(quat_multiply(goal, quat_conjugate(orientation)))
    spin = ORIENTATION_GAIN * error
    norm = float(np.linalg.norm(spin))
    return spin * MAX_SPIN / norm if norm > MAX_SPIN else spin


def _angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle (rad) between two unit quaternions (x, y, z, w)."""
    return float(np.linalg.norm(quat_to_rotvec(quat_multiply(a, quat_conjugate(b)))))


def push_orientation(direction: np.ndarray) -> np.ndarray:
    """Gripper orientation for pushing along the horizontal ``direction``.

    Pointing down, turned about z so that the narrow sides of the closed fingers face the
    push (the two fingers side by side make a 3 cm wide pusher), and tilted PUSH_TILT so that
    the fingertips lead. The fingers widen towards the hand: held vertical, their faces meet the
    cube's top edge first and tip it over instead of sliding it.
    """
    u = _unit(np.append(np.asarray(direction, float)[:2], 0.0))
    yaw = math.atan2(u[1], u[0])
    yaw = (yaw + math.pi / 2) % math.pi - math.pi / 2  # the fingers are symmetric front/back
    turned = quat_multiply(rotvec_to_quat(np.array([0.0, 0.0, yaw])), DOWN)
    tilt_axis = np.cross(u, np.array([0.0, 0.0, 1.0]))
    return quat_multiply(rotvec_to_quat(PUSH_TILT * tilt_axis), turned)


def _away_point(candidates: np.ndarray, obs: ExpertObservation, avoid: str, cube: str,
                clearance: float) -> np.ndarray:
    """Pick the candidate (x, y) farthest from ``avoid`` on the far side of ``cube``.

    Candidates closer than ``clearance`` to another object, or not on the far side (the
    straight way there from the cube would not take it steadily away from ``avoid``), count
    only if no candidate is left otherwise.
    """
    cube_xy, avoid_xy = obs.objects[cube][:2], obs.objects[avoid][:2]
    others = [p[:2] for n, p in obs.objects.items() if n not in (cube, avoid)]
    clear = np.all([np.linalg.norm(candidates - o, axis=1) > clearance for o in others] or
                   [np.ones(len(candidates), bool)], axis=0)
    away = (candidates - cube_xy) @ _unit(cube_xy - avoid_xy) \
        > 0.5 * np.linalg.norm(candidates - cube_xy, axis=1)
    distance = np.linalg.norm(candidates - avoid_xy, axis=1)
    score = distance + np.where(clear, 1.0, 0.0) + np.where(away, 2.0, 0.0)
    return candidates[int(np.argmax(score))]


class ScriptedExpert:
    """A scripted operator for one task; ``behaviour`` picks whether it solves or fails it."""

    def __init__(self, task_name: str, behaviour: str = 'expert', seed: int = 0) -> None:
        if task_name not in TASKS:
            raise ValueError(f'unknown task {task_name!r}; known: {", ".join(TASKS)}')
        if behaviour not in BEHAVIOURS:
            raise ValueError(f'unknown behaviour {behaviour!r}; known: {", ".join(BEHAVIOURS)}')
        self.task_name = task_name
        self.behaviour = behaviour
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the episode: back to the first phase, random stream re-seeded."""
        self.rng = np.random.default_rng(self.seed)
        self.phase = 'start'
        self.phase_started = 0.0
        self._memory: dict[str, np.ndarray | float] = {}
        self._velocity = np.zeros(3)
        self._gripper = MAX_GRIPPER_WIDTH
        self._next_gripper_change = 0.0

    @property
    def done(self) -> bool:
        """True once the operator has finished its script and only holds still."""
        return self.phase == 'done'

    HOLDING_PHASES = frozenset({'press'})
    """Phases that end a script by holding a pose the task's success needs (a pressed button)."""

    @property
    def settled(self) -> bool:
        """True once the script has nothing left to do but hold: done, or a holding phase."""
        return self.done or self.phase in self.HOLDING_PHASES

    # -- common pieces ---------------------------------------------------------------------
    def _enter(self, phase: str, obs: ExpertObservation) -> None:
        self.phase, self.phase_started = phase, obs.time

    def _in_phase(self, obs: ExpertObservation) -> float:
        """Seconds spent in the current phase."""
        return obs.time - self.phase_started

    def _move(self, obs: ExpertObservation, goal: np.ndarray, gripper: float,
              max_speed: float = MAX_SPEED, orientation: np.ndarray = DOWN) -> ExpertCommand:
        return ExpertCommand(_toward(obs.ee_position, goal, max_speed),
                             _steer(obs.ee_orientation, orientation),
                             float(np.clip(gripper, 0.0, MAX_GRIPPER_WIDTH)))

    def _hold(self, obs: ExpertObservation, gripper: float) -> ExpertCommand:
        return ExpertCommand(np.zeros(3), _steer(obs.ee_orientation),
                             float(np.clip(gripper, 0.0, MAX_GRIPPER_WIDTH)))

    def _target_object(self) -> str:
        """Name the object the task is about (the one to reach first)."""
        return {'pick_place_blue': 'blue_cube', 'press_button': 'yellow_button'}.get(
            self.task_name, 'red_cube')

    # -- acting ----------------------------------------------------------------------------
    def act(self, obs: ExpertObservation) -> ExpertCommand:
        """Return the command for this observation (call once per control period)."""
        if self.phase == 'start':
            self._memory['start'] = np.array(obs.ee_position, float)
        if self.behaviour == 'random':
            return self._act_random(obs)
        if self.behaviour == 'stalled':
            return self._act_stalled(obs)
        if self.behaviour == 'missed':
            obs = self._missed_goal(obs)
        if self.task_name == 'press_button':
            return self._press(obs, reversed_=self.behaviour == 'reversed')
        if self.task_name == 'push_red':
            return self._push(obs, reversed_=self.behaviour == 'reversed')
        cube = self._target_object()
        if self.behaviour == 'reversed':
            avoid = 'blue_cube' if self.task_name == 'stack_red_on_blue' else 'green_pad'
            return self._pick_and_place(obs, cube, lambda o: self._far_from(o, avoid, cube))
        if self.task_name == 'stack_red_on_blue':
            return self._pick_and_place(
                obs, cube, lambda o: o.objects['blue_cube'] + np.array([0.0, 0.0, 2 * CUBE_HALF]))
        return self._pick_and_place(
            obs, cube, lambda o: np.append(o.objects['green_pad'][:2], CUBE_HALF))

    # -- expert scripts --------------------------------------------------------------------
    def _pick_and_place(self, obs: ExpertObservation, cube: str,
                        place: Callable[[ExpertObservation], np.ndarray]) -> ExpertCommand:
        """Grasp ``cube`` from above and set it down with its centre at ``place(obs)``.

        Phases: approach (above the cube), descend, close, lift, carry (above the place),
        lower, open, retreat (up), done. A grasp that misses or slips starts over.
        """
        ee, cube_pos = obs.ee_position, obs.objects[cube]
        if self.phase == 'start':
            self._enter('approach', obs)
        if self.phase == 'approach':
            goal = cube_pos + np.array([0.0, 0.0, HOVER])
            error = goal - ee
            if np.linalg.norm(error[:2]) < 0.008 and abs(error[2]) < 0.02:
                self._enter('descend', obs)
            else:
                # Rise first when low, so the open fingers do not sweep through objects.
                if ee[2] < cube_pos[2] + 0.5 * HOVER and np.linalg.norm(error[:2]) > 0.02:
                    goal = np.append(ee[:2], goal[2])
                return self._move(obs, goal, MAX_GRIPPER_WIDTH)
        if self.phase == 'descend':
            goal = cube_pos.copy()
            error = goal - ee
            if np.linalg.norm(error) < 0.005 or (self._in_phase(obs) > 3.0
                                                 and np.linalg.norm(error[:2]) < 0.01):
                self._memory['grasp'] = goal
                self._enter('close', obs)
            else:
                speed = SLOW_SPEED if error[2] > -0.04 else MAX_SPEED
                return self._move(obs, goal, MAX_GRIPPER_WIDTH, speed)
        if self.phase == 'close':
            if self._in_phase(obs) < 0.6:
                return self._move(obs, self._memory['grasp'], 0.0)
            if obs.gripper_width < 0.5 * CUBE_HALF * 2:  # closed on nothing
                self._enter('approach', obs)
                return self._move(obs, ee + np.array([0.0, 0.0, HOVER]), MAX_GRIPPER_WIDTH)
            self._enter('lift', obs)
        if self._dropped(obs, cube) and self.phase in ('lift', 'carry', 'lower'):
            self._enter('approach', obs)
            return self._move(obs, ee + np.array([0.0, 0.0, HOVER]), MAX_GRIPPER_WIDTH)
        if self.phase == 'lift':
            goal = np.append(self._memory['grasp'][:2], CARRY_Z)
            if ee[2] > CARRY_Z - 0.015:
                self._enter('carry', obs)
            else:
                return self._move(obs, goal, 0.0)
        if self.phase == 'carry':
            target = place(obs)
            offset = ee - cube_pos  # grasp offset: steer the cube, not the fingers
            carry_z = max(CARRY_Z, target[2] + offset[2] + 0.06)
            goal = np.append(target[:2] + offset[:2], carry_z)
            if np.linalg.norm(target[:2] - cube_pos[:2]) < 0.004 and abs(goal[2] - ee[2]) < 0.02:
                self._enter('lower', obs)
            else:
                return self._move(obs, goal, 0.0)
        if self.phase == 'lower':
            target = place(obs)
            offset = ee - cube_pos
            goal = target + offset + np.array([0.0, 0.0, 0.002])
            if cube_pos[2] - target[2] < 0.004 or self._in_phase(obs) > 3.0:
                self._enter('open', obs)
            else:
                speed = SLOW_SPEED if cube_pos[2] - target[2] < 0.04 else MAX_SPEED
                return self._move(obs, goal, 0.0, speed)
        if self.phase == 'open':
            if self._in_phase(obs) < 0.5 or obs.gripper_width < 0.07:
                return self._hold(obs, MAX_GRIPPER_WIDTH)
            self._memory['release'] = ee.copy()
            self._enter('retreat', obs)
        if self.phase == 'retreat':
            goal = np.append(self._memory['release'][:2], RETREAT_Z)
            if ee[2] > RETREAT_Z - 0.01:
                self._enter('done', obs)
            else:
                return self._move(obs, goal, MAX_GRIPPER_WIDTH)
        return self._hold(obs, MAX_GRIPPER_WIDTH)

    @staticmethod
    def _dropped(obs: ExpertObservation, cube: str) -> bool:
        """Tell whether the cube is no longer between the fingers."""
        offset = obs.ee_position - obs.objects[cube]
        return bool(np.linalg.norm(offset) > 0.035)

    def _push(self, obs: ExpertObservation, reversed_: bool = False) -> ExpertCommand:
        """Push the red cube onto the pad with the closed gripper (away from it if reversed).

        Phases: above (behind the cube on the pad-cube line), lower, push, back_off, retreat,
        done. The push steers sideways to keep the pusher on the line through the cube.
        """
        ee, cube = obs.ee_position, obs.objects['red_cube']
        pad = obs.objects['green_pad']
        if self.phase == 'start':
            if reversed_:  # push it 12 cm further from the pad, staying on the table
                angles = np.linspace(-np.pi, np.pi, 73)
                candidates = cube[:2] + 0.12 * np.column_stack([np.cos(angles), np.sin(angles)])
                inside = np.all((candidates >= (_FAR_X[0], _FAR_Y[0]))
                                & (candidates <= (_FAR_X[1], _FAR_Y[1])), axis=1)
                self._memory['goal'] = _away_point(candidates[inside] if inside.any()
                                                   else candidates, obs, 'green_pad', 'red_cube',
                                                   clearance=0.1)
            else:
                self._memory['goal'] = pad[:2].copy()
            self._enter('above', obs)
        goal_xy = self._memory['goal']
        direction = _unit(goal_xy - cube[:2])
        behind = cube[:2] - PUSH_STANDOFF * direction
        pose = push_orientation(direction)
        if self.phase == 'above':
            goal = np.append(behind, HOVER)
            if np.linalg.norm(goal[:2] - ee[:2]) < 0.006 and abs(goal[2] - ee[2]) < 0.02 \
                    and _angle_between(pose, obs.ee_orientation) < 0.05:
                self._enter('lower', obs)
            else:
                if ee[2] < 0.6 * HOVER and np.linalg.norm(goal[:2] - ee[:2]) > 0.02:
                    goal = np.append(ee[:2], HOVER)
                return self._move(obs, goal, 0.0, orientation=pose)
        if self.phase == 'lower':
            goal = np.append(behind, PUSH_Z)
            if abs(goal[2] - ee[2]) < 0.004:
                self._enter('push', obs)
            else:
                return self._move(obs, goal, 0.0, SLOW_SPEED, pose)
        if self.phase == 'push':
            remaining = float(np.linalg.norm(goal_xy - cube[:2]))
            relative = ee[:2] - cube[:2]
            lateral = relative - np.dot(relative, direction) * direction
            if remaining < 0.004 or self._in_phase(obs) > 6.0:
                self._enter('back_off', obs)
            elif np.linalg.norm(lateral) > 0.018 or np.dot(relative, direction) > 0.0:
                # Off the line through the cube (it turned or slid sideways): start over.
                self._enter('above', obs)
                return self._move(obs, np.append(ee[:2], HOVER), 0.0, orientation=pose)
            else:
                speed = float(np.clip(2.0 * remaining, 0.03, PUSH_SPEED))
                velocity = speed * direction - 4.0 * lateral
                velocity = np.append(velocity, 4.0 * (PUSH_Z - ee[2]))
                return ExpertCommand(velocity, _steer(obs.ee_orientation, pose), 0.0)
        if self.phase == 'back_off':
            if 'release' not in self._memory:
                self._memory['release'] = np.append(ee[:2] - 0.04 * direction, PUSH_Z)
            goal = self._memory['release']
            if np.linalg.norm(goal - ee) < 0.006:
                self._enter('retreat', obs)
            else:
                return self._move(obs, goal, 0.0, SLOW_SPEED, pose)
        if self.phase == 'retreat':
            goal = np.append(self._memory['release'][:2], RETREAT_Z)
            if ee[2] > RETREAT_Z - 0.01:
                self._enter('done', obs)
            else:
                return self._move(obs, goal, 0.0)
        return self._hold(obs, 0.0)

    def _press(self, obs: ExpertObservation, reversed_: bool = False) -> ExpertCommand:
        """Press the button with the closed gripper and stay on it (move away if reversed).

        Phases: above (the button), press (descend until pressed, then keep pressing).
        Reversed: away (up and away from the button), done.
        """
        ee = obs.ee_position
        button_top = obs.objects['yellow_button'] + np.array([0.0, 0.0, BUTTON_HALF[2]])
        if self.phase == 'start':
            self._enter('away' if reversed_ else 'above', obs)
        if self.phase == 'away':
            if 'goal' not in self._memory:
                away = _unit(np.append(ee[:2] - button_top[:2], 0.0))
                self._memory['goal'] = ee + 0.15 * away + np.array([0.0, 0.0, 0.1])
            goal = self._memory['goal']
            if np.linalg.norm(goal - ee) < 0.01:
                self._enter('done', obs)
            else:
                return self._move(obs, goal, 0.0)
        if self.phase == 'above':
            goal = button_top + np.array([0.0, 0.0, HOVER])
            if np.linalg.norm(goal[:2] - ee[:2]) < 0.004 and abs(goal[2] - ee[2]) < 0.02:
                self._enter('press', obs)
            else:
                return self._move(obs, goal, 0.0)
        if self.phase == 'press':
            goal = button_top + np.array([0.0, 0.0, 0.004])  # fingertips touch, stay there
            speed = SLOW_SPEED if ee[2] - goal[2] < 0.04 else MAX_SPEED
            return self._move(obs, goal, 0.0, speed)
        return self._hold(obs, 0.0)

    def _far_from(self, obs: ExpertObservation, avoid: str, cube: str) -> np.ndarray:
        """Cube rest position on the table far from ``avoid``, clear of the other objects.

        Only places on the far side of the cube count (moving there, the cube's distance to
        ``avoid`` only grows); of those, the farthest. Chosen once per episode, on first call.
        """
        if 'far' not in self._memory:
            xs, ys = np.meshgrid(np.linspace(*_FAR_X, 15), np.linspace(*_FAR_Y, 25))
            candidates = np.column_stack([xs.ravel(), ys.ravel()])
            self._memory['far'] = np.append(
                _away_point(candidates, obs, avoid, cube, clearance=0.08), CUBE_HALF)
        return self._memory['far']

    # -- failing behaviours ----------------------------------------------------------------
    def _act_random(self, obs: ExpertObservation) -> ExpertCommand:
        """Smoothed random velocities in a soft box above the objects; random gripper."""
        dt = float(np.clip(obs.time - self._memory.get('last', obs.time - 0.05), 0.0, 0.2))
        self._memory['last'] = obs.time
        noise = self.rng.normal(0.0, 1.0, 3)
        self._velocity += -1.5 * self._velocity * dt + 0.35 * math.sqrt(dt) * noise
        ee = obs.ee_position
        push_back = 3.0 * (np.clip(ee, _RANDOM_BOX_MIN, _RANDOM_BOX_MAX) - ee)
        velocity = self._velocity + push_back
        if ee[2] < _RANDOM_BOX_MIN[2] and velocity[2] < 0.0:  # never down into the objects
            velocity[2] = push_back[2]
        speed = float(np.linalg.norm(velocity))
        if speed > MAX_SPEED:
            velocity *= MAX_SPEED / speed
        if obs.time >= self._next_gripper_change:
            self._gripper = float(self.rng.uniform(0.0, MAX_GRIPPER_WIDTH))
            self._next_gripper_change = obs.time + float(self.rng.uniform(0.5, 2.0))
        return ExpertCommand(velocity, _steer(obs.ee_orientation), self._gripper)

    def _missed_goal(self, obs: ExpertObservation) -> ExpertObservation:
        """The observation with the goal moved a few cm: the expert's motions, the wrong place.

        A near miss, the failure a learned policy makes most (it presses the table beside the
        button, sets the cube down beside the pad): the critic must not call it done. The goal
        (button, pad, or the cube to stack on) is shifted by a random horizontal offset of
        ``MISS_RADIUS`` (chosen once per episode; a push stops short of the pad); a missed
        button press ends on the table.
        """
        goal = {'press_button': 'yellow_button', 'stack_red_on_blue': 'blue_cube'}.get(
            self.task_name, 'green_pad')
        if 'miss' not in self._memory:
            low, high = MISS_RADIUS.get(self.task_name, MISS_RADIUS_DEFAULT)
            angle = self.rng.uniform(-np.pi, np.pi)
            if self.task_name == 'push_red':  # stop short: the cube never crosses the pad
                lane = obs.objects['red_cube'][:2] - obs.objects[goal][:2]
                angle = math.atan2(lane[1], lane[0])
            drop = -BUTTON_HALF[2] if goal == 'yellow_button' else 0.0
            self._memory['miss'] = np.array([*(self.rng.uniform(low, high)
                                               * np.array([np.cos(angle), np.sin(angle)])),
                                             drop])
        objects = dict(obs.objects)
        objects[goal] = objects[goal] + self._memory['miss']
        return replace(obs, objects=objects)

    def _act_stalled(self, obs: ExpertObservation) -> ExpertCommand:
        """Start toward the object, stop a part of the way there and stay."""
        gripper = 0.0 if self.task_name in ('push_red', 'press_button') else MAX_GRIPPER_WIDTH
        if self.phase == 'start':
            start = self._memory['start']
            hover = obs.objects[self._target_object()] + np.array([0.0, 0.0, HOVER])
            fraction = float(self.rng.uniform(0.2, 0.45))
            self._memory['goal'] = start + fraction * (hover - start)
            self._enter('start_moving', obs)
        if self.phase == 'start_moving':
            goal = self._memory['goal']
            if np.linalg.norm(goal - obs.ee_position) < 0.01 or self._in_phase(obs) > 3.0:
                self._enter('stalled', obs)
            else:
                return self._move(obs, goal, gripper)
        return self._hold(obs, gripper)


def run_offline_episode(scene: PandaScene, controller: ArmController, task: Task | str,
                        expert: ScriptedExpert, seed: int, control_dt: float = 0.05,
                        max_duration: float | None = None,
                        on_step: Callable[[int, PandaScene, ExpertCommand, float], None]
                        | None = None,
                        on_start: Callable[[dict], None] | None = None) -> EpisodeOutcome:
    """Run one episode of ``expert`` on ``task`` from the initial state of ``seed``, no ROS.

    After the reset, ``on_start(start_measures)`` is called (e.g. to record the initial state).
    Each control period: observe, act, send the twist and gripper width to the controller,
    ``controller.update``, ``scene.step``, then ``on_step(step_index, scene, command,
    progress)``. Stops at ``max_duration`` (default: the task's) or on success. An ``'expert'``
    episode keeps running until its script has settled (the arm withdrawn and holding still,
    or holding the button down) and success has held for ``SETTLE_AFTER_SUCCESS`` seconds
    since, so it ends as a live operator's demonstration does (a critic trained on it has seen
    the withdrawn arm beside the completed task) and a momentary success (a cube sliding
    across the pad edge) does not end it. Time is a local clock starting at 0 s.
    """
    task = get_task(task) if isinstance(task, str) else task
    if control_dt <= 0.0:
        raise ValueError(f'control_dt must be > 0, got {control_dt}')
    limit = task.max_duration if max_duration is None else float(max_duration)
    start = reset_scene(scene, task, seed)
    controller.reset()  # forget targets and command times of a previous episode
    if on_start is not None:
        on_start(start)
    expert.reset()
    trace: list[float] = []
    settled_since: float | None = None  # start of the current run of finished, successful steps
    success, steps = task.success(scene, start), 0
    for step in range(max(1, int(round(limit / control_dt)))):
        now = step * control_dt
        command = expert.act(observe(scene, now))
        controller.servo(command.linear, command.angular, '', now=now)
        controller.gripper(command.gripper_width, now)
        controller.update(now, control_dt)
        scene.step(control_dt)
        progress = task.progress(scene, start)
        trace.append(progress)
        steps = step + 1
        if on_step is not None:
            on_step(step, scene, command, progress)
        success = task.success(scene, start)
        if success and expert.behaviour != 'expert':
            break
        if not (success and expert.settled):
            settled_since = None
            continue
        if settled_since is None:
            settled_since = now
        if now - settled_since >= SETTLE_AFTER_SUCCESS - 1e-9:
            break
    return EpisodeOutcome(success=bool(success), steps=steps, duration=steps * control_dt,
                          final_progress=trace[-1] if trace else 0.0, progress=trace)
