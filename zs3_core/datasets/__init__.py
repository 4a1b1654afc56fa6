"""GZS3 datasets: PASCAL VOC 2012 (+SBD) and COCO-Stuff 164k readers, their seen/unseen
splits, training augmentation, inductive label handling and full-resolution evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from zs3_core.datasets.source import DatasetLayoutError, LabelledImages
from zs3_core.datasets.splits import COCOSTUFF_SPLIT, VOC_SPLIT, GZS3Split

DATASETS = ("voc", "cocostuff")


def open_split(dataset: str, root: Union[str, Path], split: str) -> LabelledImages:
    """The reader for `dataset` ("voc" | "cocostuff") and `split` ("train" | "val")."""
    if dataset == "voc":
        from zs3_core.datasets.voc import VOCSegmentation
        return VOCSegmentation(root, split)
    if dataset == "cocostuff":
        from zs3_core.datasets.cocostuff import COCOStuffSegmentation
        return COCOStuffSegmentation(root, split)
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


__all__ = ["COCOSTUFF_SPLIT", "DATASETS", "DatasetLayoutError", "GZS3Split", "LabelledImages",
           "VOC_SPLIT", "open_split"]
