"""What a model sees under the inductive GZS3 protocol, as torch Datasets.

Training: augmented crops whose targets index the *seen* class list — unseen pixels become
ignore, so the model never learns an unseen class even as "background". zsseg/DeOP also
drop images left with no seen pixel; ZegCLIP (and LDVC on its code) keep them:
`drop_images_without_seen` chooses. Evaluation: the whole image, targets over all classes.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from zs3_core.datasets.source import LabelledImages
from zs3_core.datasets.splits import IGNORE_INDEX
from zs3_core.datasets.transforms import TrainAugmentation, resize_for_eval, to_tensor

log = logging.getLogger(__name__)


def images_with_seen_pixels(source: LabelledImages, seen_table: np.ndarray,
                            ignore_index: int = IGNORE_INDEX, threads: int = 8) -> list[int]:
    """Indices of images that keep at least one labelled pixel once unseen classes are ignored."""
    def has_seen(index: int) -> bool:
        return bool((seen_table[source.load_label(index)] != ignore_index).any())

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        keep = list(pool.map(has_seen, range(len(source))))
    return [i for i, k in enumerate(keep) if k]


class GZS3TrainingSet(Dataset):
    """(image (3, S, S) float32, target (S, S) int64 over seen classes, ignore elsewhere).

    Sample i of epoch e is augmented with seed (seed, e, i): identical whichever rank or
    worker loads it, so DDP runs and resumed runs see exactly the data of a plain run.
    """

    def __init__(self, source: LabelledImages, augmentation: TrainAugmentation,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 drop_images_without_seen: bool = False, seed: int = 0):
        self.source = source
        self.augmentation = augmentation
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        self.seed = seed
        self.epoch = 0
        self.class_names = source.gzs3.seen_names
        self.seen_table = source.gzs3.seen_label_table(augmentation.ignore_index)
        self.indices = list(range(len(source)))
        if drop_images_without_seen:
            self.indices = images_with_seen_pixels(source, self.seen_table, augmentation.ignore_index)
            log.info("%s: kept %d of %d images that still have seen-class pixels",
                     source.name, len(self.indices), len(source))
        if not self.indices:
            raise ValueError(f"{source.name}: no training images left")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, label = self.source.load(self.indices[i])
        image, target = self.augmentation(image, self.seen_table[label], rng)
        return (to_tensor(image, self.pixel_mean, self.pixel_std),
                torch.from_numpy(target.astype(np.int64)))


class GZS3EvaluationSet(Dataset):
    """(image (3, h, w) resized so the short side is crop_size, target (H, W) int64 at the
    original resolution over *all* classes). Batch size 1: images differ in size."""

    def __init__(self, source: LabelledImages, crop_size: int, pixel_mean: Sequence[float],
                 pixel_std: Sequence[float], ignore_index: int = IGNORE_INDEX,
                 max_images: int = 0):
        self.source = source
        self.crop_size = crop_size
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        self.class_names = source.gzs3.class_names
        self.table = np.arange(256, dtype=np.uint8)
        self.table[source.gzs3.num_classes:] = ignore_index
        count = len(source) if max_images <= 0 else min(max_images, len(source))
        self.indices = list(range(count))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.source.load(self.indices[i])
        image = resize_for_eval(image, self.crop_size)
        return (to_tensor(image, self.pixel_mean, self.pixel_std),
                torch.from_numpy(self.table[label].astype(np.int64)))
