"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge and without ROS.

cv_bridge has no ROS 2 wheel and its PyPI namesake breaks with numpy 2, so conversion is
done here with numpy (raw images, honouring ``step`` and ``is_bigendian``) and OpenCV
(compressed images). Every function reads messages by attribute only (``height``,
``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``; ``format`` and ``data`` for
compressed images), so rclpy messages, rosbags-deserialised messages and plain
namespaces all work; writing builds whatever message type the caller passes as ``msg_type``
(a rosbags typestore class, ``types.SimpleNamespace``; `zs3_ros.conversions` passes
sensor_msgs' classes). Malformed input raises :class:`ImageConversionError` with a message
that says what is wrong, never a numpy reshape error.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "ImageConversionError",
    "ENCODINGS",
    "image_to_numpy",
    "image_to_rgb",
    "numpy_to_image",
    "compressed_to_rgb",
    "rgb_to_compressed",
]


class ImageConversionError(ValueError):
    """A message cannot be converted: malformed, truncated or an unsupported encoding."""


@dataclass(frozen=True)
class _Encoding:
    dtype: np.dtype   # element type, native byte order
    channels: int


ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(np.dtype(np.uint8), 3),
    "bgr8": _Encoding(np.dtype(np.uint8), 3),
    "rgba8": _Encoding(np.dtype(np.uint8), 4),
    "bgra8": _Encoding(np.dtype(np.uint8), 4),
    "mono8": _Encoding(np.dtype(np.uint8), 1),
    "8UC1": _Encoding(np.dtype(np.uint8), 1),
    "mono16": _Encoding(np.dtype(np.uint16), 1),
    "16UC1": _Encoding(np.dtype(np.uint16), 1),
    "32FC1": _Encoding(np.dtype(np.float32), 1),
}

# A claimed image larger than this is rejected before any allocation (4 GiB).
_MAX_BYTES = 1 << 32
_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


def _buffer(data: Any) -> np.ndarray:
    """The message's data field as a flat uint8 array, without copying where possible."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints (e.g. from YAML or a hand-built message)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image → array of shape (H, W) or (H, W, C) in native byte order.

    Channels are returned as encoded (bgr8 stays BGR); use :func:`image_to_rgb` for the
    segmenter's input. The result may share memory with ``msg.data``: copy before writing.
    """
    encoding = str(msg.encoding)
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has zero size ({width}x{height})")
    row_bytes = width * spec.channels * spec.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than one row of {width} {encoding} pixels ({row_bytes} bytes)")
    claimed = step * height
    if claimed > _MAX_BYTES:
        raise ImageConversionError(f"image claims {claimed} bytes ({width}x{height}, step {step}), over the 4 GiB limit")
    buf = _buffer(msg.data)
    # The last row needs only row_bytes, but ROS publishers always send step * height.
    if buf.size != claimed:
        raise ImageConversionError(
            f"data has {buf.size} bytes but step {step} x height {height} = {claimed}")
    rows = buf.reshape(height, step)[:, :row_bytes]
    if not rows.flags.c_contiguous:
        rows = np.ascontiguousarray(rows)
    dtype = spec.dtype
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if bool(msg.is_bigendian) else "<")
    array = rows.view(dtype).reshape(height, width, spec.channels)
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _NATIVE_BIG_ENDIAN:
        array = array.astype(spec.dtype)  # byte-swap into native order
    return array[:, :, 0] if spec.channels == 1 else array


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image → (H, W, 3) uint8 RGB, the segmenter's input.

    mono16 is scaled by 1/256 and 32FC1 is read as intensity in [0, 1]; grey is replicated
    over the three channels and alpha is dropped.
    """
    array = image_to_numpy(msg)
    encoding = str(msg.encoding)
    if encoding == "rgb8":
        return array
    if encoding == "bgr8":
        return np.ascontiguousarray(array[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(array[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(array[:, :, 2::-1])
    if array.dtype == np.uint16:
        grey = (array >> 8).astype(np.uint8)
    elif array.dtype == np.float32:
        grey = (np.nan_to_num(np.clip(array, 0.0, 1.0)) * 255.0 + 0.5).astype(np.uint8)
    else:
        grey = array
    return np.repeat(grey[:, :, None], 3, axis=2)


def numpy_to_image(array: np.ndarray, encoding: str, header: Any = None, *,
                   msg_type: Callable[[], Any]) -> Any:
    """(H, W) or (H, W, C) array → ``msg_type()`` filled as a sensor_msgs/Image with ``header``.

    The data is written in native byte order with a tight ``step``.
    """
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}")
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != spec.channels:
        raise ImageConversionError(
            f"{encoding} needs shape (H, W{', %d' % spec.channels if spec.channels > 1 else ''}), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageConversionError(f"image has zero size ({array.shape[1]}x{array.shape[0]})")
    if array.dtype != spec.dtype:
        raise ImageConversionError(f"{encoding} needs dtype {spec.dtype}, got {array.dtype}")
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = _NATIVE_BIG_ENDIAN
    msg.step = int(array.shape[1] * spec.channels * spec.dtype.itemsize)
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) → (H, W, 3) uint8 RGB."""
    import cv2

    buf = _buffer(msg.data)
    if buf.size == 0:
        raise ImageConversionError(f"compressed image ({getattr(msg, 'format', '?')!r}) has no data")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageConversionError(
            f"OpenCV cannot decode the compressed image (format {getattr(msg, 'format', '?')!r}, {buf.size} bytes)")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Any = None, *,
                      msg_type: Callable[[], Any], quality: int = 90) -> Any:
    """(H, W, 3) uint8 RGB → ``msg_type()`` filled as a sensor_msgs/CompressedImage.

    ``format`` follows image_transport: ``"rgb8; jpeg compressed bgr8"``.
    """
    import cv2

    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt.lower())
    if ext is None:
        raise ImageConversionError(f"unsupported compression {fmt!r}; expected jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(np.asarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = msg_type()
    if header is not None:
        msg.header = header
    # The image_transport convention: "<original encoding>; <codec> compressed <stored encoding>".
    msg.format = f"rgb8; {'jpeg' if ext == '.jpg' else 'png'} compressed bgr8"
    msg.data = encoded.tobytes()
    return msg
