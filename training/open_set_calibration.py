"""Calibrate and measure the open-set rule on the synthetic world (zs3_core/open_set.py).

Each validation scene is segmented through `Segmenter.segment`, as the node does, with a
vocabulary that names only part of what is there: of the n object classes present, a seeded
draw of floor(n / 2) stays unnamed, and the vocabulary is the rest plus "background". A
named-object pixel is kept when it gets some object class; an unnamed-object pixel is
unlabeled when it gets "background" or scores below the threshold. Sweeping the threshold
gives the curve and its AUROC; the calibrated threshold is the largest that keeps 95 % of the
named-object pixels that "background" leaves (open_set.KEEP_NAMED, open_set.threshold_keeping).

Calibration uses validation scenes 300-499, reports use scenes 0-299, so the operating point
is never chosen on the scenes it is reported on.

  python -m training.open_set_calibration config/models/ldvc_synthetic.yaml \
      --checkpoint runs/synthetic/ldvc/checkpoints/step_0003000.safetensors \
      --set model.clip_weights=runs/synthetic/pretrain/clip.safetensors --write
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zs3_core import open_set
from zs3_core.datasets.synthetic import VAL_OFFSET
from zs3_core.segmenter import Segmenter
from zs3_core.synthetic import BACKGROUND_NAME, SyntheticWorld, WorldConfig

log = logging.getLogger(__name__)

CALIBRATION_SCENES = range(300, 500)
REPORT_SCENES = range(0, 300)
DRAW_SEED = 34           # which present classes stay unnamed in each scene
CURVE_THRESHOLDS = tuple(np.round(np.arange(0.0, 1.0, 0.05), 2))


@dataclass
class NamedUnnamedScores:
    """The rule's score (open_set.pixel_scores) of every object pixel, split by whether the
    vocabulary named its class; plus how the background pixels and named pixels fared."""

    named: np.ndarray
    unnamed: np.ndarray
    background: np.ndarray      # scores of background pixels
    named_correct: np.ndarray   # per named pixel: its argmax is its own class
    scenes: int

    def operating_point(self, threshold: float) -> dict:
        """Shares at `threshold`: named kept (and kept with the right class), unnamed and
        background unlabeled."""
        kept = self.named >= threshold if threshold > 0 else self.named >= 0
        return {"threshold": float(threshold),
                "named_kept": float(kept.mean()) if kept.size else float("nan"),
                "named_kept_correct": float((kept & self.named_correct).mean()) if kept.size else float("nan"),
                "unnamed_unlabeled": float(_unlabeled(self.unnamed, threshold)),
                "background_unlabeled": float(_unlabeled(self.background, threshold))}


def _unlabeled(scores: np.ndarray, threshold: float) -> float:
    if not scores.size:
        return float("nan")
    return float(((scores < threshold) | (scores < 0)).mean())


def half_named_scores(segmenter: Segmenter, world: SyntheticWorld, indices, seed: int = DRAW_SEED
                      ) -> NamedUnnamedScores:
    """Segment validation scenes `indices` with half of their present classes unnamed."""
    saved = segmenter.unlabeled_threshold, segmenter.background_classes
    segmenter.unlabeled_threshold, segmenter.background_classes = 0.0, ()   # raw argmax and confidence
    named, unnamed, background, correct = [], [], [], []
    try:
        for index in indices:
            scene = world.scene(VAL_OFFSET + index)
            present = list(scene.class_ids)
            rng = np.random.default_rng([seed, index])
            hidden = set(rng.choice(present, size=len(present) // 2, replace=False).tolist())
            shown = [c for c in present if c not in hidden]
            names = [world.class_names[c] for c in shown] + [BACKGROUND_NAME]
            result = segmenter.segment(scene.image, segmenter.encode_vocabulary(names))
            bg = open_set.background_ids(names, (BACKGROUND_NAME,))
            score = open_set.pixel_scores(result.confidence, result.labels, bg)
            truth = scene.labels
            for position, class_id in enumerate(shown):
                mask = truth == class_id
                named.append(score[mask])
                correct.append(result.labels[mask] == position)
            unnamed += [score[truth == c] for c in hidden]
            background.append(score[truth == 255])
    finally:
        segmenter.unlabeled_threshold, segmenter.background_classes = saved
    join = lambda parts, dtype=np.float64: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    return NamedUnnamedScores(join(named), join(unnamed), join(background), join(correct, bool), len(indices))


def measure(segmenter: Segmenter, world: SyntheticWorld, threshold: float) -> dict:
    """AUROC, curve and the operating point at `threshold` on the report scenes."""
    scores = half_named_scores(segmenter, world, REPORT_SCENES)
    return {"scenes": f"validation {REPORT_SCENES.start}-{REPORT_SCENES.stop - 1}",
            "auroc": open_set.auroc(scores.named, scores.unnamed),
            "at_threshold_0": scores.operating_point(0.0),
            "operating_point": scores.operating_point(threshold),
            "curve": open_set.roc(scores.named, scores.unnamed, CURVE_THRESHOLDS)}


def calibrate(segmenter: Segmenter, world: SyntheticWorld) -> open_set.OpenSetRule:
    """The rule at the point that keeps open_set.KEEP_NAMED of the named-object pixels of the
    calibration scenes that the background class leaves."""
    scores = half_named_scores(segmenter, world, CALIBRATION_SCENES)
    threshold = open_set.threshold_keeping(scores.named)
    point = scores.operating_point(threshold)
    return open_set.OpenSetRule(threshold, calibration={
        "scenes": f"synthetic validation {CALIBRATION_SCENES.start}-{CALIBRATION_SCENES.stop - 1}, "
                  "half of the present classes unnamed",
        "keep_named": open_set.KEEP_NAMED, "auroc": open_set.auroc(scores.named, scores.unnamed),
        **{k: v for k, v in point.items() if k != "threshold"}})


def segmenter_for(config: str, checkpoint: str | None, overrides) -> tuple[Segmenter, SyntheticWorld]:
    """The segmenter of a run config (its checkpoint or `checkpoint`) and the config's world."""
    from training.config import load_run_config

    run = load_run_config(config, overrides=overrides)
    model = run.model if not checkpoint else dataclasses.replace(run.model, checkpoint=checkpoint)
    world = SyntheticWorld(WorldConfig.from_dict(dict(run.data.synthetic.get("world") or {})))
    return Segmenter.from_config(model, backend="torch"), world


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--checkpoint", help="trained tensors (default: the config's model.checkpoint)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--write", action="store_true", help="store the calibrated rule in the checkpoint")
    parser.add_argument("--out", help="also write the rule as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    segmenter, world = segmenter_for(args.config, args.checkpoint, args.set)
    rule = calibrate(segmenter, world)
    text = json.dumps(dataclasses.asdict(rule), indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.write:
        if not segmenter.config.checkpoint:
            raise SystemExit("no checkpoint to store the rule in (a training-free model): set "
                             f"model.unlabeled_threshold: {rule.threshold:.4f} in its config instead")
        open_set.write_rule(segmenter.config.checkpoint, rule)
        log.info("stored the open-set rule in %s", segmenter.config.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
