"""The picture a person looks at: a frame with the critic's progress drawn on it (ROS-free).

``draw_progress`` is what ``vlac_reward_node`` publishes on ``~/debug_image`` for every scored
frame, and what the demo report's frame strip shows: the frame, the episode's value curve so
far in a white band at the bottom, and a label with value, delta and done probability (green
and DONE once the critic declares the task done).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

BAND = 0.25
"""Share of the picture's height taken by the value curve."""


def draw_progress(rgb: np.ndarray, values: Sequence[float], value: float, delta: float,
                  done_probability: float, done: bool, size: int = 320) -> np.ndarray:
    """A ``size`` x ``size`` RGB uint8 picture of ``rgb`` with the progress drawn on it.

    ``values`` is the episode's value curve up to this frame (0..1, oldest first; the last
    120 are drawn). ValueError for an image that is not (H, W, 3) uint8.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or not rgb.size:
        raise ValueError(f'expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}')
    canvas = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    band = max(20, int(size * BAND))
    cv2.rectangle(canvas, (0, size - band), (size, size), (255, 255, 255), -1)
    curve = [float(np.clip(v, 0.0, 1.0)) for v in list(values)[-120:]]
    if len(curve) > 1:
        points = np.array([[int(i * (size - 1) / (len(curve) - 1)),
                            int(size - 1 - v * (band - 4))] for i, v in enumerate(curve)],
                          np.int32)
        cv2.polylines(canvas, [points], False, (30, 120, 220), 2)
    colour = (0, 170, 0) if done else (200, 60, 0)
    label = (f'v={value:.2f} d={delta:+.2f} p={done_probability:.2f}'
             + (' DONE' if done else ''))
    cv2.putText(canvas, label, (4, size - band - 2), cv2.FONT_HERSHEY_SIMPLEX,
                0.45 * size / 320, colour, 1, cv2.LINE_AA)
    return canvas
