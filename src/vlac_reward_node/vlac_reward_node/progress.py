"""Episode progress tracking for the reward node (ROS-free).

Frames arrive at the camera rate; the critic scores a pair (anchor, candidate) whenever the
candidate is at least ``stride`` seconds newer than the anchor, then the candidate becomes the
anchor. ``FrameMailbox`` holds at most one pending candidate and lets one caller at a time
score: when the model falls behind, a newer candidate replaces the pending one (counted as
dropped), so nothing queues without bound and the reward always refers to the freshest frame.
``ProgressTracker`` accumulates the value ``v_i = v_{i-1} + c_i (1 - v_{i-1})`` and debounces
the done decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import threading
from typing import Callable, Sequence

import numpy as np
from vlac_models.config import doc


@dataclass(frozen=True)
class RewardConfig:
    """Parameters of ``vlac_reward_node`` (SI units)."""

    backend: str = field(default='compact', metadata=doc("critic backend: 'compact' or 'vlac'"))
    model_path: str = field(default='', metadata=doc('critic model directory'))
    device: str = field(default='cpu', metadata=doc("'cpu' or 'cuda'"))
    trust_remote_code: bool = field(default=False, metadata=doc(
        'vlac backend only: allow the checkpoint to run its own code (explicit opt-in)'))
    image_topic: str = field(default='camera/image_raw', metadata=doc(
        'sensor_msgs/Image topic of the scored camera'))
    task: str = field(default='', metadata=doc(
        'task sentence; empty: taken from the task topic (std_msgs/String, latched)'))
    stride: float = field(default=0.2, metadata=doc(
        'time between the two frames of a scored pair, s (frame stamps, not message counts)'))
    done_threshold: float = field(default=0.9, metadata=doc('done probability threshold'))
    done_debounce: int = field(default=3, metadata=doc(
        'consecutive scores above the threshold before done is declared'))
    reference_path: str = field(default='', metadata=doc(
        'optional reference demonstration (bag or image folder) for in-context scoring'))
    reference_frames: int = field(default=5, metadata=doc(
        'frames sampled uniformly from the reference (first and last included)'))
    inference_threads: int = field(default=1, metadata=doc(
        'compact backend: ONNX Runtime intra-op threads on CPU (1 leaves a core to the '
        'executor and the camera; a reward took 1.9 ms with 1, 2.0 ms with 2 on 2 cores)'))
    max_frame_age: float = field(default=1.0, metadata=doc(
        'frames older than this on arrival are rejected as stale, s'))
    debug_image: bool = field(default=True, metadata=doc(
        'publish ~/debug_image (frame, value curve, done) when someone subscribes'))
    autostart: bool = field(default=False, metadata=doc(
        'configure and activate at start-up (no lifecycle manager needed)'))

    def validate(self) -> 'RewardConfig':
        """Raise ValueError naming the bad value; return self."""
        if self.backend not in ('compact', 'vlac'):
            raise ValueError(f"backend {self.backend!r} must be 'compact' or 'vlac'")
        if not self.model_path:
            raise ValueError('model_path is empty: set it to the critic model directory')
        if self.device not in ('cpu', 'cuda'):
            raise ValueError(f"device {self.device!r} must be 'cpu' or 'cuda'")
        if not 0.01 <= self.stride <= 10.0:
            raise ValueError(f'stride {self.stride} s outside 0.01..10')
        if not 0.0 < self.done_threshold < 1.0:
            raise ValueError(f'done_threshold {self.done_threshold} outside (0, 1)')
        if not 1 <= self.done_debounce <= 100:
            raise ValueError(f'done_debounce {self.done_debounce} outside 1..100')
        if not 2 <= self.reference_frames <= 32:
            raise ValueError(f'reference_frames {self.reference_frames} outside 2..32')
        if not 1 <= self.inference_threads <= 64:
            raise ValueError(f'inference_threads {self.inference_threads} outside 1..64')
        if not self.max_frame_age > 0.0:
            raise ValueError(f'max_frame_age {self.max_frame_age} must be > 0')
        return self


@dataclass
class Frame:
    """A camera frame: RGB pixels and its capture stamp (seconds)."""

    rgb: np.ndarray
    stamp: float
    stamp_msg: object = None  # the builtin_interfaces/Time it came with
    arrival: float = 0.0  # when the node received it (system clock, s)


class FrameMailbox:
    """One-slot handoff between camera callbacks and the scorer; newer replaces older.

    Camera callbacks ``put`` a frame and call ``drain``: the first caller to find no one
    scoring becomes the scorer and scores pending frames until the mailbox is empty; the
    others return at once, their frame left for the scorer (or replaced by a newer one and
    counted in ``dropped``). So scoring never runs twice at a time, nothing queues beyond one
    frame, and no frame is stranded: the scorer looks at the mailbox again after letting go.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scorer = threading.Lock()  # held by whoever is scoring
        self._frame: Frame | None = None
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        """Offer a candidate; a pending one not yet taken is dropped (and counted)."""
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame

    def pending(self) -> bool:
        """Whether a candidate waits to be taken (a lock-free peek; ``take`` decides)."""
        return self._frame is not None

    def take(self) -> Frame | None:
        """Take the pending candidate, if any."""
        with self._lock:
            frame, self._frame = self._frame, None
            return frame

    def drain(self, score: Callable[[Frame], None]) -> None:
        """Score pending frames with ``score`` until none is left, unless someone else is."""
        while self.pending():
            if not self._scorer.acquire(blocking=False):
                return
            try:
                frame = self.take()
                if frame is not None:
                    score(frame)
            finally:
                self._scorer.release()

    def clear(self) -> None:
        """Forget any pending candidate (episode reset)."""
        with self._lock:
            self._frame = None


@dataclass
class Score:
    """One published reward step."""

    anchor: Frame
    frame: Frame
    delta: float
    value: float
    done_probability: float
    done: bool


class ProgressTracker:
    """Anchor frame, accumulated value and done debounce of one episode."""

    def __init__(self, stride: float, threshold: float, debounce: int) -> None:
        self.stride, self.threshold, self.debounce = stride, threshold, debounce
        self.reset('')

    def reset(self, task: str) -> None:
        """Start a new episode for ``task``."""
        self.task = task
        self.anchor: Frame | None = None
        self.submitted: float | None = None  # stamp of the newest frame handed to inference
        self.first: Frame | None = None
        self.value = 0.0
        self.above = 0
        self.done = False
        self.history: list[Score] = []

    def wants(self, frame: Frame) -> bool:
        """Whether to submit ``frame`` for scoring; the first frame becomes the anchor.

        A frame is wanted once it is ``stride`` seconds newer than the newest frame already
        submitted (or the anchor), less 10 % for camera stamp jitter (a 30 Hz camera at a
        0.1 s stride then gives a pair every third frame, not every fourth). Pairs always
        chain anchor -> scored frame, so when the model falls behind and pending frames are
        replaced, a pair spans more than one stride but the accumulated value stays
        consistent over the episode.
        """
        if self.anchor is None:
            self.anchor = self.first = frame
            return False
        reference = self.anchor.stamp if self.submitted is None else self.submitted
        if frame.stamp - reference >= 0.9 * self.stride:
            self.submitted = frame.stamp
            return True
        return False

    def record(self, frame: Frame, delta: float, done_probability: float) -> Score:
        """Fold one scored pair into the episode; ``frame`` becomes the anchor."""
        if np.isfinite(delta):
            self.value = min(1.0, max(0.0, self.value + delta * (1.0 - self.value)))
        if np.isfinite(done_probability) and done_probability >= self.threshold:
            self.above += 1
        else:
            self.above = 0
        self.done = self.done or self.above >= self.debounce
        score = Score(self.anchor, frame, float(delta), self.value, float(done_probability),
                      self.done)
        self.anchor = frame
        self.history.append(score)
        if len(self.history) > 2000:
            del self.history[:1000]
        return score


def score_frame(critic, task: str, anchor: Frame, frame: Frame, first: Frame | None,
                reference: Sequence[np.ndarray] = ()) -> tuple[float, float]:
    """The critic's (progress delta anchor -> frame, done probability of frame).

    With a ``reference`` demonstration the pair is scored in context, the episode's first
    frame included (the paper's one-shot mode). The reward node and the lock-step experiment
    runner both score through this function.
    """
    from vlac_models.critic import DoneQuery

    reference = tuple(reference)
    delta = float(critic.score_pairs([pair_query(task, anchor, frame, first, reference)])[0])
    done_p = float(critic.done_probability([DoneQuery(task, frame.rgb, reference)])[0])
    return delta, done_p


def pair_query(task: str, anchor: Frame, frame: Frame, first: Frame | None,
               reference: Sequence[np.ndarray] = ()):
    """The critic's ``PairQuery`` for ``anchor -> frame`` (in context with a reference)."""
    from vlac_models.critic import PairQuery

    reference = tuple(reference)
    return PairQuery(task, anchor.rgb, frame.rgb, reference,
                     first.rgb if reference and first is not None else None)


def progress_msg(task: str, score: Score, latency: float, model_id: str, stamp):
    """The ``vlac_interfaces/ProgressReward`` of one score, published at ``stamp``."""
    from std_msgs.msg import Header

    from vlac_interfaces.msg import ProgressReward

    return ProgressReward(
        header=Header(stamp=stamp, frame_id=''), task=task, stamp_a=score.anchor.stamp_msg,
        stamp_b=score.frame.stamp_msg, delta=score.delta, value=score.value,
        done_probability=score.done_probability, done=score.done,
        model_id=model_id, inference_latency=latency)
