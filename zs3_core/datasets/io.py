"""Reading dataset images and label maps from disk.

Label PNGs hold class indices, either as grayscale (SBD `SegmentationClassAug`, COCO-Stuff
`stuffthingmaps`) or as palette images (VOC `SegmentationClass`). OpenCV expands palette
PNGs to colours, so labels go through Pillow, which returns the indices.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class DatasetFileError(OSError):
    """An image or label file is missing, unreadable, or not in the expected format."""


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFileError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """(H, W) uint8 label map of raw class indices as stored in the PNG."""
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with matplotlib ([train] extra); OpenCV is the fallback
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None:
            raise DatasetFileError(f"cannot read label map {path}") from None
    else:
        try:
            with Image.open(path) as img:
                if img.mode not in ("P", "L", "I", "I;16"):
                    raise DatasetFileError(f"label map {path} has mode {img.mode}; expected class "
                                           "indices (grayscale or palette PNG), not colours")
                label = np.array(img)
        except (FileNotFoundError, OSError) as err:
            if isinstance(err, DatasetFileError):
                raise
            raise DatasetFileError(f"cannot read label map {path}: {err}") from None
    if label.ndim != 2:
        raise DatasetFileError(f"label map {path} has {label.shape[2]} channels; expected one "
                               "channel of class indices")
    if label.max(initial=0) > 255:
        raise DatasetFileError(f"label map {path} has values above 255")
    return label.astype(np.uint8)


def check_same_size(image: np.ndarray, label: np.ndarray, name: str) -> None:
    if image.shape[:2] != label.shape:
        raise DatasetFileError(f"{name}: image is {image.shape[1]}x{image.shape[0]} but its label "
                               f"map is {label.shape[1]}x{label.shape[0]}")
