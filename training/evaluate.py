"""`zs3 eval`: GZS3 evaluation — one prediction over all classes (seen and unseen), then
mIoU over the seen and over the unseen classes, their harmonic mean hIoU, pixel accuracy
and per-class IoU, written as JSON (machines), a Markdown table and a bar chart (people).

Images are predicted at full resolution: resized so the short side is the crop size,
covered by sliding windows (ZegCLIP: 512, stride 426) or one resize (`data.eval_mode`),
optionally also at other scales and mirrored (`eval.test_time_scales`, `eval.test_time_flip`),
and the averaged scores upsampled back to the label map's size before the argmax. The
metrics record that protocol, since it changes them.

Where the dataset labels its background as a class ("background" of the synthetic world), the
model is asked for it like any class, and the GZS3 metrics keep the papers' convention: the
background pixels are ignored and a "background" prediction on an object is a miss. Beside
them come the whole-frame numbers a user sees through the segmenter (zs3_core/open_set.py:
background and low-scoring pixels unlabeled): the share of background pixels left unlabeled,
and each object class's IoU over the whole frame, where every pixel predicted as the class
counts, background included.

The classes may be asked for with synonyms and a prompt-template ensemble (`templates`,
`synonyms`; `zs3 eval --templates imagenet --synonyms "red circle|red disc"`), embedded as
the segmenter embeds them (zs3_core/class_embeddings.py); the metrics record what was used.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zs3_core.class_embeddings import class_embeddings, sentence_encoder, templates_for_model
from zs3_core.datasets.test_time_augmentation import augmented_predict
from zs3_core.eval_report import plot_per_class_iou, write_metrics_json
from zs3_core.prompt_templates import describe_templates
from zs3_core.vocabulary import Vocabulary, VocabularyError, class_name

from training.config import RunConfig
from training.data import evaluation_set

SUMMARY_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc")
log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Per-class IoU (NaN where a class never occurs nor is predicted) and the summary."""

    dataset: str
    class_names: list[str]
    seen_ids: list[int]
    unseen_ids: list[int]
    iou: list[float]
    summary: dict[str, float]
    num_images: int
    protocol: dict = field(default_factory=dict)   # how the scores were made (`inference_protocol`)
    whole_frame: dict = field(default_factory=dict)   # with a labelled background: `whole_frame_numbers`

    def to_dict(self) -> dict:
        per_class = {name: (None if math.isnan(v) else v) for name, v in zip(self.class_names, self.iou)}
        out = {"dataset": self.dataset, "num_images": self.num_images, "protocol": self.protocol,
               "summary": {k: (None if math.isnan(v) else v) for k, v in self.summary.items()},
               "per_class_iou": per_class,
               "unseen_classes": [self.class_names[i] for i in self.unseen_ids]}
        if self.whole_frame:
            out["whole_frame"] = self.whole_frame
        return out

    def markdown(self) -> str:
        def pct(v):
            return "n/a" if v is None or math.isnan(v) else f"{100 * v:.2f}"
        head = " | ".join(SUMMARY_KEYS)
        views = ", ".join(f"{k} {v}" for k, v in self.protocol.items())
        lines = [f"## GZS3 evaluation: {self.dataset} ({self.num_images} images{'; ' + views if views else ''})", "",
                 f"| {head} |", "|" + "---|" * len(SUMMARY_KEYS),
                 "| " + " | ".join(pct(self.summary.get(k, math.nan)) for k in SUMMARY_KEYS) + " |",
                 "", "| class | split | IoU (%) |", "|---|---|---|"]
        unseen = set(self.unseen_ids)
        for i, name in enumerate(self.class_names):
            lines.append(f"| {name} | {'unseen' if i in unseen else 'seen'} | {pct(self.iou[i])} |")
        if self.whole_frame:
            w = self.whole_frame
            lines += ["", f"## Whole frame (background unlabeled; open-set threshold {w['threshold']:.3f}, "
                          f"{w['threshold_source']})", "",
                      "| background unlabeled | mIoU_seen | mIoU_unseen | object pixels on background |",
                      "|---|---|---|---|",
                      f"| {pct(w['background_unlabeled'])} | {pct(w['mIoU_seen'])} | {pct(w['mIoU_unseen'])} | "
                      f"{pct(w['object_pixels_on_background'])} |"]
        return "\n".join(lines) + "\n"


def class_scores(model: nn.Module, class_embeddings: torch.Tensor, seen_ids, offset: float):
    """The Predict callable of the sliding helper: probabilities, minus `offset` on seen
    classes (ZegCLIP's inductive calibration against the seen-class bias)."""
    def predict(images: torch.Tensor) -> torch.Tensor:
        probs = model.predict(images, class_embeddings)
        if offset:
            probs = probs.clone()
            probs[:, list(seen_ids)] -= offset
        return probs
    return predict


def gzs3_vocabulary(model: nn.Module, run: RunConfig, class_names: Sequence[str], templates: Sequence[str] = (),
                    synonyms: Sequence[str] = ()) -> tuple[Vocabulary, str]:
    """The dataset's classes as a Vocabulary: each with its `synonyms` entry ("name|synonym|…",
    named by a class of the dataset), in `templates` (an ensemble or set names; none: the
    model's template), as `model` takes them → (vocabulary, note on what was used instead)."""
    written = {class_name(entry): entry for entry in synonyms}
    unknown = sorted(set(written) - set(class_names))
    if unknown:
        raise VocabularyError(f"synonyms given for {', '.join(map(repr, unknown))}, which the dataset does not have")
    vocabulary = Vocabulary.create([written.get(name, name) for name in class_names],
                                   None if templates else run.model.prompt_template, templates=templates or None)
    used, note = templates_for_model(model, vocabulary.templates, run.model.prompt_template)
    return Vocabulary(vocabulary.names, used, vocabulary.synonyms), note


def gzs3_predictor(model: nn.Module, run: RunConfig, gzs3, device: torch.device | str = "cpu",
                   templates: Sequence[str] = (), synonyms: Sequence[str] = ()):
    """The Predict callable over all of the split's classes (seen and unseen), prompted and
    calibrated as `run` says: what `evaluate_model` scores and benches must score alike."""
    vocabulary, note = gzs3_vocabulary(model, run, gzs3.class_names, templates, synonyms)
    if note:
        log.warning("%s", note)
    embeddings = class_embeddings(vocabulary, sentence_encoder(model)).to(device)
    return class_scores(model, embeddings, gzs3.seen_ids, run.eval.seen_score_offset)


def inference_protocol(run: RunConfig, vocabulary: Optional[Vocabulary] = None) -> dict:
    """The settings that decide a prediction beyond the weights, recorded with its metrics;
    with `vocabulary`, the templates and any synonyms it was asked in."""
    protocol = {"eval_mode": run.data.eval_mode, "test_time_scales": list(run.eval.test_time_scales),
                "test_time_flip": run.eval.test_time_flip}
    if vocabulary is not None:
        protocol["templates"] = describe_templates(vocabulary.templates)
        with_synonyms = [entry for entry in vocabulary.written_classes() if "|" in entry]
        if with_synonyms:
            protocol["synonyms"] = with_synonyms
    return protocol


def model_window(run: RunConfig) -> int:
    """Side of one model input in evaluation. "whole": the image resized to the model's own input
    size (`model.input_size`), exactly as the `Segmenter` (node, `zs3 segment`) feeds it, so a model
    served at another size than it was trained at is scored as it is served. "slide": the
    training crop (`data.crop_size`), the papers' sliding window."""
    return run.model.input_size if run.data.eval_mode == "whole" else run.data.crop_size


def predict_with_confidence(predict, image: torch.Tensor, size: tuple[int, int],
                            run: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) image → (h, w) class ids and their probabilities at the label size `size`:
    whole or sliding-window inference as `data.eval_mode` says (`model_window`), averaged over the test-time
    scales and flips of `eval`, scores upsampled bilinearly, then argmax."""
    probs = augmented_predict(predict, image.unsqueeze(0), run.data.eval_mode, model_window(run),
                              run.data.slide_stride, run.eval.test_time_scales, run.eval.test_time_flip)
    probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
    confidence, labels = probs.max(1)
    return labels[0], confidence[0]


def predict_labels(predict, image: torch.Tensor, size: tuple[int, int], run: RunConfig) -> torch.Tensor:
    """`predict_with_confidence`'s class ids alone."""
    return predict_with_confidence(predict, image, size, run)[0]


def whole_frame_numbers(frame, gzs3, threshold: float, source: str) -> dict:
    """What a user sees, from the confusion counts of the open-set rule's output (unlabeled
    pixels in the 'none' column): background pixels left unlabeled, the object classes' IoU
    over the whole frame, and the share of object predictions that lie on background."""
    background = list(gzs3.background_ids)
    objects = list(gzs3.object_ids)
    stats = frame.summary(list(gzs3.seen_object_ids), list(gzs3.unseen_ids))
    on_background = frame.counts[background][:, objects].sum()
    predicted = frame.counts[:, objects].sum()
    return {"threshold": float(threshold), "threshold_source": source,
            "background_unlabeled": float(frame.counts[background, -1].sum() / max(frame.counts[background].sum(), 1)),
            "mIoU_seen": stats["mIoU_seen"], "mIoU_unseen": stats["mIoU_unseen"],
            "object_pixels_on_background": float(on_background / max(predicted, 1)),
            "per_class_iou": {gzs3.class_names[i]: stats["per_class_iou"][gzs3.class_names[i]] for i in objects}}


@torch.inference_mode()
def evaluate_model(model: nn.Module, run: RunConfig, device: torch.device | str = "cpu",
                   split: Optional[str] = None, progress: bool = True,
                   shard: tuple[int, int] = (0, 1), templates: Sequence[str] = (),
                   synonyms: Sequence[str] = (), images: Optional[range] = None) -> EvaluationResult:
    """Run GZS3 evaluation of `model` on the eval split of `run` (or on its `images` alone,
    e.g. held-out validation scenes a setting is chosen on).

    shard=(rank, world) under DDP: each process predicts every world-th image and the
    confusion counts are summed over processes, so all ranks return the full result.
    `templates` / `synonyms`: the classes asked in a template ensemble and with synonyms
    (`gzs3_vocabulary`); the metrics' protocol then records them."""
    from zs3_core.metrics import ConfusionMatrix
    from zs3_core.open_set import resolve_threshold, unlabel

    device = torch.device(device)
    eval_set = evaluation_set(run, split)
    gzs3 = eval_set.source.gzs3
    was_training = model.training
    model.eval()
    predict = gzs3_predictor(model, run, gzs3, device, templates, synonyms)
    matrix = ConfusionMatrix(gzs3.num_classes, ignore_index=run.data.ignore_index,
                             class_names=list(gzs3.class_names))
    frame = ConfusionMatrix(gzs3.num_classes, ignore_index=run.data.ignore_index,
                            class_names=list(gzs3.class_names))   # after the open-set rule
    threshold, source = resolve_threshold(run.model.unlabeled_threshold, run.model.checkpoint)
    background = list(gzs3.background_ids)
    rank, world = shard
    chosen = images if images is not None else range(len(eval_set))
    indices = chosen[rank::world]
    if progress and rank == 0:
        from tqdm import tqdm
        indices = tqdm(indices, desc="eval", unit="img", dynamic_ncols=True)
    for i in indices:
        image, target = eval_set[i]
        labels, confidence = predict_with_confidence(predict, image.to(device), target.shape, run)
        labels, confidence = labels.cpu().numpy(), confidence.cpu().numpy()
        matrix.update(labels, target)
        if background:
            frame.update(unlabel(labels, confidence, background, threshold, -1), target)
    model.train(was_training)
    if world > 1:  # DDP: sum the confusion counts of all processes
        for m in (matrix, frame):
            counts = torch.from_numpy(m.counts).to(device)
            dist.all_reduce(counts)
            m.counts[:] = counts.cpu().numpy()
    # The GZS3 metrics over the object classes: background targets ignored, its predictions misses
    scored = matrix.without(background)
    position = {class_id: k for k, class_id in enumerate(gzs3.object_ids)}
    stats = scored.summary([position[i] for i in gzs3.seen_object_ids], [position[i] for i in gzs3.unseen_ids])
    summary = {k: float(stats[k]) for k in SUMMARY_KEYS}
    iou = [float(v) for v in scored.iou()]
    whole = whole_frame_numbers(frame, gzs3, threshold, source) if background else {}
    return EvaluationResult(gzs3.name, [gzs3.class_names[i] for i in gzs3.object_ids],
                            [position[i] for i in gzs3.seen_object_ids], [position[i] for i in gzs3.unseen_ids],
                            iou, summary, len(chosen),
                            inference_protocol(run, gzs3_vocabulary(model, run, gzs3.class_names, templates, synonyms)[0]
                                               if templates or synonyms else None), whole)


def write_report(result: EvaluationResult, out_dir: Path) -> dict[str, Path]:
    """metrics.json, metrics.md and per_class_iou.png in `out_dir` (the writers bag-eval uses)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "metrics.json", "markdown": out_dir / "metrics.md",
             "plot": out_dir / "per_class_iou.png"}
    data = result.to_dict()
    write_metrics_json(paths["json"], data)
    paths["markdown"].write_text(result.markdown())
    s = result.summary
    title = (f"{result.dataset}: mIoU seen {100 * s.get('mIoU_seen', math.nan):.1f}, unseen "
             f"{100 * s.get('mIoU_unseen', math.nan):.1f}, hIoU {100 * s.get('hIoU', math.nan):.1f}")
    plot_per_class_iou(paths["plot"], data["per_class_iou"], data["unseen_classes"], title=title)
    return paths
