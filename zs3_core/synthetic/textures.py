"""Textured backgrounds: clutter the model must learn to ignore (label 255, like VOC).

Backgrounds are kept low in saturation so that an object's colour stays its defining
attribute, but they carry noise, stripes and gradients so that 'not uniform' never means
'object'.
"""
from __future__ import annotations

import cv2
import numpy as np

TEXTURES = ("noise", "stripes", "gradient", "checker")

_MAX_TINT = 18  # per-channel offset from grey: a hint of colour, never a class colour


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs / max(w - 1, 1), ys / max(h - 1, 1)


def _pattern(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 pattern in [-1, 1]."""
    xs, ys = _grid(h, w)
    theta = rng.uniform(0, np.pi)
    along = xs * np.cos(theta) + ys * np.sin(theta)
    if kind == "noise":
        coarse = rng.standard_normal((max(h // 8, 2), max(w // 8, 2))).astype(np.float32)
        smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(smooth / 2.5, -1, 1)
    if kind == "stripes":
        return np.sin(2 * np.pi * rng.uniform(3, 10) * along + rng.uniform(0, 2 * np.pi))
    if kind == "gradient":
        return 2 * (along - along.min()) / max(float(np.ptp(along)), 1e-6) - 1
    if kind == "checker":
        cells = rng.integers(3, 9)
        return np.where((np.floor(xs * cells) + np.floor(ys * cells)) % 2 == 0, 1.0, -1.0
                        ).astype(np.float32)
    raise ValueError(f"unknown texture {kind!r}; known textures: {', '.join(TEXTURES)}")


def background(image_size: tuple[int, int], rng: np.random.Generator,
               kinds: tuple[str, ...] = TEXTURES) -> np.ndarray:
    """(H, W, 3) uint8 RGB low-saturation textured background."""
    h, w = image_size
    kind = kinds[rng.integers(len(kinds))]
    base = rng.uniform(70, 190)
    contrast = rng.uniform(15, 55)
    tint = rng.uniform(-_MAX_TINT, _MAX_TINT, size=3)
    grey = base + contrast * _pattern(kind, h, w, rng)
    img = grey[..., None] + tint + rng.normal(0, 4, size=(h, w, 1))
    return np.clip(img, 0, 255).astype(np.uint8)
