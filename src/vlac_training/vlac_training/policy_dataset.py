"""Behaviour-cloning samples from rosbag2 folders (ROS-free).

Any ``ros2 bag record`` of an arm will do if it holds a camera image topic, the end-effector
pose (geometry_msgs/PoseStamped in the robot base frame), the joint states with the gripper's
finger joints, the gripper command (std_msgs/Float64MultiArray, finger opening in metres) and
the task sentence (first std_msgs/String on the task topic, else ``custom_data['instruction']``,
or given explicitly). The simulator's recordings (``vlac_sim.record``) are such bags.

Derivation of one episode (period ``P``, default 0.1 s, the policy's control period):

- Time is the messages' header stamps (bag receive times for unstamped messages: the gripper
  commands), relative to the first image. Control steps are ``t_k = t_0 + k P`` from the first
  image up to the last time both the image and the pose streams still cover ``t_k + P``.
- Observation at ``t_k``: the image nearest to ``t_k`` (a step whose nearest image is more
  than ``P / 2`` away is dropped), resized to ``frame_size`` squares; the state
  ``[x, y, z, roll, pitch, yaw, gripper]``: the end-effector pose interpolated at ``t_k``
  (positions linearly, orientations by slerp), its quaternion as fixed-axis roll/pitch/yaw
  (``R = Rz(yaw) Ry(pitch) Rx(roll)``, as ``pinocchio.rpy``), and the gripper opening: the sum
  of the finger joint positions (linearly interpolated) over ``max_opening``, clipped to 0..1.
- Action at ``t_k``: the pose change to ``t_{k+1}``: translation ``p(t_{k+1}) - p(t_k)`` in
  the base frame (metres) and the rotation ``R_d = R(t_{k+1}) R(t_k)^T`` (applied on the left,
  fixed base axes, as the arm adapters apply it) as roll/pitch/yaw, each wrapped to
  [-pi, pi]; the gripper command: the last command stamped before ``t_{k+1}``, normalised by
  ``max_opening`` and thresholded at 0.5 (1 open, 0 close). Without a gripper command topic
  (``gripper_topic=None``) the measured opening at ``t_{k+1}`` is thresholded instead.
- Value target: the share of the episode still to go, ``(K - k) / K`` for ``K`` steps: what a
  progress reward that sums to 1 over a successful demonstration returns from step ``k`` on.
- Subgoal target (an auxiliary training signal, from the recorded poses only): the
  end-effector position at the next keyframe after ``t_k``: the next step whose gripper
  command differs from the previous step's (where the operator grasped or released), else the
  end of the episode (where it finished). For a reach-and-press that is the button, for a pick
  and place the grasp, then the release point: it teaches the network where things are.
- By default only successful episodes are used (``custom_data['success']`` true); a bag that
  does not say is taken as a demonstration.

The measured motion, not the operator's command, is the label: what the arm really did in one
period is what executing the action as a servo twist (delta / P) asks it to do again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
import pathlib
from typing import Iterable, Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp
from vlac_models.frames import resize_frame
from vlac_models.stamps import is_zero, stamp_ns
from vlac_models.state import policy_state, rpy_of
from vlac_ros.bags import bag_metadata, read_messages
from vlac_ros.images import image_to_rgb

from vlac_training.critic_dataset import find_bags

DEFAULT_IMAGE_TOPICS = ('/camera/image_raw',)
DEFAULT_POSE_TOPIC = '/ee_pose'
DEFAULT_JOINT_TOPIC = '/joint_states'
DEFAULT_GRIPPER_TOPIC = '/gripper_controller/commands'
DEFAULT_TASK_TOPIC = '/task'
PANDA_FINGER_JOINTS = ('panda_finger_joint1', 'panda_finger_joint2')
PANDA_MAX_OPENING = 0.08  # m, sum of both finger joint positions when fully open


@dataclass
class BagTopics:
    """Where a bag keeps what behaviour cloning needs.

    Attributes:
        images: image topics, one per camera, in the policy's camera order.
        pose: end-effector PoseStamped topic (base frame).
        joints: JointState topic with the finger joints.
        gripper: Float64MultiArray gripper command topic (finger opening, m); None to use the
            measured opening instead.
        task: std_msgs/String topic with the task sentence.
        finger_joints: names of the finger joints whose positions sum to the opening.
        max_opening: opening (m) that normalises to 1.

    """

    images: tuple[str, ...] = DEFAULT_IMAGE_TOPICS
    pose: str = DEFAULT_POSE_TOPIC
    joints: str = DEFAULT_JOINT_TOPIC
    gripper: str | None = DEFAULT_GRIPPER_TOPIC
    task: str = DEFAULT_TASK_TOPIC
    finger_joints: tuple[str, ...] = PANDA_FINGER_JOINTS
    max_opening: float = PANDA_MAX_OPENING

    def validate(self) -> 'BagTopics':
        """Return self; ValueError naming a bad field."""
        if not self.images:
            raise ValueError('at least one image topic is needed')
        if not self.finger_joints:
            raise ValueError('at least one finger joint name is needed')
        if not self.max_opening > 0:
            raise ValueError(f'max_opening must be > 0 m, got {self.max_opening}')
        return self


@dataclass
class Episode:
    """The behaviour-cloning samples of one bag.

    Attributes:
        path: the bag folder.
        task: the task sentence.
        success: the recorded outcome (None where the bag does not say).
        frames: (K, cameras, S, S, 3) uint8 observation images.
        states: (K, 7) float32 states at the control steps.
        actions: (K, 7) float32 actions (pose change to the next step, gripper command).
        subgoals: (K, 3) float32 end-effector position at the next keyframe, m.
        times: (K,) float64 seconds of the control steps from the first image.
        custom_data: the bag's metadata custom_data.

    """

    path: str
    task: str
    success: bool | None
    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    subgoals: np.ndarray
    times: np.ndarray
    custom_data: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def task_name(self) -> str:
        """The short task name of the custom data, else the sentence."""
        return self.custom_data.get('task', self.task)

    def value_targets(self) -> np.ndarray:
        """(K,) float32 share of the episode still to go at each step, (K - k) / K."""
        k = len(self)
        return ((k - np.arange(k)) / max(k, 1)).astype(np.float32)


def _parse_success(value: str | None) -> bool | None:
    text = str(value).strip().lower() if value is not None else ''
    return {'true': True, '1': True, 'yes': True, 'false': False, '0': False,
            'no': False}.get(text)


def wrap(angles: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (np.asarray(angles) + np.pi) % (2.0 * np.pi) - np.pi


def pose_deltas(positions: np.ndarray, rotations: Rotation) -> np.ndarray:
    """(K-1, 6) translation (m) and left-applied rotation (rpy, rad) between consecutive poses.

    ``positions`` (K, 3) and ``rotations`` (K) in the base frame.
    """
    translation = positions[1:] - positions[:-1]
    relative = rotations[1:] * rotations[:-1].inv()
    return np.concatenate([translation, wrap(rpy_of(relative))], axis=1)


def next_keyframe_positions(positions: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """(K, 3) position at the next keyframe after each step (see the module docstring).

    ``positions`` (K + 1, 3) at ``t_0 .. t_K``; ``gripper`` (K,) commands of the steps.
    """
    steps = len(gripper)
    keyframes = [j for j in range(1, steps) if gripper[j] != gripper[j - 1]] + [steps]
    index = np.searchsorted(np.array(keyframes), np.arange(steps), side='right')
    return positions[np.array(keyframes)[index]]


def _stamp(msg, bag_ns: int) -> int:
    header = getattr(msg, 'header', None)
    if header is not None and not is_zero(header.stamp):
        return stamp_ns(header.stamp)
    return int(bag_ns)


def _interp(times: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(at, times, values[:, j]) for j in range(values.shape[1])], 1)


def load_bag_episode(path: os.PathLike, period: float = 0.1, frame_size: int = 96,
                     topics: BagTopics | None = None, task: str | None = None) -> Episode:
    """Behaviour-cloning samples of one bag (see the module docstring).

    Raises FileNotFoundError for a missing bag and ValueError naming what a bag lacks (a
    topic, the finger joints, a task) or when it is too short for one step.
    """
    topics = (topics or BagTopics()).validate()
    if not period > 0:
        raise ValueError(f'period must be > 0 s, got {period}')
    path = pathlib.Path(path)
    if not (path / 'metadata.yaml').is_file():
        raise FileNotFoundError(f'no rosbag2 folder (metadata.yaml) at {path}')
    meta = bag_metadata(path)
    custom = {str(k): str(v) for k, v in meta['custom_data'].items()}
    needed = [*topics.images, topics.pose, topics.joints] + (
        [topics.gripper] if topics.gripper else [])
    missing = [t for t in needed if t not in meta['topics']]
    if missing:
        raise ValueError(f'bag {path} lacks topics {missing}; it has '
                         f'{", ".join(sorted(meta["topics"]))}')
    images: dict[str, list[tuple[int, object]]] = {t: [] for t in topics.images}
    poses, openings, commands = [], [], []
    sentence = None
    wanted = needed + ([topics.task] if topics.task in meta['topics'] else [])
    for topic, bag_ns, msg in read_messages(path, wanted):
        if topic in images:
            images[topic].append((_stamp(msg, bag_ns), msg))
        elif topic == topics.pose:
            p, q = msg.pose.position, msg.pose.orientation
            poses.append((_stamp(msg, bag_ns), p.x, p.y, p.z, q.x, q.y, q.z, q.w))
        elif topic == topics.joints:
            names = list(msg.name)
            if all(n in names for n in topics.finger_joints):
                opening = sum(float(msg.position[names.index(n)]) for n in topics.finger_joints)
                openings.append((_stamp(msg, bag_ns), opening))
        elif topic == topics.gripper:
            if len(msg.data):
                commands.append((_stamp(msg, bag_ns), float(msg.data[0])))
        elif topic == topics.task and sentence is None and getattr(msg, 'data', '').strip():
            sentence = msg.data.strip()
    sentence = task or sentence or custom.get('instruction', '').strip()
    if not sentence:
        raise ValueError(f'bag {path} has no task: no String on {topics.task!r}, no '
                         "custom_data 'instruction', and no task given")
    if not openings:
        raise ValueError(f'bag {path}: no {topics.joints} message names the finger joints '
                         f'{list(topics.finger_joints)}')
    if len(poses) < 2 or any(len(v) == 0 for v in images.values()):
        raise ValueError(f'bag {path} has too few poses or images for one control step')
    origin = min(s for v in images.values() for s, _ in v)
    to_s = 1e-9

    pose_table = np.array(sorted(poses), dtype=np.float64)
    pose_t = (pose_table[:, 0] - origin) * to_s
    pose_t, unique = np.unique(pose_t, return_index=True)
    pose_table = pose_table[unique]
    opening_table = np.array(sorted(openings), dtype=np.float64)
    opening_t = (opening_table[:, 0] - origin) * to_s
    image_t = {t: np.array([(s - origin) * to_s for s, _ in sorted(v, key=lambda e: e[0])])
               for t, v in images.items()}
    image_msgs = {t: [m for _, m in sorted(v, key=lambda e: e[0])] for t, v in images.items()}

    end = min(pose_t[-1], opening_t[-1], *(v[-1] + period / 2 for v in image_t.values()))
    steps = int(np.floor((end - max(0.0, pose_t[0])) / period + 1e-6))
    times = max(0.0, pose_t[0]) + period * np.arange(steps + 1)  # t_0 .. t_K
    if steps < 1:
        raise ValueError(f'bag {path} is shorter than one control period ({period} s)')
    positions = _interp(pose_t, times, pose_table[:, 1:4])
    quats = pose_table[:, 4:8] / np.linalg.norm(pose_table[:, 4:8], axis=1, keepdims=True)
    rotations = Slerp(pose_t, Rotation.from_quat(quats))(np.clip(times, pose_t[0], pose_t[-1]))
    opening = np.clip(np.interp(times, opening_t, opening_table[:, 1]) / topics.max_opening,
                      0.0, 1.0)
    states = policy_state(positions, rotations, opening)

    deltas = pose_deltas(positions, rotations)
    if topics.gripper:
        if not commands:
            raise ValueError(f'bag {path} has no gripper command on {topics.gripper!r}')
        command_table = np.array(sorted(commands), dtype=np.float64)
        command_t = (command_table[:, 0] - origin) * to_s
        # The last command stamped before the end of each step (the first one before that).
        last = np.clip(np.searchsorted(command_t, times[1:] - 1e-6) - 1, 0, None)
        gripper = (command_table[last, 1] / topics.max_opening >= 0.5).astype(np.float64)
    else:
        gripper = (opening[1:] >= 0.5).astype(np.float64)
    actions = np.concatenate([deltas, gripper[:, None]], axis=1)
    subgoals = next_keyframe_positions(positions, gripper)

    keep, frames = [], []
    for k, t in enumerate(times[:-1]):
        views = []
        for topic in topics.images:
            nearest = int(np.argmin(np.abs(image_t[topic] - t)))
            if abs(image_t[topic][nearest] - t) > period / 2 + 1e-6:
                break
            views.append(resize_frame(image_to_rgb(image_msgs[topic][nearest],
                                                   f'{path} {topic}'), frame_size))
        else:
            keep.append(k)
            frames.append(np.stack(views))
    if not keep:
        raise ValueError(f'bag {path}: no control step has an image within {period / 2} s')
    keep = np.array(keep)
    return Episode(str(path), sentence, _parse_success(custom.get('success')),
                   np.stack(frames), states[keep].astype(np.float32),
                   actions[keep].astype(np.float32), subgoals[keep].astype(np.float32),
                   times[keep], custom)


@dataclass
class BCDataset:
    """Behaviour-cloning samples of many episodes, flattened.

    Attributes:
        frames: (N, cameras, S, S, 3) uint8.
        states, actions: (N, 7) float32.
        values: (N,) float32 value targets.
        subgoals: (N, 3) float32 subgoal positions, m.
        task_index: (N,) int64 index into ``tasks``.
        episode_index: (N,) int64 index into ``episodes``.
        tasks: distinct task sentences.
        episodes: per episode: path, task sentence, task name, success, first row, count.

    """

    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    values: np.ndarray
    subgoals: np.ndarray
    task_index: np.ndarray
    episode_index: np.ndarray
    tasks: list[str]
    episodes: list[dict]

    def __len__(self) -> int:
        return len(self.actions)

    def subset(self, episode_ids: Iterable[int]) -> 'BCDataset':
        """The samples of some episodes (episode indices kept as they are)."""
        rows = np.flatnonzero(np.isin(self.episode_index, np.fromiter(episode_ids, np.int64)))
        return BCDataset(self.frames[rows], self.states[rows], self.actions[rows],
                         self.values[rows], self.subgoals[rows], self.task_index[rows],
                         self.episode_index[rows],
                         self.tasks, self.episodes)


def build_dataset(episodes: Sequence[Episode]) -> BCDataset:
    """Flatten episodes into one ``BCDataset`` (ValueError when there is no sample)."""
    episodes = [e for e in episodes if len(e)]
    if not episodes:
        raise ValueError('no behaviour-cloning sample: no usable episode')
    tasks = sorted({e.task for e in episodes})
    rows, info = 0, []
    for e in episodes:
        info.append({'path': e.path, 'task': e.task, 'task_name': e.task_name,
                     'success': e.success, 'first': rows, 'count': len(e)})
        rows += len(e)
    return BCDataset(
        np.concatenate([e.frames for e in episodes]),
        np.concatenate([e.states for e in episodes]),
        np.concatenate([e.actions for e in episodes]),
        np.concatenate([e.value_targets() for e in episodes]),
        np.concatenate([e.subgoals for e in episodes]),
        np.concatenate([np.full(len(e), tasks.index(e.task), np.int64) for e in episodes]),
        np.concatenate([np.full(len(e), k, np.int64) for k, e in enumerate(episodes)]),
        tasks, info)


def load_episodes(paths: Iterable[os.PathLike], period: float = 0.1, frame_size: int = 96,
                  topics: BagTopics | None = None, task: str | None = None,
                  successful_only: bool = True, progress=None) -> list[Episode]:
    """Episodes of every bag at or under ``paths`` (sorted by path).

    ``successful_only`` skips bags whose custom_data says success is false (without reading
    them). ``progress`` wraps the bag list (e.g. ``tqdm``). FileNotFoundError when no bag.
    """
    paths = list(paths)
    bags = find_bags(paths)
    if not bags:
        raise FileNotFoundError(f'no rosbag2 folder under {", ".join(map(str, paths))}')
    if successful_only:
        bags = [b for b in bags
                if _parse_success(bag_metadata(b)['custom_data'].get('success')) is not False]
    return [load_bag_episode(b, period, frame_size, topics, task)
            for b in (progress(bags) if progress else bags)]
