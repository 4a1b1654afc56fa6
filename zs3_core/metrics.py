"""Confusion-matrix segmentation metrics: per-class IoU, mIoU, GZS3 seen/unseen/hIoU, pAcc.

One accumulator serves training validation, `zs3 eval` and `zs3 bag-eval`, so every number
the project reports is computed the same way. Conventions (those of the GZS3 papers):
- target pixels equal to `ignore_index` are skipped;
- predictions outside [0, num_classes) (e.g. the segmenter's unlabeled value) count as
  misses of the target class but as nobody's false positive;
- a class with no target and no predicted pixels has IoU NaN and is left out of means;
- mIoU(S), mIoU(U) are means over the seen / unseen classes, hIoU = 2·S·U / (S + U).
All values are fractions in [0, 1]; reports multiply by 100.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def harmonic_iou(seen: float, unseen: float) -> float:
    """hIoU = 2·S·U / (S + U); 0 when both are 0, NaN when either is NaN."""
    if np.isnan(seen) or np.isnan(unseen):
        return float("nan")
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)


class ConfusionMatrix:
    """Accumulates a (K, K+1) matrix: rows = target class, columns = predicted class + 'none'."""

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 class_names: Sequence[str] | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.counts = np.zeros((num_classes, num_classes + 1), np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """(K, K) target × prediction pixel counts (predictions outside the classes excluded)."""
        return self.counts[:, :-1]

    def reset(self) -> None:
        self.counts[:] = 0

    def update(self, pred, target) -> ConfusionMatrix:
        """Add one prediction/target pair of equal shape (numpy arrays or torch tensors)."""
        pred, target = _as_numpy(pred), _as_numpy(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
        k = self.num_classes
        target = target.astype(np.int64, copy=False).ravel()
        pred = pred.astype(np.int64, copy=False).ravel()
        keep = target != self.ignore_index
        target, pred = target[keep], pred[keep]
        if target.size and (target.min() < 0 or target.max() >= k):
            bad = sorted(set(np.unique(target[(target < 0) | (target >= k)]).tolist()))[:5]
            raise ValueError(f"target ids {bad} are outside [0, {k}) and not the ignore index "
                             f"{self.ignore_index}; map ground-truth ids to classes first")
        pred = np.where((pred >= 0) & (pred < k), pred, k)
        self.counts += np.bincount(target * (k + 1) + pred, minlength=k * (k + 1)).reshape(k, k + 1)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's counts (other frames, other DDP ranks)."""
        if other.counts.shape != self.counts.shape:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.counts += other.counts
        return self

    __iadd__ = merge

    def without(self, class_ids: Sequence[int]) -> ConfusionMatrix:
        """The matrix as if `class_ids` were ignored targets and not classes at all: their rows
        dropped and their predicted pixels counted as 'none' (misses, nobody's false positive).

        This is how the GZS3 metrics see a labelled background: a model that says
        "background" on an object pixel misses it, and background pixels are ignored
        as in the papers, while the full matrix still gives the whole-frame view."""
        drop = set(int(i) for i in class_ids)
        keep = [i for i in range(self.num_classes) if i not in drop]
        if not keep:
            raise ValueError("cannot leave out every class")
        names = [self.class_names[i] for i in keep] if self.class_names else None
        out = ConfusionMatrix(len(keep), self.ignore_index, names)
        rows = self.counts[keep]
        out.counts[:, :-1] = rows[:, keep]
        out.counts[:, -1] = rows.sum(1) - out.counts[:, :-1].sum(1)
        return out

    def iou(self) -> np.ndarray:
        """(K,) float64 IoU per class; NaN where the class is in neither target nor prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.counts.sum(1) + self.matrix.sum(0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def pixel_accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    @staticmethod
    def _mean(values: np.ndarray) -> float:
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def summary(self, seen_ids: Sequence[int] | None = None,
                unseen_ids: Sequence[int] | None = None) -> dict:
        """mIoU, pAcc, per-class IoU and pixel counts; with a split also mIoU_seen/unseen, hIoU."""
        iou = self.iou()
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        out = {
            "mIoU": self._mean(iou),
            "pAcc": self.pixel_accuracy(),
            "pixels": int(self.counts.sum()),
            "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        }
        if seen_ids is not None and unseen_ids is not None:
            s = self._mean(iou[list(seen_ids)]) if len(seen_ids) else float("nan")
            u = self._mean(iou[list(unseen_ids)]) if len(unseen_ids) else float("nan")
            out.update(mIoU_seen=s, mIoU_unseen=u, hIoU=harmonic_iou(s, u))
        return out
