"""numpy -> sensor_msgs Image / CompressedImage for publishing from the node.

The conversions themselves are ROS-free and live in `zs3_core.bags.conversions` (bags and
the node share them); this module only supplies rclpy's message classes as the type to fill.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from zs3_core.bags import conversions


def numpy_to_image(array: np.ndarray, encoding: str, header: Any = None,
                   msg_type: Callable[[], Any] = Image) -> Any:
    """(H, W) or (H, W, C) array → sensor_msgs/Image; see `conversions.numpy_to_image`."""
    return conversions.numpy_to_image(array, encoding, header, msg_type=msg_type)


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Any = None,
                      msg_type: Callable[[], Any] = CompressedImage, quality: int = 90) -> Any:
    """(H, W, 3) uint8 RGB → sensor_msgs/CompressedImage; see `conversions.rgb_to_compressed`."""
    return conversions.rgb_to_compressed(rgb, fmt, header, msg_type=msg_type, quality=quality)
