"""Example overlays of the shipped synthetic-world models, unseen classes marked (README figure).

Usage: python scripts/synthetic_figure.py [--out docs/synthetic_results.png] [--scenes 4]

Rows are validation scenes that contain at least one unseen class; columns are the input,
the ground truth, then each shipped model (training-free baseline, DeOP, LDVC) given all 36
class names. Region names carry a "*" and a yellow box when the class is unseen, so the
figure shows where a model found (or missed) compositions it never segmented in training.
Background pixels are left uncoloured, as the evaluation ignores them (VOC-style 255).
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from zs3_core import Segmenter
from zs3_core.config import REPO_ROOT
from zs3_core.datasets.synthetic import VAL_OFFSET
from zs3_core.synthetic import IGNORE_INDEX, SyntheticWorld
from zs3_core import visualize

SHIPPED = REPO_ROOT / "checkpoints" / "synthetic"
MODELS = (("baseline", "clip_baseline.yaml"), ("DeOP", "deop.yaml"), ("LDVC", "ldvc.yaml"))
SCALE = 2          # 128-px scenes drawn at 256 px so the region names stay legible


def scenes_with_unseen(world: SyntheticWorld, count: int) -> list:
    """The first `count` validation scenes showing an unseen class."""
    found, index = [], VAL_OFFSET
    while len(found) < count:
        scene = world.scene(index)
        if set(scene.class_ids) & set(world.unseen_class_ids):
            found.append(scene)
        index += 1
    return found


def titled(image: np.ndarray, title: str) -> np.ndarray:
    out = np.full((image.shape[0] + 18, image.shape[1], 3), 255, np.uint8)
    out[18:] = image
    cv2.putText(out, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def panel(rgb: np.ndarray, labels: np.ndarray, names: list[str], unseen: list[str], title: str) -> np.ndarray:
    size = (rgb.shape[1] * SCALE, rgb.shape[0] * SCALE)
    big_rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST)
    big_labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    drawn = visualize.overlay(big_rgb, big_labels, len(names), IGNORE_INDEX)
    return titled(visualize.name_regions(drawn, big_labels, names, unseen, min_pixels=200), title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "synthetic_results.png"))
    parser.add_argument("--scenes", type=int, default=4)
    args = parser.parse_args()

    world = SyntheticWorld()           # the segmentation world of the shipped configs (seed 0)
    names = list(world.class_names)
    unseen = [names[i] for i in world.unseen_class_ids]
    segmenters = [(title, Segmenter.from_config(SHIPPED / file)) for title, file in MODELS]
    vocabularies = [seg.encode_vocabulary(names) for _, seg in segmenters]
    rows = []
    for scene in scenes_with_unseen(world, args.scenes):
        cells = [titled(cv2.resize(scene.image, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST), "input"),
                 panel(scene.image, scene.labels, names, unseen, "ground truth")]
        for (title, seg), vocab in zip(segmenters, vocabularies):
            result = seg.segment(scene.image, vocab)
            labels = np.where(scene.labels == IGNORE_INDEX, IGNORE_INDEX, result.labels).astype(np.uint8)
            cells.append(panel(scene.image, labels, names, unseen, title))
        rows.append(np.concatenate(cells, axis=1))
    visualize.write_rgb_png(args.out, np.concatenate(rows, axis=0))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
