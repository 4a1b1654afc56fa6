"""Ground truth for bag evaluation: where labels come from and what their ids mean.

A recorded drive's ground truth rarely shares the vocabulary's ids: it is a label image
topic (or a folder of PNGs) keyed by the camera frame's header stamp, with its own id →
name table and sometimes other spellings ("tvmonitor" vs "tv monitor"). This module
pairs frames with labels by stamp (within a tolerance) and maps both predictions and
ground truth into one set of evaluation classes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

IGNORE = -1   # evaluation id of pixels that are not scored


class GroundTruthError(ValueError):
    """Ground truth that cannot be used as given; the message says what to change."""


def load_class_map(spec: str | None) -> dict[str, str]:
    """'gt=vocab,gt2=vocab2' or a YAML mapping file → {ground-truth name: vocabulary name}."""
    if not spec:
        return {}
    path = Path(spec)
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise GroundTruthError(f"{path}: expected a mapping of ground-truth name: vocabulary name")
        return {str(k): str(v) for k, v in data.items()}
    pairs = {}
    for item in spec.split(","):
        if "=" not in item:
            raise GroundTruthError(f"class map entry {item!r} is not 'gt_name=vocabulary_name'")
        gt, vocab = item.split("=", 1)
        pairs[gt.strip()] = vocab.strip()
    return pairs


def load_gt_class_names(path: str | Path) -> list[str]:
    """GT id → name: a YAML list, a YAML mapping {id: name}, or one name a line (id = line)."""
    text = Path(path).read_text()
    data = yaml.safe_load(text)
    if isinstance(data, list):
        return [str(n) for n in data]
    if isinstance(data, dict):
        names = [""] * (max(int(k) for k in data) + 1)
        for k, v in data.items():
            names[int(k)] = str(v)
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class EvaluationClasses:
    """The scored classes (`names`) and look-up tables into them.

    gt_names[i] is the name of ground-truth id i; `class_map` renames ground-truth names to
    vocabulary names. Ground-truth pixels whose class is not in the vocabulary in force
    are not scored (the model could not name them); predictions of the unlabeled value
    are misses.
    """

    names: list[str]
    gt_names: list[str]
    class_map: dict[str, str] = field(default_factory=dict)
    ignore_index: int = 255

    def __post_init__(self):
        index = {n: i for i, n in enumerate(self.names)}
        self._gt_to_eval = np.full(65536, IGNORE, np.int32)
        for gt_id, gt_name in enumerate(self.gt_names):
            name = self.class_map.get(gt_name, gt_name)
            if gt_id != self.ignore_index and name in index:
                self._gt_to_eval[gt_id] = index[name]
        self.unmatched_gt_names = [n for i, n in enumerate(self.gt_names)
                                   if n and i != self.ignore_index
                                   and self.class_map.get(n, n) not in index]

    def prediction_lut(self, vocabulary_names: Sequence[str]) -> np.ndarray:
        """(65536,) vocabulary id → evaluation id; the unlabeled value → IGNORE (a miss)."""
        lut = np.full(65536, IGNORE, np.int32)
        index = {n: i for i, n in enumerate(self.names)}
        for vid, name in enumerate(vocabulary_names):
            lut[vid] = index[name]
        return lut

    def target(self, gt: np.ndarray, vocabulary_names: Sequence[str]) -> np.ndarray:
        """GT ids → evaluation ids, IGNORE where the class is unknown or not in the vocabulary."""
        mapped = self._gt_to_eval[gt.astype(np.int64)]
        index = {n: i for i, n in enumerate(self.names)}
        active = np.zeros(len(self.names) + 1, bool)
        active[[index[n] for n in vocabulary_names]] = True
        return np.where(active[mapped], mapped, IGNORE)


class StampMatcher:
    """Pairs frames and label images whose header stamps differ by at most `tolerance_ns`.

    Both streams arrive in log-time order but either may lead; unmatched items wait until
    the other stream has moved `horizon_ns` past them, so memory stays bounded.
    """

    def __init__(self, tolerance_ns: int, horizon_ns: int = 5_000_000_000):
        self.tolerance_ns = tolerance_ns
        self.horizon_ns = max(horizon_ns, tolerance_ns)
        self.frames: dict[int, Any] = {}
        self.labels: dict[int, np.ndarray] = {}
        self.frames_without_gt = 0
        self.gt_without_frame = 0

    def _closest(self, pool: dict, stamp: int) -> int | None:
        best = min(pool, key=lambda s: abs(s - stamp), default=None)
        return best if best is not None and abs(best - stamp) <= self.tolerance_ns else None

    def add_frame(self, stamp: int, frame: Any) -> tuple[Any, np.ndarray] | None:
        key = self._closest(self.labels, stamp)
        if key is not None:
            return frame, self.labels.pop(key)
        self.frames[stamp] = frame
        self._expire(stamp)
        return None

    def add_labels(self, stamp: int, labels: np.ndarray) -> tuple[Any, np.ndarray] | None:
        key = self._closest(self.frames, stamp)
        if key is not None:
            return self.frames.pop(key), labels
        self.labels[stamp] = labels
        self._expire(stamp)
        return None

    def _expire(self, now: int) -> None:
        for stamp in [s for s in self.frames if s < now - self.horizon_ns]:
            del self.frames[stamp]
            self.frames_without_gt += 1
        for stamp in [s for s in self.labels if s < now - self.horizon_ns]:
            del self.labels[stamp]
            self.gt_without_frame += 1

    def finish(self) -> None:
        self.frames_without_gt += len(self.frames)
        self.gt_without_frame += len(self.labels)
        self.frames.clear()
        self.labels.clear()


def read_labels_dir(directory: str | Path) -> dict[int, Path]:
    """Label PNGs named by header stamp in nanoseconds (e.g. 1700000000100000000.png)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise GroundTruthError(f"labels directory {directory} does not exist")
    files = {}
    for path in directory.glob("*.png"):
        try:
            files[int(path.stem)] = path
        except ValueError:
            raise GroundTruthError(f"{path.name}: label files must be named <stamp in ns>.png, "
                                   "e.g. 1700000000100000000.png") from None
    if not files:
        raise GroundTruthError(f"{directory} holds no <stamp_ns>.png label files")
    return files


def load_label_png(path: Path) -> np.ndarray:
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2:
        raise GroundTruthError(f"{path} is not a single-channel 8- or 16-bit label PNG")
    return labels
