"""The VLAC paper's pairwise progress dataset, built from rosbag2 folders (ROS-free).

Any bag with an image topic and a task sentence will do. The task comes from the first
std_msgs/String message on the task topic (default ``/task``), failing that from the bag's
metadata ``custom_data['instruction']``; an explicit ``task`` argument overrides both.

Construction (the VLAC paper, arXiv 2509.15937, "pairwise progress"):

- Frames are sampled every ``stride`` seconds of the image *header* stamps (the frame
  nearest to each point of a regular grid from the first stamp; bag receive times are used
  where headers are unstamped). ``n`` sampled frames get indices ``0 .. T`` with ``T = n-1``.
- Each index ``i < T`` of a successful trajectory yields a group of four samples:
  ``(i, i+1)`` label ``1/(T-i)``, ``(i+1, i)`` label ``-1/(T-i)``, ``(i, i+dt)`` label
  ``dt/(T-i)`` and ``(i+dt, i)`` label ``-dt/(T-i)``, with ``dt`` drawn uniformly from
  ``2 .. T-i`` (1 when ``i = T-1``): the share of the remaining trajectory covered, signed.
- A pair whose frames differ by less than ``stagnation_threshold`` (mean absolute pixel
  difference as a fraction of 255, default 1 %) is labelled 0 (stagnation).
- With probability ``mismatch_prob`` (default 5 %) a sample's task is replaced by the task of
  another trajectory with a different instruction and its label set to 0.
- Done labels per sampled frame ``k``: 0 when ``k < 0.8 T``, 1 when ``k > 0.95 T``, none in
  between. Mismatched-task replacement applies to done samples as well (label 0).
- Only successful trajectories (``custom_data['success']`` true, or every trajectory whose
  bag does not say) give progress pairs and done labels; a failing trajectory (success false)
  gives done label 0 on all its frames when ``failure_done_labels`` is set (it never
  completes its task), and is otherwise unused.

Frames are kept once in a frame table (``PairDataset.frames``); samples index into it. The
construction is deterministic for a given seed and trajectory order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
import pathlib
from typing import Iterable, Sequence

import cv2
import numpy as np
from vlac_models.frames import pixel_difference, resize_frame
from vlac_models.stamps import stamp_seconds
from vlac_ros.bags import STAGING_DIR, bag_metadata, read_messages
from vlac_ros.images import image_to_rgb

DEFAULT_IMAGE_TOPIC = '/camera/image_raw'
DEFAULT_TASK_TOPIC = '/task'
DONE_NEGATIVE_BELOW = 0.8  # frame index < 0.8 T -> done label 0
DONE_POSITIVE_ABOVE = 0.95  # frame index > 0.95 T -> done label 1
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')

# Sample kinds (PairDataset.pair_kind).
FORWARD_STEP, BACKWARD_STEP, FORWARD_JUMP, BACKWARD_JUMP = range(4)


@dataclass
class Trajectory:
    """One video: frames sampled at the stride, their stamps, the task and the outcome.

    Attributes:
        path: the bag (or image) folder.
        task: the task sentence.
        frames: (n, H, W, 3) uint8 RGB frames in time order.
        stamps: (n,) float64 seconds (header stamps, relative to the first frame).
        success: the recorded outcome, None where the recording does not say.
        custom_data: the bag's metadata custom_data (strings), empty for image folders.

    """

    path: str
    task: str
    frames: np.ndarray
    stamps: np.ndarray
    success: bool | None = None
    custom_data: dict[str, str] = field(default_factory=dict)

    @property
    def behaviour(self) -> str:
        """The recording's 'behaviour' custom data ('' when absent)."""
        return self.custom_data.get('behaviour', '')

    @property
    def task_name(self) -> str:
        """The short task name of the custom data, else the task sentence."""
        return self.custom_data.get('task', self.task)


@dataclass
class PairDataset:
    """Pairwise progress and done samples over a deduplicated frame table.

    Attributes:
        frames: (F, H, W, 3) uint8 frame table (every sampled frame of every trajectory once).
        tasks: the distinct task sentences; samples refer to them by index.
        trajectories: (path, task index, success, first frame row, frame count) per trajectory.
        pair_a, pair_b: (N,) int64 frame-table rows of each pair's first and second frame.
        pair_task: (N,) int64 task index given to the model (another task when mismatched).
        pair_label: (N,) float32 progress label in [-1, 1].
        pair_kind: (N,) int8 FORWARD_STEP, BACKWARD_STEP, FORWARD_JUMP or BACKWARD_JUMP.
        pair_traj: (N,) int64 trajectory index.
        pair_mismatched: (N,) bool, the task was replaced (label 0).
        pair_stagnant: (N,) bool, the frames differ by less than the stagnation threshold.
        done_frame, done_task, done_traj: (M,) int64 frame row, task index and trajectory.
        done_label: (M,) float32 in {0, 1}.
        done_mismatched: (M,) bool.

    """

    frames: np.ndarray
    tasks: list[str]
    trajectories: list[tuple[str, int, bool | None, int, int]]
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_task: np.ndarray
    pair_label: np.ndarray
    pair_kind: np.ndarray
    pair_traj: np.ndarray
    pair_mismatched: np.ndarray
    pair_stagnant: np.ndarray
    done_frame: np.ndarray
    done_task: np.ndarray
    done_label: np.ndarray
    done_traj: np.ndarray
    done_mismatched: np.ndarray

    def __len__(self) -> int:
        return len(self.pair_label)

    def summary(self) -> dict[str, float]:
        """Counts and label shares, for logs and the model card."""
        n = max(1, len(self.pair_label))
        return {
            'trajectories': len(self.trajectories), 'frames': len(self.frames),
            'tasks': len(self.tasks), 'pairs': len(self.pair_label),
            'mismatched_share': float(self.pair_mismatched.sum() / n),
            'stagnant_share': float(self.pair_stagnant.sum() / n),
            'done_samples': len(self.done_label),
            'done_positive_share': float(self.done_label.mean()) if len(self.done_label) else 0.0,
        }


def find_bags(paths: Iterable[os.PathLike]) -> list[pathlib.Path]:
    """Bag folders (holding a metadata.yaml) at or under ``paths``, sorted, staging excluded.

    Raises FileNotFoundError naming a path that does not exist.
    """
    found = set()
    for root in map(pathlib.Path, paths):
        if not root.exists():
            raise FileNotFoundError(f'no such bag or folder: {root}')
        if (root / 'metadata.yaml').is_file():
            found.add(root)
            continue
        for meta in root.rglob('metadata.yaml'):
            if STAGING_DIR not in meta.relative_to(root).parts:
                found.add(meta.parent)
    return sorted(found)


def stride_indices(stamps: Sequence[float], stride: float) -> np.ndarray:
    """Indices of the frames nearest to ``stamps[0] + k * stride`` (k = 0, 1, ...), deduplicated.

    ``stamps`` are seconds in non-decreasing order; a stride of 0 keeps every frame. Raises
    ValueError for a negative stride.
    """
    if stride < 0 or not np.isfinite(stride):
        raise ValueError(f'stride must be >= 0 seconds, got {stride}')
    stamps = np.asarray(stamps, np.float64)
    if len(stamps) == 0 or stride == 0:
        return np.arange(len(stamps))
    grid = stamps[0] + stride * np.arange(int(np.floor((stamps[-1] - stamps[0]) / stride
                                                       + 1e-6)) + 1)
    right = np.clip(np.searchsorted(stamps, grid), 1, len(stamps) - 1) if len(stamps) > 1 \
        else np.zeros(len(grid), int)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(stamps[left] - grid) <= np.abs(stamps[right] - grid), left, right)
    return np.unique(nearest)


def _parse_success(value: str | None) -> bool | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes'):
        return True
    if text in ('false', '0', 'no'):
        return False
    return None


def load_bag_trajectory(path: os.PathLike, stride: float = 0.2,
                        image_topic: str = DEFAULT_IMAGE_TOPIC,
                        task_topic: str = DEFAULT_TASK_TOPIC, task: str | None = None,
                        frame_size: int | None = None) -> Trajectory:
    """Load a bag's frames every ``stride`` seconds, its task and its outcome.

    ``frame_size`` resizes the kept frames to squares (memory); None keeps the camera size.
    Raises FileNotFoundError for a missing bag, ValueError when the bag has no frame on
    ``image_topic``, no task (topic, custom_data 'instruction' or ``task``) or an
    unsupported image encoding.
    """
    path = pathlib.Path(path)
    if not (path / 'metadata.yaml').is_file():
        raise FileNotFoundError(f'no rosbag2 folder (metadata.yaml) at {path}')
    meta = bag_metadata(path)
    custom = {str(k): str(v) for k, v in meta['custom_data'].items()}
    if image_topic not in meta['topics']:
        raise ValueError(f'bag {path} has no image topic {image_topic!r}; topics: '
                         f'{", ".join(sorted(meta["topics"]))}')
    messages = []  # (header stamp s, bag stamp s, message)
    topic_task = None
    topics = [image_topic] + ([task_topic] if task_topic in meta['topics'] else [])
    for topic, bag_ns, msg in read_messages(path, topics):
        if topic == image_topic:
            messages.append((stamp_seconds(msg.header.stamp), bag_ns * 1e-9, msg))
        elif topic_task is None and getattr(msg, 'data', '').strip():
            topic_task = msg.data.strip()
    if not messages:
        raise ValueError(f'bag {path} has no message on {image_topic!r}')
    sentence = task or topic_task or custom.get('instruction', '').strip()
    if not sentence:
        raise ValueError(f'bag {path} has no task: no String on {task_topic!r}, no '
                         "custom_data 'instruction', and no task given")
    use_header = all(m[0] > 0 for m in messages)
    messages.sort(key=lambda m: m[0] if use_header else m[1])
    stamps = np.array([m[0] if use_header else m[1] for m in messages])
    keep = stride_indices(stamps, stride)
    frames = np.stack([resize_frame(image_to_rgb(messages[k][2], f'{path} {image_topic}'),
                                    frame_size) for k in keep])
    return Trajectory(str(path), sentence, frames, stamps[keep] - stamps[0],
                      _parse_success(custom.get('success')), custom)


def load_image_folder(path: os.PathLike, stride: float = 0.2, fps: float = 10.0,
                      task: str | None = None, frame_size: int | None = None) -> Trajectory:
    """Load a folder of sorted PNG/JPG frames taken at ``fps`` as a trajectory.

    The task is ``task`` or the contents of ``task.txt`` in the folder. Raises
    FileNotFoundError when the folder has no images, ValueError without a task or for a
    non-positive ``fps``.
    """
    path = pathlib.Path(path)
    if not fps > 0:
        raise ValueError(f'fps must be > 0, got {fps}')
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
        if path.is_dir() else []
    if not files:
        raise FileNotFoundError(f'no PNG/JPG frames in {path}')
    if task is None and (path / 'task.txt').is_file():
        task = (path / 'task.txt').read_text().strip()
    if not task:
        raise ValueError(f'no task for image folder {path}: give --task or write task.txt')
    stamps = np.arange(len(files)) / fps
    keep = stride_indices(stamps, stride)
    frames = []
    for k in keep:
        image = cv2.imread(str(files[k]), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f'cannot read image {files[k]}')
        frames.append(resize_frame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), frame_size))
    return Trajectory(str(path), task, np.stack(frames), stamps[keep], None, {})


def trains_progress(trajectory: Trajectory) -> bool:
    """A trajectory teaches progress when it succeeded, or when its outcome is unknown."""
    return trajectory.success is not False


def build_dataset(trajectories: Sequence[Trajectory], seed: int = 0,
                  stagnation_threshold: float = 0.01, mismatch_prob: float = 0.05,
                  failure_done_labels: bool = True) -> PairDataset:
    """Build the four-pair groups, stagnation zeros, mismatched negatives and done labels.

    ``trajectories`` are already sampled at the stride (``load_bag_trajectory``). See the
    module docstring for the labels. Raises ValueError for a probability or threshold out of
    [0, 1] or trajectories whose frames differ in size.
    """
    if not 0.0 <= mismatch_prob <= 1.0:
        raise ValueError(f'mismatch_prob must be in [0, 1], got {mismatch_prob}')
    if not 0.0 <= stagnation_threshold <= 1.0:
        raise ValueError(f'stagnation_threshold must be in [0, 1], got {stagnation_threshold}')
    shapes = {t.frames.shape[1:] for t in trajectories}
    if len(shapes) > 1:
        raise ValueError(f'trajectories have different frame sizes {sorted(shapes)}; load '
                         'them with one frame_size')
    rng = np.random.default_rng(seed)
    tasks = sorted({t.task for t in trajectories})
    task_index = {task: k for k, task in enumerate(tasks)}
    traj_task = np.array([task_index[t.task] for t in trajectories], np.int64)
    pairs: list[tuple[int, int, int, float, int, int, bool]] = []
    dones: list[tuple[int, int, float, int]] = []
    table, infos, row = [], [], 0
    for n_traj, traj in enumerate(trajectories):
        n = len(traj.frames)
        table.append(traj.frames)
        infos.append((traj.path, task_index[traj.task], traj.success, row, n))
        big_t = n - 1
        if trains_progress(traj):
            for i in range(big_t):
                remaining = big_t - i
                dt = int(rng.integers(2, remaining + 1)) if remaining >= 2 else 1
                for a, b, kind, steps in ((i, i + 1, FORWARD_STEP, 1),
                                          (i + 1, i, BACKWARD_STEP, -1),
                                          (i, i + dt, FORWARD_JUMP, dt),
                                          (i + dt, i, BACKWARD_JUMP, -dt)):
                    stagnant = pixel_difference(traj.frames[a], traj.frames[b]) \
                        < stagnation_threshold
                    label = 0.0 if stagnant else steps / remaining
                    pairs.append((row + a, row + b, task_index[traj.task], label, kind,
                                  n_traj, stagnant))
            for k in range(n):
                if k < DONE_NEGATIVE_BELOW * big_t:
                    dones.append((row + k, task_index[traj.task], 0.0, n_traj))
                elif k > DONE_POSITIVE_ABOVE * big_t:
                    dones.append((row + k, task_index[traj.task], 1.0, n_traj))
        elif failure_done_labels:
            dones.extend((row + k, task_index[traj.task], 0.0, n_traj) for k in range(n))
        row += n

    def mismatch(sample_task: np.ndarray, sample_traj: np.ndarray) -> np.ndarray:
        """Replace tasks with probability mismatch_prob; return the mask of replaced ones."""
        mask = rng.random(len(sample_task)) < mismatch_prob
        for k in np.flatnonzero(mask):
            others = np.flatnonzero(traj_task != traj_task[sample_traj[k]])
            if len(others) == 0:
                mask[k] = False
                continue
            sample_task[k] = traj_task[others[rng.integers(len(others))]]
        return mask

    columns = list(zip(*pairs, strict=True)) if pairs else [[]] * 7
    pair_task = np.array(columns[2], np.int64)
    pair_traj = np.array(columns[5], np.int64)
    pair_label = np.array(columns[3], np.float32)
    pair_mismatched = mismatch(pair_task, pair_traj)
    pair_label[pair_mismatched] = 0.0
    done_columns = list(zip(*dones, strict=True)) if dones else [[]] * 4
    done_task = np.array(done_columns[1], np.int64)
    done_traj = np.array(done_columns[3], np.int64)
    done_label = np.array(done_columns[2], np.float32)
    done_mismatched = mismatch(done_task, done_traj)
    done_label[done_mismatched] = 0.0
    frames = np.concatenate(table) if table else np.zeros((0, 1, 1, 3), np.uint8)
    return PairDataset(
        frames=frames, tasks=tasks, trajectories=infos,
        pair_a=np.array(columns[0], np.int64), pair_b=np.array(columns[1], np.int64),
        pair_task=pair_task, pair_label=pair_label,
        pair_kind=np.array(columns[4], np.int8), pair_traj=pair_traj,
        pair_mismatched=pair_mismatched, pair_stagnant=np.array(columns[6], bool),
        done_frame=np.array(done_columns[0], np.int64), done_task=done_task,
        done_label=done_label, done_traj=done_traj, done_mismatched=done_mismatched)


def load_trajectories(paths: Iterable[os.PathLike], stride: float = 0.2,
                      image_topic: str = DEFAULT_IMAGE_TOPIC,
                      task_topic: str = DEFAULT_TASK_TOPIC, task: str | None = None,
                      frame_size: int | None = None) -> list[Trajectory]:
    """Load every bag at or under ``paths`` (see ``find_bags``) at the stride, sorted by path.

    Raises FileNotFoundError when no bag is found.
    """
    paths = list(paths)
    bags = find_bags(paths)
    if not bags:
        raise FileNotFoundError(f'no rosbag2 folder under {", ".join(map(str, paths))}')
    return [load_bag_trajectory(bag, stride, image_topic, task_topic, task, frame_size)
            for bag in bags]
