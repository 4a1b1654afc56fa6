"""A dataset split on disk: (image, label map) file pairs plus the lookup to training ids.

Readers for each layout (VOC, COCO-Stuff) only find the files and state the raw → training
id lookup; loading, remapping and size checks are shared here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from zs3_core.datasets.io import check_same_size, read_label, read_rgb
from zs3_core.datasets.splits import GZS3Split


class DatasetLayoutError(FileNotFoundError):
    """A dataset root lacks files of the expected layout; the message lists what is missing."""


class LabelledImages:
    """Image/label pairs of one split; labels come back as training ids (255 = ignore)."""

    def __init__(self, name: str, gzs3: GZS3Split, pairs: Sequence[tuple[Path, Path]],
                 label_lookup: np.ndarray):
        if label_lookup.shape != (256,):
            raise ValueError("label_lookup must map all 256 raw values")
        self.name = name
        self.gzs3 = gzs3
        self.pairs = list(pairs)
        self.label_lookup = label_lookup.astype(np.uint8)

    def __len__(self) -> int:
        return len(self.pairs)

    def load_label(self, index: int) -> np.ndarray:
        """(H, W) uint8 training ids of all classes of the split (seen and unseen)."""
        return self.label_lookup[read_label(self.pairs[index][1])]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB image and its (H, W) uint8 training-id label map."""
        image_path, _ = self.pairs[index]
        image, label = read_rgb(image_path), self.load_label(index)
        check_same_size(image, label, image_path.stem)
        return image, label


def shorten(paths: list[str], max_listed: int, where: str) -> list[str]:
    """The first `max_listed` missing paths and a count of the rest (a 118k-image root can lack many)."""
    if len(paths) <= max_listed:
        return paths
    return paths[:max_listed] + [f"... and {len(paths) - max_listed} more {where}"]


def require_complete(missing: list[str], title: str, root) -> None:
    """Raise DatasetLayoutError listing `missing` unless it is empty."""
    if missing:
        raise DatasetLayoutError(f"{title} under {root} is incomplete; missing: " + ", ".join(missing)
                                 + " (run `zs3 data check`)")


def read_id_list(path: Path) -> list[str]:
    """Image ids of a split list file, one per line (VOC `ImageSets` format)."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
