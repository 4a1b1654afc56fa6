"""Saying nothing where nothing was asked for: background classes and the open-set rule.

A closed-vocabulary argmax names every pixel, so the background and every object the
vocabulary does not name get *some* named class. Two steps after labelling leave them
unlabeled instead (docs/open_set.md):

1. Background classes. A vocabulary may hold classes that mean "none of the objects"
   ("background", which the synthetic models are trained with). Their pixels are published
   as the unlabeled value and left out of per-class confidence and shares.
2. The open-set rule. A pixel whose top probability (over the whole vocabulary, background
   included) is below a threshold is unlabeled. The threshold is calibrated per model on
   validation scenes whose vocabulary names only half of the objects present, at the point
   that keeps 95 % of the named-object pixels the background classes leave (the usual OOD
   operating point, "FPR at 95 % TPR"), and stored with the checkpoint (its `extra` metadata, key "open_set"). A fixed
   `model.unlabeled_threshold` overrides it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

DEFAULT_BACKGROUND_CLASSES = ("background",)
RULE_KEY = "open_set"              # key of the rule in a checkpoint's `extra` metadata
SCORE = "max_probability"          # the only score the segmenter computes (its confidence image)
KEEP_NAMED = 0.95                  # the calibrated operating point: share of the named-object pixels
                                   # the background classes leave that the threshold keeps


@dataclass(frozen=True)
class OpenSetRule:
    """Unlabel pixels whose `score` is below `threshold`; `calibration` says how it was chosen."""

    threshold: float
    score: str = SCORE
    calibration: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.score != SCORE:
            raise ValueError(f"open-set score {self.score!r} is not known; this version computes {SCORE!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"open-set threshold must be in [0, 1), got {self.threshold}")


def background_ids(names: Sequence[str], background_classes: Sequence[str]) -> list[int]:
    """Positions of the vocabulary's background classes (case and spacing as the names are)."""
    wanted = {name.strip().lower() for name in background_classes}
    return [i for i, name in enumerate(names) if name.strip().lower() in wanted]


def unlabel(labels: np.ndarray, confidence: np.ndarray, background: Sequence[int], threshold: float,
            unlabeled_value: int) -> np.ndarray:
    """`labels` with background-class pixels and pixels scoring below `threshold` set to
    `unlabeled_value` (a copy; the input is left as it was)."""
    out = labels.copy()
    if len(background):
        out[np.isin(labels, np.asarray(background, dtype=labels.dtype))] = unlabeled_value
    if threshold > 0:
        out[confidence < threshold] = unlabeled_value
    return out


def leave_out_background(class_confidence: np.ndarray, class_fraction: np.ndarray,
                         background: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-class confidence and image shares with the background classes at 0: their pixels
    are published as unlabeled, so they count towards the unlabeled share instead."""
    confidence, fraction = class_confidence.copy(), class_fraction.copy()
    confidence[list(background)] = 0.0
    fraction[list(background)] = 0.0
    return confidence, fraction


# -- stored with the checkpoint --------------------------------------------------------------

def read_rule(checkpoint: Optional[str | Path]) -> Optional[OpenSetRule]:
    """The rule stored in a checkpoint's metadata, or None (no checkpoint, or none stored)."""
    if not checkpoint:
        return None
    from zs3_core.model_checkpoint import read_checkpoint_info

    stored = read_checkpoint_info(checkpoint)["extra"].get(RULE_KEY)
    return OpenSetRule(**stored) if stored else None


def write_rule(checkpoint: str | Path, rule: OpenSetRule) -> Path:
    """Store `rule` in the checkpoint's `extra` metadata; tensors and config stay as they are."""
    from zs3_core.model_checkpoint import update_checkpoint_extra

    return update_checkpoint_extra(checkpoint, RULE_KEY, asdict(rule))


def resolve_threshold(override: Optional[float], checkpoint: Optional[str | Path]) -> tuple[float, str]:
    """(threshold, where it came from): a fixed override wins, else the checkpoint's calibrated
    rule, else 0 (every pixel keeps its argmax class, as before the rule existed)."""
    if override is not None:
        return float(override), "model.unlabeled_threshold"
    rule = read_rule(checkpoint)
    if rule is not None:
        return rule.threshold, f"calibrated, stored in {Path(checkpoint).name}"
    return 0.0, "none stored"


# -- measuring it: named vs unnamed pixels -----------------------------------------------------

def pixel_scores(confidence: np.ndarray, labels: np.ndarray, background: Sequence[int]) -> np.ndarray:
    """The score the rule thresholds, with background-class pixels at -1 (always unlabeled):
    a pixel is kept at threshold t exactly when its score is >= t (and t > its -1)."""
    score = confidence.astype(np.float64, copy=True)
    if len(background):
        score[np.isin(labels, list(background))] = -1.0
    return score


def roc(named: np.ndarray, unnamed: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    """At each threshold: share of named-object pixels kept, share of unnamed-object pixels unlabeled."""
    named, unnamed = np.sort(named), np.sort(unnamed)
    rows = []
    for t in thresholds:
        kept = 1.0 - np.searchsorted(named, t, side="left") / max(len(named), 1)
        unlabeled = np.searchsorted(unnamed, t, side="left") / max(len(unnamed), 1)
        rows.append({"threshold": float(t), "named_kept": float(kept), "unnamed_unlabeled": float(unlabeled)})
    return rows


def auroc(named: np.ndarray, unnamed: np.ndarray) -> float:
    """P(score of a named pixel > score of an unnamed one), ties counted half (Mann-Whitney U)."""
    if not len(named) or not len(unnamed):
        return float("nan")
    scores = np.concatenate([named, unnamed])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    sorted_scores = scores[order]      # average ranks over ties
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for s, c in zip(start[counts > 1], counts[counts > 1]):
        ranks[order[s:s + c]] = s + (c + 1) / 2
    u = ranks[:len(named)].sum() - len(named) * (len(named) + 1) / 2
    return float(u / (len(named) * len(unnamed)))


def threshold_keeping(named: np.ndarray, share: float = KEEP_NAMED) -> float:
    """The largest threshold that keeps `share` of the named-object pixels the background
    classes leave (those scoring >= 0): the threshold's own cost, on top of theirs. Border
    pixels an 8x8-grid model calls background are lost either way; counting them would leave
    no room for a threshold at all."""
    kept = np.sort(named[named >= 0])
    drop = int(np.floor((1.0 - share) * len(kept)))
    if drop <= 0:
        return 0.0
    return float(min(kept[drop], np.nextafter(1.0, 0.0)))
