"""COCO-Stuff 164k (`stuffthingmaps_trainval2017`), GZS3 protocol with 171 classes.

Layout (mmsegmentation's; ROOT is the folder holding `images/` and `annotations/`):

    images/train2017/<id>.jpg        images/val2017/<id>.jpg        (118k / 5k)
    annotations/train2017/<id>.png   annotations/val2017/<id>.png   stuffthingmaps PNGs

`annotations/` may also be named `stuffthingmaps_trainval2017/` (the zip's own name). The
PNGs store COCO category id − 1 (0..181, 255 = unlabeled). The 182 raw ids have 11 gaps
(unused thing ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 and 91, 1-based), so the 171 used
ids are renumbered consecutively — the same table as mmsegmentation's `clsID_to_trID`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from zs3_core.datasets.source import LabelledImages, require_complete, shorten
from zs3_core.datasets.splits import COCOSTUFF_SPLIT, IGNORE_INDEX

SPLIT_DIRS = {"train": "train2017", "val": "val2017"}
ANNOTATION_DIRS = ("annotations", "stuffthingmaps_trainval2017")
UNUSED_COCO_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)  # 1-based COCO category ids
RAW_IDS = tuple(i for i in range(182) if i + 1 not in UNUSED_COCO_IDS)  # PNG value per class


def cocostuff_label_lookup() -> np.ndarray:
    """(256,) raw stuffthingmaps value → training id 0..170; gaps and 255 → ignore."""
    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lookup[list(RAW_IDS)] = np.arange(len(RAW_IDS))
    return lookup


def annotation_dir(root: Union[str, Path], split: str) -> Path:
    if split not in SPLIT_DIRS:
        raise ValueError(f"COCO-Stuff split must be one of {sorted(SPLIT_DIRS)}, got {split!r}")
    root = Path(root)
    for name in ANNOTATION_DIRS:
        if (root / name / SPLIT_DIRS[split]).is_dir():
            return root / name / SPLIT_DIRS[split]
    return root / ANNOTATION_DIRS[0] / SPLIT_DIRS[split]


def missing_cocostuff_files(root: Union[str, Path], split: str, max_listed: int = 5) -> list[str]:
    """What `split` needs under `root` and is not there (empty list: ready to use)."""
    images = Path(root) / "images" / SPLIT_DIRS.get(split, split)
    labels = annotation_dir(root, split)
    missing = [str(d) + "/" for d in (images, labels) if not d.is_dir()]
    if missing:
        return missing
    label_files = sorted(labels.glob("*.png"))
    if not label_files:
        return [f"{labels}/*.png (no stuffthingmaps label maps)"]
    absent = [str(images / f"{p.stem}.jpg") for p in label_files
              if not (images / f"{p.stem}.jpg").is_file()]
    return shorten(absent, max_listed, f"images for labels in {labels}")


class COCOStuffSegmentation(LabelledImages):
    """One split ("train" = train2017, "val" = val2017) of COCO-Stuff 164k in training ids."""

    def __init__(self, root: Union[str, Path], split: str = "train"):
        require_complete(missing_cocostuff_files(root, split, max_listed=3), f"COCO-Stuff {split} split", root)
        images = Path(root) / "images" / SPLIT_DIRS[split]
        pairs = [(images / f"{p.stem}.jpg", p) for p in sorted(annotation_dir(root, split).glob("*.png"))]
        super().__init__(f"cocostuff-{split}", COCOSTUFF_SPLIT, pairs, cocostuff_label_lookup())
