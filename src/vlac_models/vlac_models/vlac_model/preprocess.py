"""Image preprocessing of the VLAC checkpoints, with numpy and torch only (no PIL, no torchvision).

What the public inference code does to every frame, and this module reproduces:

1. ``GAC_model._process_image_to_pil``: convert to RGB, resize to 448x448 with PIL's LANCZOS
   filter (aspect ratio not kept, no crop);
2. swift's InternVL ``transform_image`` with ``max_num=12``: a 448x448 square image is a single
   tile (no thumbnail), its bicubic resize to 448x448 is the identity, then ``ToTensor`` (/255)
   and ``Normalize`` with the ImageNet mean and std.

``resize_lanczos`` is a re-implementation of PIL's 8-bit two-pass resampling (horizontal pass,
then vertical; Lanczos-3 kernel widened by the downscale factor; 22-bit fixed-point
coefficients; 32-bit integer accumulation, rounding and clipping to uint8 after each pass), so
the result equals PIL's bit for bit (checked against PIL in the tests when PIL is installed).
A frame that already has the target size is returned unchanged, as PIL does.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch

IMAGE_SIZE = 448
"""Side of the square model input, pixels."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_PRECISION_BITS = 32 - 8 - 2
_LANCZOS_SUPPORT = 3.0


def _sinc(x: np.ndarray) -> np.ndarray:
    out = np.ones_like(x)
    nonzero = x != 0.0
    px = x[nonzero] * math.pi
    out[nonzero] = np.sin(px) / px
    return out


def _lanczos(x: np.ndarray) -> np.ndarray:
    inside = (x >= -_LANCZOS_SUPPORT) & (x < _LANCZOS_SUPPORT)
    return np.where(inside, _sinc(x) * _sinc(x / 3.0), 0.0)


@functools.lru_cache(maxsize=16)
def _coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices (out, k) and 22-bit fixed-point int32 weights (out, k) of one pass."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    inv = 1.0 / filterscale
    indices = np.zeros((out_size, ksize), np.intp)
    weights = np.zeros((out_size, ksize), np.int32)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - xmin
        taps = np.arange(count)
        k = _lanczos((taps + xmin - center + 0.5) * inv)
        total = k.sum()
        if total != 0.0:
            k = k / total
        fixed = np.where(k < 0, np.trunc(-0.5 + k * (1 << _PRECISION_BITS)),
                         np.trunc(0.5 + k * (1 << _PRECISION_BITS)))
        indices[xx, :count] = xmin + taps
        weights[xx, :count] = fixed.astype(np.int32)
    indices.setflags(write=False)
    weights.setflags(write=False)
    return indices, weights


def _resample_rows(image: np.ndarray, out_size: int) -> np.ndarray:
    """One PIL resampling pass along axis 0 of a C-contiguous (N, M, C) int32 image.

    int32 accumulation with a rounding offset and an arithmetic shift, as PIL's C code does
    (its accumulator is a 32-bit int too), so the result is bit-identical.
    """
    indices, weights = _coefficients(image.shape[0], out_size)
    acc = np.full((out_size,) + image.shape[1:], 1 << (_PRECISION_BITS - 1), np.int32)
    for k in range(indices.shape[1]):
        acc += image[indices[:, k]] * weights[:, k][:, None, None]
    acc >>= _PRECISION_BITS
    np.clip(acc, 0, 255, out=acc)
    return acc


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Return ``frame`` if it is an (H, W, 3) uint8 RGB array; ValueError otherwise."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f'a frame must be a numpy array, got {type(frame).__name__}')
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f'a frame must be (H, W, 3) uint8 RGB, got shape {frame.shape} dtype {frame.dtype}')
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f'empty frame of shape {frame.shape}')
    return frame


def resize_lanczos(frame: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize an (H, W, 3) uint8 frame to (size, size, 3) uint8 as PIL's LANCZOS resize does."""
    check_frame(frame)
    if frame.shape[:2] == (size, size):
        return frame.copy()
    # Work on row-contiguous layouts: the columns pass runs on the transposed image.
    out = np.ascontiguousarray(frame.transpose(1, 0, 2), dtype=np.int32)
    if out.shape[0] != size:
        out = _resample_rows(out, size)
    out = np.ascontiguousarray(out.transpose(1, 0, 2))
    if out.shape[0] != size:
        out = _resample_rows(out, size)
    return out.astype(np.uint8)


def normalize(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, ``(x / 255 - mean) / std`` per channel."""
    check_frame(frame)
    chw = frame.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    return (chw - mean) / std


def preprocess_frame(frame: np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """One frame -> one normalised tile, float32 tensor (3, size, size)."""
    return torch.from_numpy(normalize(resize_lanczos(frame, size)))


def preprocess_frames(frames: Sequence[np.ndarray], size: int = IMAGE_SIZE) -> torch.Tensor:
    """Frames in order -> float32 tensor (N, 3, size, size), one tile per frame."""
    if len(frames) == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.float32)
    return torch.stack([preprocess_frame(frame, size) for frame in frames])
