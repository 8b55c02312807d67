"""Reference demonstrations for in-context (one-shot) scoring, from a bag or image folder."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np
from vlac_ros.bags import read_messages
from vlac_ros.images import image_to_rgb

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


def sample_uniform(frames: list[np.ndarray], count: int) -> tuple[np.ndarray, ...]:
    """``count`` frames uniformly over the sequence, first and last included."""
    if len(frames) < 2:
        raise ValueError(f'a reference needs at least 2 frames, got {len(frames)}')
    index = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return tuple(frames[i] for i in index)


def _bag_frames(path: pathlib.Path, image_topic: str) -> list[np.ndarray]:
    return [np.array(image_to_rgb(msg, f'reference bag {path} {image_topic}'))
            for _, _, msg in read_messages(path, [image_topic])]


def load_reference(path: str, count: int = 5, image_topic: str = '/camera/image_raw'
                   ) -> tuple[np.ndarray, ...]:
    """Load ``count`` RGB frames of a demonstration: a rosbag2 folder or a folder of images.

    Raises FileNotFoundError (no such folder) or ValueError (nothing usable in it).
    """
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f'reference {folder} is not a directory')
    if (folder / 'metadata.yaml').is_file():
        frames = _bag_frames(folder, image_topic)
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        frames = []
        for file in files:
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f'reference image {file} does not decode')
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if not frames:
        raise ValueError(f'reference {folder}: no frames (bag topic {image_topic!r} or '
                         f'{"/".join(IMAGE_SUFFIXES)} files)')
    return sample_uniform(frames, count)
