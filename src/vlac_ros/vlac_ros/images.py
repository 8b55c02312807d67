"""Conversion between sensor_msgs/Image (and CompressedImage) and numpy arrays.

The stack accepts the encodings in ``ACCEPTED_ENCODINGS``. Every message is validated here
(encoding, dimensions, step, data length) before conversion, so a malformed frame raises
``ImageEncodingError`` with the reason instead of crashing a node or yielding a garbled array.

Conversion uses cv_bridge where it is installed (ROS machines from apt). Where it is not (the
PyPI wheels have no usable cv_bridge), a small converter in this module does the same job; on
receive it is zero-copy: the returned array is a read-only view of the message's buffer.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

try:  # cv_bridge exists on ROS machines from apt; the PyPI world has no usable one.
    from cv_bridge import CvBridge as _CvBridge
except ImportError:  # pragma: no cover - depends on the machine
    _CvBridge = None

# encoding -> (numpy dtype, channels)
ACCEPTED_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4),
    'bgra8': (np.dtype(np.uint8), 4),
    'mono8': (np.dtype(np.uint8), 1),
    '16UC1': (np.dtype(np.uint16), 1),
}

# OpenCV conversion codes from each colour encoding to RGB.
_TO_RGB = {
    'bgr8': 'COLOR_BGR2RGB',
    'rgba8': 'COLOR_RGBA2RGB',
    'bgra8': 'COLOR_BGRA2RGB',
    'mono8': 'COLOR_GRAY2RGB',
}


class ImageEncodingError(ValueError):
    """A sensor_msgs/Image or CompressedImage the stack cannot use, with the reason."""


def _bridge(msg):
    # cv_bridge converts rclpy messages only; bag messages (rosbags) take the numpy path.
    return _CvBridge() if _CvBridge is not None and isinstance(msg, Image) else None


def validate_image(msg: Image) -> tuple[np.dtype, int]:
    """Check a sensor_msgs/Image for use by the stack; return (dtype, channels).

    Raises ImageEncodingError naming the bad field: unknown encoding, zero size, a step
    shorter than one row, or data shorter than height * step.
    """
    spec = ACCEPTED_ENCODINGS.get(msg.encoding)
    if spec is None:
        raise ImageEncodingError(
            f'unsupported image encoding {msg.encoding!r}; accepted: '
            f'{", ".join(ACCEPTED_ENCODINGS)}')
    dtype, channels = spec
    if msg.height == 0 or msg.width == 0:
        raise ImageEncodingError(f'empty image: {msg.width}x{msg.height}')
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ImageEncodingError(
            f'step {msg.step} is shorter than one {msg.encoding} row of width {msg.width} '
            f'({row_bytes} bytes)')
    needed = msg.height * msg.step
    if len(msg.data) < needed:
        raise ImageEncodingError(
            f'image data has {len(msg.data)} bytes, {msg.width}x{msg.height} {msg.encoding} '
            f'with step {msg.step} needs {needed}')
    return dtype, channels


def image_to_numpy(msg: Image) -> np.ndarray:
    """Return the pixels of a sensor_msgs/Image as an array in the message's own encoding.

    Shape (H, W, C) for colour encodings, (H, W) for mono8 and 16UC1. Without cv_bridge the
    array is a read-only view of ``msg.data`` (no copy), except for big-endian 16UC1 data,
    which is byte-swapped into a native copy. Raises ImageEncodingError for unusable messages.
    """
    dtype, channels = validate_image(msg)
    bridge = _bridge(msg)
    if bridge is not None:
        return bridge.imgmsg_to_cv2(msg, desired_encoding='passthrough')
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=msg.height * msg.step)
    rows = buf.reshape(msg.height, msg.step)[:, :msg.width * channels * dtype.itemsize]
    pixels = rows.view(dtype.newbyteorder('>') if msg.is_bigendian else dtype)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    pixels = pixels.reshape(shape)
    if msg.is_bigendian and dtype.itemsize > 1:
        pixels = pixels.astype(dtype)
    pixels.flags.writeable = False
    return pixels


def image_to_rgb(msg: Image, where: str = '') -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB array for any accepted colour or mono8 image.

    The one image decoder of the stack: live messages (rclpy) and bag messages (rosbags) alike.
    rgb8 comes back as a zero-copy, read-only view; other encodings are converted (a new
    array). 16UC1 (depth) is not a colour image and raises ImageEncodingError. ``where`` (a
    bag and topic, say) is added to the error message.
    """
    try:
        if msg.encoding == '16UC1':
            raise ImageEncodingError('16UC1 is a depth image; it has no RGB form')
        pixels = image_to_numpy(msg)
    except ImageEncodingError as err:
        if where:
            raise ImageEncodingError(f'{err} (in {where})') from err
        raise
    if msg.encoding == 'rgb8':
        return pixels
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(pixels), getattr(cv2, _TO_RGB[msg.encoding]))


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Build a sensor_msgs/Image from an array laid out as ``encoding`` says.

    (H, W, C) uint8 for the colour encodings, (H, W) uint8 for mono8, (H, W) uint16 for
    16UC1. The data is packed (step = width * bytes per pixel), little-endian.
    """
    spec = ACCEPTED_ENCODINGS.get(encoding)
    if spec is None:
        raise ImageEncodingError(
            f'unsupported image encoding {encoding!r}; accepted: {", ".join(ACCEPTED_ENCODINGS)}')
    dtype, channels = spec
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ImageEncodingError(
            f'array of shape {array.shape} does not fit {encoding} ({channels} channel(s))')
    if array.dtype != dtype:
        raise ImageEncodingError(f'array dtype {array.dtype} does not fit {encoding} ({dtype})')
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageEncodingError(f'empty array of shape {array.shape}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(array, dtype=dtype.newbyteorder('<')).tobytes()
    return msg


def compressed_to_numpy(msg: CompressedImage) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg or png) to an (H, W, 3) uint8 RGB array."""
    import cv2

    if len(msg.data) == 0:
        raise ImageEncodingError('empty compressed image')
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageEncodingError(
            f'compressed image (format {msg.format!r}, {len(msg.data)} bytes) does not decode')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(rgb: np.ndarray, fmt: str = 'jpeg',
                      header: Header | None = None) -> CompressedImage:
    """Encode an (H, W, 3) uint8 RGB array as a sensor_msgs/CompressedImage (jpeg or png)."""
    import cv2

    if fmt not in ('jpeg', 'png'):
        raise ImageEncodingError(f'unsupported compressed format {fmt!r}; use jpeg or png')
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageEncodingError(f'expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}')
    ok, encoded = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png',
                               cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageEncodingError(f'OpenCV could not encode a {rgb.shape} image as {fmt}')
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f'rgb8; {fmt} compressed bgr8'
    msg.data = encoded.tobytes()
    return msg
