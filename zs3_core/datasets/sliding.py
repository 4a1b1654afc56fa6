"""Full-resolution prediction from a fixed-input-size model: sliding windows or one resize.

Models with baked-in positional embeddings take exactly S × S inputs (TensorRT engines too),
so an image larger than the window is covered by overlapping S × S windows (ZegCLIP: stride
426 at S = 512) whose probabilities are averaged; windows hanging over the edge are padded
with 0 (the mean colour after normalisation) and their padding is cut from the output.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Predict = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, S, S) → (B, C, h, w) probabilities


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets covering [0, length) with windows of `window`, the last one flush with the end."""
    if length <= window:
        return [0]
    count = (length - window + stride - 1) // stride + 1
    return sorted({min(i * stride, length - window) for i in range(count)})


def slide_predict(predict: Predict, image: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """(1, 3, H, W) normalised image → (1, C, H, W) probabilities averaged over windows."""
    if stride <= 0 or stride > window:
        raise ValueError(f"slide stride must be in 1..{window}, got {stride}")
    _, _, height, width = image.shape
    total = count = None
    for y in window_starts(height, window, stride):
        for x in window_starts(width, window, stride):
            crop = image[:, :, y:y + window, x:x + window]
            h, w = crop.shape[-2:]
            crop = F.pad(crop, (0, window - w, 0, window - h))
            probs = F.interpolate(predict(crop), size=(window, window), mode="bilinear",
                                  align_corners=False)[:, :, :h, :w]
            if total is None:
                total = image.new_zeros((1, probs.shape[1], height, width))
                count = image.new_zeros((1, 1, height, width))
            total[:, :, y:y + h, x:x + w] += probs
            count[:, :, y:y + h, x:x + w] += 1
    return total / count


def whole_predict(predict: Predict, image: torch.Tensor, window: int) -> torch.Tensor:
    """(1, 3, H, W) → (1, C, H, W): resize to window × window, predict, resize back."""
    size = image.shape[-2:]
    probs = predict(F.interpolate(image, size=(window, window), mode="bilinear", align_corners=False))
    return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
