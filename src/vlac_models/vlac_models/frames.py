"""Camera frames as the models see them (ROS-free): validation, resizing, pixel difference.

Frames are (H, W, 3) uint8 RGB arrays, as ``vlac_ros.images.image_to_rgb`` decodes them from
``sensor_msgs/Image`` (live or from a bag). One place for these rules, so the critic, the
policy and the training data treat a frame the same way.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def prepare_frames(frames: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Validate (H, W, 3) uint8 RGB frames and resize them to (N, size, size, 3) uint8.

    Raises ValueError naming the shape or dtype of a bad frame.
    """
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for k, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
                or frame.shape[2] != 3:
            raise ValueError(
                f'frame {k} must be an (H, W, 3) uint8 RGB array, got '
                f'{getattr(frame, "shape", type(frame))} {getattr(frame, "dtype", "")}')
        out[k] = frame if frame.shape[:2] == (size, size) else cv2.resize(
            frame, (size, size), interpolation=cv2.INTER_AREA)
    return out


def resize_frame(frame: np.ndarray, size: int | None) -> np.ndarray:
    """Resize an (H, W, 3) frame to (size, size, 3) with area averaging; None keeps it."""
    if size is None or frame.shape[:2] == (size, size):
        return frame
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def pixel_difference(frame_a: np.ndarray, frame_b: np.ndarray) -> float:
    """Mean absolute pixel difference of two uint8 frames as a fraction of 255, in [0, 1]."""
    return float(np.abs(frame_a.astype(np.int16) - frame_b.astype(np.int16)).mean() / 255.0)
