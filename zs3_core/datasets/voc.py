"""PASCAL VOC 2012 with the SBD augmentation (`SegmentationClassAug`), GZS3 protocol.

Layout (as DeepLab/mmsegmentation prepare it; ROOT may be the VOC2012 folder itself or any
parent of `VOCdevkit/VOC2012`):

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png     grayscale, 0 = background, 1..20, 255 = boundary
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt   (or trainaug.txt / aug.txt; ~10,582 ids)
    VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt         (1,449 ids)

Background is not a class under GZS3 (it would be "seen" and swallow unseen objects), so
raw 0 → 255 and raw k → k − 1, giving the 20 classes of `VOC_CLASSES`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from zs3_core.datasets.source import LabelledImages, read_id_list, require_complete, shorten
from zs3_core.datasets.splits import IGNORE_INDEX, VOC_SPLIT

SPLIT_LISTS = {
    "train": ("train_aug.txt", "trainaug.txt", "aug.txt"),
    "val": ("val.txt",),
}
IMAGE_DIR = "JPEGImages"
LABEL_DIR = "SegmentationClassAug"


def voc_label_lookup() -> np.ndarray:
    """(256,) raw VOC value → training id: background and boundary → ignore, k → k − 1."""
    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lookup[1:21] = np.arange(20)
    return lookup


def find_voc2012(root: Union[str, Path]) -> Path:
    """The VOC2012 folder under `root` (root itself, root/VOC2012 or root/VOCdevkit/VOC2012)."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / IMAGE_DIR).is_dir() or (candidate / LABEL_DIR).is_dir():
            return candidate
    return root / "VOCdevkit" / "VOC2012"


def split_list_path(voc: Path, split: str) -> Path:
    """The first existing id list for `split`, else the preferred name (for error messages)."""
    if split not in SPLIT_LISTS:
        raise ValueError(f"VOC split must be one of {sorted(SPLIT_LISTS)}, got {split!r}")
    lists = voc / "ImageSets" / "Segmentation"
    for name in SPLIT_LISTS[split]:
        if (lists / name).is_file():
            return lists / name
    return lists / SPLIT_LISTS[split][0]


def missing_voc_files(root: Union[str, Path], split: str, max_listed: int = 5) -> list[str]:
    """What `split` needs under `root` and is not there (empty list: ready to use)."""
    voc = find_voc2012(root)
    missing = [str(voc / d) + "/" for d in (IMAGE_DIR, LABEL_DIR) if not (voc / d).is_dir()]
    id_list = split_list_path(voc, split)
    if not id_list.is_file():
        names = " or ".join(SPLIT_LISTS[split])
        return missing + [f"{id_list.parent}/{names}"]
    if missing:
        return missing
    absent = []
    for image_id in read_id_list(id_list):
        for path in (voc / IMAGE_DIR / f"{image_id}.jpg", voc / LABEL_DIR / f"{image_id}.png"):
            if not path.is_file():
                absent.append(str(path))
    return shorten(absent, max_listed, f"files listed in {id_list}")


class VOCSegmentation(LabelledImages):
    """One split ("train" = SBD-augmented train, "val") of VOC 2012 in training ids."""

    def __init__(self, root: Union[str, Path], split: str = "train"):
        require_complete(missing_voc_files(root, split, max_listed=3), f"VOC 2012 {split} split", root)
        voc = find_voc2012(root)
        ids = read_id_list(split_list_path(voc, split))
        pairs = [(voc / IMAGE_DIR / f"{i}.jpg", voc / LABEL_DIR / f"{i}.png") for i in ids]
        super().__init__(f"voc-{split}", VOC_SPLIT, pairs, voc_label_lookup())
