"""sensor_msgs Image / CompressedImage <-> numpy without cv_bridge (zs3_core.bags.conversions, zs3_ros.conversions).

The functions read messages by attribute, so the tests use both real rclpy messages and
plain namespaces (what rosbags hands the bag evaluator).
"""
from types import SimpleNamespace

import numpy as np
import pytest

from zs3_core.bags.conversions import ImageConversionError, compressed_to_rgb, image_to_numpy, image_to_rgb
from zs3_ros.conversions import numpy_to_image, rgb_to_compressed

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
RNG = np.random.default_rng(0)


def duck_image(array: np.ndarray, encoding: str, step: int = None, big_endian: bool = False) -> SimpleNamespace:
    """A message-like namespace, padded rows when step > tight row size."""
    h, w = array.shape[:2]
    dtype = array.dtype.newbyteorder(">" if big_endian else "<")
    rows = array.astype(dtype).reshape(h, -1).view(np.uint8)
    step = step or rows.shape[1]
    data = np.zeros((h, step), np.uint8)
    data[:, :rows.shape[1]] = rows
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=step,
                           data=data.reshape(-1))


@pytest.mark.parametrize("encoding, shape, dtype", [
    ("rgb8", (5, 7, 3), np.uint8), ("bgr8", (5, 7, 3), np.uint8), ("rgba8", (5, 7, 4), np.uint8),
    ("bgra8", (5, 7, 4), np.uint8), ("mono8", (5, 7), np.uint8), ("mono16", (5, 7), np.uint16),
    ("32FC1", (5, 7), np.float32),
])
def test_round_trip_through_a_real_image_message(encoding, shape, dtype):
    array = (RNG.random(shape) * 250).astype(dtype)
    msg = numpy_to_image(array, encoding)
    assert isinstance(msg, sensor_msgs.Image)
    assert (msg.height, msg.width, msg.encoding) == (shape[0], shape[1], encoding)
    np.testing.assert_array_equal(image_to_numpy(msg), array)


def test_header_is_carried_over():
    header = sensor_msgs.Image().header
    header.frame_id, header.stamp.sec = "camera", 42
    msg = numpy_to_image(np.zeros((2, 3), np.uint8), "mono8", header)
    assert (msg.header.frame_id, msg.header.stamp.sec) == ("camera", 42)


def test_padded_rows_are_cropped_using_step():
    array = RNG.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_numpy(duck_image(array, "rgb8", step=32)), array)


@pytest.mark.parametrize("big_endian", [False, True])
def test_mono16_honours_is_bigendian(big_endian):
    array = RNG.integers(0, 65535, (3, 4), dtype=np.uint16)
    out = image_to_numpy(duck_image(array, "mono16", big_endian=big_endian))
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint16 and out.dtype.isnative


def test_image_to_rgb_puts_channels_in_rgb_order():
    rgb = RNG.integers(0, 255, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(duck_image(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((4, 6, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(duck_image(bgra, "bgra8")), rgb)
    grey = image_to_rgb(duck_image(rgb[:, :, 0].copy(), "mono8"))
    assert grey.shape == (4, 6, 3) and (grey[:, :, 1] == rgb[:, :, 0]).all()
    depth = image_to_rgb(duck_image(np.full((2, 2), 0.5, np.float32), "32FC1"))
    assert depth.dtype == np.uint8 and depth[0, 0, 0] == 128


def test_data_as_bytes_or_list_is_accepted():
    msg = duck_image(np.arange(6, dtype=np.uint8).reshape(2, 3), "mono8")
    msg.data = bytes(msg.data)
    assert image_to_numpy(msg)[1, 2] == 5
    msg.data = list(msg.data)
    assert image_to_numpy(msg)[1, 2] == 5


@pytest.mark.parametrize("change, reason", [
    (dict(encoding="yuv422_weird"), "unsupported image encoding"),
    (dict(width=0), "zero size"),
    (dict(height=0), "zero size"),
    (dict(step=5), "step 5 is smaller"),
    (dict(step=13), "data has"),                            # step/data mismatch
    (dict(height=100000, width=100000, step=300000), "over the 4 GiB limit"),
    (dict(height=4000, width=4000, step=12000), "data has"),  # claimed size far beyond the data
])
def test_malformed_images_raise_a_specific_error(change, reason):
    msg = duck_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=reason):
        image_to_numpy(msg)


def test_numpy_to_image_rejects_wrong_shapes_and_dtypes():
    with pytest.raises(ImageConversionError, match="shape"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype"):
        numpy_to_image(np.zeros((2, 2), np.float64), "32FC1")


def test_png_compression_is_lossless_and_jpeg_is_close():
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 30, 30)
    rgb[:, 24:] = (30, 30, 200)
    png = rgb_to_compressed(rgb, "png")
    assert isinstance(png, sensor_msgs.CompressedImage) and "png" in png.format
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)
    jpeg = compressed_to_rgb(rgb_to_compressed(rgb, "jpeg"))
    assert jpeg.shape == rgb.shape and np.abs(jpeg.astype(int) - rgb).mean() < 5


def test_undecodable_compressed_images_raise():
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"not a jpeg at all"))
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_rgb(SimpleNamespace(format="png", data=b""))
