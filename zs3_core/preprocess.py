"""Camera image → model input, and model output → image-sized maps."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F


class ImageInputError(ValueError):
    """The image handed to the segmenter is not an HxWx3 uint8 array."""


def check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageInputError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageInputError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ImageInputError(f"expected uint8 pixels, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageInputError(f"image has no pixels: shape {image.shape}")
    return image


def to_model_input(rgb: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (1, 3, size, size) float32, normalised with pixel-scale mean/std.

    The whole frame is resized to the square model input (no crop: a robot needs labels for
    every pixel); the labels are resized back to the frame afterwards.
    """
    check_rgb(rgb)
    h, w = rgb.shape[:2]
    interpolation = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (size, size), interpolation=interpolation) if (h, w) != (size, size) else rgb
    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean_t) / std_t).unsqueeze(0)


def upsample_probabilities(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(1, C, h, w) → (C, H, W) bilinear; class maps stay aligned with the input frame."""
    if probs.shape[-2:] != (height, width):
        probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
    return probs[0]
