"""Image conversion between sensor_msgs/Image and numpy (the no-cv_bridge converter)."""

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vlac_ros.images import (
    ACCEPTED_ENCODINGS,
    ImageEncodingError,
    compressed_to_numpy,
    image_to_numpy,
    image_to_rgb,
    numpy_to_image,
    rgb_to_compressed,
)

from vlac_ros import images

RNG = np.random.default_rng(0)


def _array(encoding, h=5, w=7):
    dtype, channels = ACCEPTED_ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


@pytest.fixture(autouse=True)
def without_cv_bridge(monkeypatch):
    """Exercise this module's own converter even on a machine that has cv_bridge."""
    monkeypatch.setattr(images, '_CvBridge', None)


@pytest.mark.parametrize('encoding', sorted(ACCEPTED_ENCODINGS))
def test_round_trip_every_accepted_encoding(encoding):
    array = _array(encoding)
    header = Header(frame_id='camera_color_optical_frame')
    msg = numpy_to_image(array, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    assert msg.header.frame_id == 'camera_color_optical_frame'
    back = image_to_numpy(msg)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_receive_is_zero_copy_and_read_only():
    msg = numpy_to_image(_array('rgb8', 224, 224), 'rgb8')
    view = image_to_numpy(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    assert not view.flags.writeable
    assert np.shares_memory(image_to_rgb(msg), np.frombuffer(msg.data, np.uint8))


def test_padded_rows_are_honoured_without_copy():
    array = _array('rgb8', 4, 3)
    padded = np.zeros((4, 16), np.uint8)
    padded[:, :9] = array.reshape(4, 9)
    msg = Image(height=4, width=3, encoding='rgb8', step=16, data=padded.tobytes())
    view = image_to_numpy(msg)
    np.testing.assert_array_equal(view, array)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))


def test_big_endian_depth_is_swapped():
    depth = np.array([[1, 2], [258, 65535]], np.uint16)
    msg = Image(height=2, width=2, encoding='16UC1', step=4, is_bigendian=1,
                data=depth.astype('>u2').tobytes())
    back = image_to_numpy(msg)
    np.testing.assert_array_equal(back, depth)
    assert back.dtype == np.dtype(np.uint16)


@pytest.mark.parametrize('encoding,expected', [
    ('bgr8', lambda a: a[..., ::-1]),
    ('rgba8', lambda a: a[..., :3]),
    ('bgra8', lambda a: a[..., 2::-1]),
    ('mono8', lambda a: np.repeat(a[..., None], 3, axis=2)),
])
def test_to_rgb(encoding, expected):
    array = _array(encoding)
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(array, encoding)), expected(array))


@pytest.mark.parametrize('msg,match', [
    (Image(height=2, width=2, encoding='yuv422', step=4, data=bytes(8)), 'unsupported'),
    (Image(height=0, width=2, encoding='rgb8', step=6), 'empty'),
    (Image(height=2, width=2, encoding='rgb8', step=5, data=bytes(10)), 'step 5'),
    (Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(11)), 'has 11 bytes'),
    (Image(), 'unsupported'),
])
def test_malformed_images_raise_clear_errors(msg, match):
    with pytest.raises(ImageEncodingError, match=match):
        image_to_numpy(msg)


def test_depth_has_no_rgb_form():
    with pytest.raises(ImageEncodingError, match='depth'):
        image_to_rgb(numpy_to_image(_array('16UC1'), '16UC1'))


@pytest.mark.parametrize('array,encoding,match', [
    (np.zeros((2, 2, 3), np.uint8), 'nv12', 'unsupported'),
    (np.zeros((2, 2), np.uint8), 'rgb8', 'does not fit'),
    (np.zeros((2, 2, 3), np.float32), 'rgb8', 'dtype'),
    (np.zeros((0, 2, 3), np.uint8), 'rgb8', 'empty'),
])
def test_bad_arrays_raise(array, encoding, match):
    with pytest.raises(ImageEncodingError, match=match):
        numpy_to_image(array, encoding)


def test_compressed_png_round_trip_is_exact_and_jpeg_close():
    rgb = _array('rgb8', 32, 48)
    np.testing.assert_array_equal(compressed_to_numpy(rgb_to_compressed(rgb, 'png')), rgb)
    smooth = np.tile(np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None], (32, 1, 3))
    decoded = compressed_to_numpy(rgb_to_compressed(smooth, 'jpeg'))
    assert decoded.shape == smooth.shape
    assert np.abs(decoded.astype(int) - smooth).mean() < 3


def test_corrupt_compressed_image_raises():
    with pytest.raises(ImageEncodingError, match='does not decode'):
        compressed_to_numpy(CompressedImage(format='jpeg', data=b'not a jpeg'))
    with pytest.raises(ImageEncodingError, match='empty'):
        compressed_to_numpy(CompressedImage(format='jpeg'))
