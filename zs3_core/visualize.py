"""Colours and overlays for people looking at label images (RViz, Foxglove, PNG files)."""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

UNLABELED_COLOR = (0, 0, 0)


def class_colors(num_classes: int) -> np.ndarray:
    """(C, 3) uint8 RGB colours, well separated and stable: class i always gets colour i.

    Hues step by the golden ratio so neighbouring ids never look alike; saturation and value
    alternate to separate classes that land on similar hues.
    """
    colors = np.zeros((num_classes, 3), np.uint8)
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        sat = 0.85 if i % 2 == 0 else 0.6
        val = 0.95 if (i // 2) % 2 == 0 else 0.75
        colors[i] = [round(c * 255) for c in colorsys.hsv_to_rgb(hue, sat, val)]
    return colors


def colorize(labels: np.ndarray, num_classes: int, unlabeled_value: int) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) uint8 RGB; unlabeled pixels black."""
    palette = np.zeros((max(int(labels.max(initial=0)), num_classes) + 1, 3), np.uint8)
    palette[:num_classes] = class_colors(num_classes)
    lut_index = np.where(labels == unlabeled_value, len(palette) - 1, labels)
    if num_classes < len(palette):
        palette[-1] = UNLABELED_COLOR
    return palette[lut_index]


def overlay(rgb: np.ndarray, labels: np.ndarray, num_classes: int, unlabeled_value: int,
            alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over the frame; unlabeled pixels keep the frame as it is."""
    colored = colorize(labels, num_classes, unlabeled_value)
    blended = cv2.addWeighted(rgb, 1.0 - alpha, colored, alpha, 0.0)
    keep = labels == unlabeled_value
    blended[keep] = rgb[keep]
    return blended


def legend(image: np.ndarray, names: Sequence[str], present: Sequence[int] | None = None) -> np.ndarray:
    """Draw a small colour key (present classes only, if given) in the top-left corner."""
    out = image.copy()
    colors = class_colors(len(names))
    ids = list(present) if present is not None else list(range(len(names)))
    for row, cid in enumerate(ids[:12]):
        y = 6 + row * 16
        cv2.rectangle(out, (6, y), (18, y + 12), tuple(int(c) for c in colors[cid]), -1)
        cv2.putText(out, names[cid], (24, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Class ids as an 8- or 16-bit single-channel PNG (lossless, readable by any tool)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), labels):
        raise OSError(f"could not write {path}")


def name_regions(image: np.ndarray, labels: np.ndarray, names: Sequence[str],
                 marked: Sequence[str] = (), min_pixels: int = 50) -> np.ndarray:
    """Write each labelled region's class name at its centroid; names in `marked` (e.g. the
    classes a model never saw in training) get a "*" and a yellow box, so a figure shows
    at a glance which findings are zero-shot."""
    out = image.copy()
    marked = set(marked)
    for cid, name in enumerate(names):
        ys, xs = np.nonzero(labels == cid)
        if len(xs) < min_pixels:
            continue
        text = f"*{name}" if name in marked else name
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        x = int(np.clip(xs.mean() - tw / 2, 0, max(out.shape[1] - tw, 0)))
        y = int(np.clip(ys.mean() + th / 2, th, out.shape[0] - 1))
        if name in marked:
            cv2.rectangle(out, (x - 2, y - th - 2), (x + tw + 2, y + 3), (255, 220, 0), 1)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return out
