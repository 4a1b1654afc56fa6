"""Shape masks drawn with OpenCV: the 'shape' half of every synthetic class.

Each shape is drawn as a filled binary mask from a centre, a size (the diameter of its
circumscribed circle, in pixels) and a rotation, so one code path serves still scenes and
the moving camera stream.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle", "ring", "cross", "star")

_RING_INNER = 0.55   # inner radius / outer radius: a visible hole, still a thick band
_CROSS_ARM = 0.36    # arm width / size
_STAR_INNER = 0.45   # inner vertex radius / outer radius


class UnknownShapeError(ValueError):
    """A shape name that this module cannot draw."""


def _regular_polygon(n: int, radius: float, angle: float) -> np.ndarray:
    """(n, 2) float vertices around the origin, the first pointing up at angle 0."""
    t = angle - math.pi / 2 + np.arange(n) * 2 * math.pi / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star(radius: float, angle: float) -> np.ndarray:
    outer = _regular_polygon(5, radius, angle)
    inner = _regular_polygon(5, radius * _STAR_INNER, angle + math.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(10, 2)


def _cross(radius: float, angle: float) -> np.ndarray:
    a, w = radius, radius * _CROSS_ARM
    pts = np.array([(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a),
                    (-w, w), (-a, w), (-a, -w), (-w, -w)], dtype=np.float64)
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def shape_mask(shape: str, center: tuple[float, float], size: float, angle: float,
               image_size: tuple[int, int]) -> np.ndarray:
    """Filled (H, W) bool mask of `shape` centred at (x, y), `size` px across, rotated `angle` rad."""
    h, w = image_size
    mask = np.zeros((h, w), np.uint8)
    radius = size / 2
    cx, cy = center
    if shape in ("circle", "ring"):
        # Shift by 4 fractional bits so sub-pixel motion in the camera stream stays smooth.
        centre_fx = (int(round(cx * 16)), int(round(cy * 16)))
        cv2.circle(mask, centre_fx, int(round(radius * 16)), 1, -1, cv2.LINE_8, shift=4)
        if shape == "ring":
            cv2.circle(mask, centre_fx, int(round(radius * _RING_INNER * 16)), 0, -1,
                       cv2.LINE_8, shift=4)
        return mask.astype(bool)
    if shape == "square":
        pts = _regular_polygon(4, radius, angle + math.pi / 4)
    elif shape == "triangle":
        pts = _regular_polygon(3, radius, angle)
    elif shape == "cross":
        pts = _cross(radius, angle)
    elif shape == "star":
        pts = _star(radius, angle)
    else:
        raise UnknownShapeError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    pts = np.round((pts + (cx, cy)) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)
