"""Training augmentation and test-time resizing, as the mmsegmentation pipelines of ZegCLIP,
zsseg and DeOP do them (random scale 0.5–2.0, 512 crop, flip, photometric distortion).

Everything works on numpy (H, W, 3) uint8 RGB images and (H, W) uint8 label maps with an
explicit `numpy.random.Generator`, so one sample's augmentation depends only on its seed —
not on the worker, the process or the rank that loads it (DDP and --resume rely on that).
Label maps are resized with nearest neighbour and padded with the ignore index, so no
augmentation ever invents a class.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from zs3_core.datasets.splits import IGNORE_INDEX


def keep_ratio_scale(height: int, width: int, long_side: float, short_side: float) -> float:
    """Largest factor that fits the image inside (long_side, short_side) — mmcv's keep_ratio rule."""
    return min(long_side / max(height, width), short_side / min(height, width))


def resize(image: np.ndarray, label: np.ndarray | None, scale: float):
    """Bilinear image, nearest-neighbour label, both by `scale`."""
    h, w = image.shape[:2]
    size = (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    return image, label


def random_rescale(image, label, rng: np.random.Generator, crop_size: int,
                   scale_range: tuple[float, float]):
    """mmseg `Resize(img_scale=(4·crop, crop), ratio_range)`: short side ≈ crop · U(range)."""
    ratio = rng.uniform(*scale_range)
    scale = keep_ratio_scale(*image.shape[:2], 4 * crop_size * ratio, crop_size * ratio)
    return resize(image, label, scale)


def random_crop(image, label, rng: np.random.Generator, crop_size: int,
                ignore_index: int = IGNORE_INDEX, cat_max_ratio: float = 0.75, tries: int = 10):
    """Crop at most crop_size × crop_size; retry (mmseg) while one class fills > cat_max_ratio."""
    h, w = label.shape
    ch, cw = min(crop_size, h), min(crop_size, w)
    for _ in range(tries):
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = label[y:y + ch, x:x + cw]
        counts = np.bincount(crop[crop != ignore_index].ravel(), minlength=1)
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def pad_to(image, label, size: int, pad_rgb: tuple[int, int, int], ignore_index: int = IGNORE_INDEX):
    """Pad bottom/right to size × size; padded pixels are the mean colour and ignored."""
    h, w = label.shape
    if h >= size and w >= size:
        return image, label
    out_image = np.empty((max(h, size), max(w, size), 3), dtype=image.dtype)
    out_image[:] = np.asarray(pad_rgb, dtype=image.dtype)
    out_image[:h, :w] = image
    out_label = np.full(out_image.shape[:2], ignore_index, dtype=label.dtype)
    out_label[:h, :w] = label
    return out_image, out_label


def random_flip(image, label, rng: np.random.Generator, p: float = 0.5):
    if rng.random() < p:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def photometric_distortion(image: np.ndarray, rng: np.random.Generator,
                           brightness_delta: int = 32, contrast=(0.5, 1.5),
                           saturation=(0.5, 1.5), hue_delta: int = 18) -> np.ndarray:
    """mmseg `PhotoMetricDistortion`: brightness, contrast (before or after the colour
    changes, at random), saturation and hue, each applied with probability 0.5."""
    img = image.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-brightness_delta, brightness_delta)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img *= rng.uniform(*contrast)
    hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    if rng.random() < 0.5:
        hsv[..., 1] *= rng.uniform(*saturation)
    if rng.random() < 0.5:  # OpenCV's uint8 hue runs 0..179
        hsv[..., 0] = (hsv[..., 0] + rng.integers(-hue_delta, hue_delta + 1)) % 180
    img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        img *= rng.uniform(*contrast)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class TrainAugmentation:
    """Rescale → crop → flip → photometric → pad, returning crop_size × crop_size samples."""

    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    ignore_index: int = IGNORE_INDEX
    pad_rgb: tuple[int, int, int] = (124, 116, 104)  # ≈ ImageNet mean: 0 after normalisation
    photometric: bool = True   # off where colour names the class (the synthetic world's "red ...")

    def __call__(self, image, label, rng: np.random.Generator):
        image, label = random_rescale(image, label, rng, self.crop_size, self.scale_range)
        image, label = random_crop(image, label, rng, self.crop_size, self.ignore_index)
        image, label = random_flip(image, label, rng)
        if self.photometric:
            image = photometric_distortion(image, rng)
        return pad_to(image, label, self.crop_size, self.pad_rgb, self.ignore_index)


def resize_for_eval(image: np.ndarray, crop_size: int) -> np.ndarray:
    """Test-time resize (ZegCLIP: img_scale (2048, 512), keep ratio): short side → crop_size."""
    scale = keep_ratio_scale(*image.shape[:2], 4 * crop_size, crop_size)
    return resize(image, None, scale)[0]


def to_tensor(image: np.ndarray, mean, std) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (3, H, W) float32 normalised with per-channel mean/std (0–255 scale)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
