"""`zs3 bag-eval`: replay a recorded bag through the node's Segmenter and score it.

The image path is the node's: the same conversions (`zs3_core.bags.conversions`), the same
`Segmenter.segment_batch` with an immutable vocabulary snapshot, the same output messages.
A bag of several cameras (several image topics) is replayed as the multi-camera node runs
it: consecutive frames of different cameras under one vocabulary go through one batch, and
each camera is scored against its own ground-truth topic, per camera and overall. What
bag evaluation adds is ground truth (by header stamp), a vocabulary schedule, metrics
(`zs3_core.metrics`) and a report. A corrupt bag stops the replay with a `BagReadError`
but everything scored until then is still written, marked incomplete.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zs3_core.eval_report import (
    latency_stats, plot_confusion_matrix, plot_latency_histogram, plot_per_class_iou,
    write_metrics_json, write_report_md,
)
from zs3_core.metrics import ConfusionMatrix
from zs3_core.bags.annotated_bag import AnnotatedBagWriter
from zs3_core.bags.output_fields import prompt_fields
from zs3_core.prompt_templates import describe_templates
from zs3_core.bags.bag_io import (
    COMPRESSED_TYPES, IMAGE_TYPES, BagReadError, connections_for, decode_label_image, decode_rgb,
    is_rosbag1, iter_messages, open_bag, stamp_ns,
)
from zs3_core.bags.ground_truth import (
    IGNORE, EvaluationClasses, StampMatcher, load_label_png, read_labels_dir,
)
from zs3_core.bags.vocabulary_schedule import VocabularySchedule

log = logging.getLogger(__name__)


@dataclass
class BagEvalOptions:
    bag: Path
    image_topic: str | list[str]                # several: one camera each
    out_dir: Path
    schedule: VocabularySchedule
    labels_topic: str | list[str] | None = None  # several: one per image topic, in the same order
    labels_dir: Path | None = None
    gt_class_names: list[str] | None = None     # GT id → name; default: the evaluation classes
    class_map: dict[str, str] = field(default_factory=dict)
    unseen: list[str] | None = None             # names of unseen classes, for mIoU(S/U), hIoU
    stamp_tolerance_ns: int = 1_000_000
    write_bag: bool = False
    write_bag_storage: str | None = None        # default: the input's rosbag2 storage, else mcap
    node_name: str = "zs3_segmenter"
    max_frames: int | None = None
    progress: bool = True
    plots: bool = True

    def cameras(self) -> list[tuple[str, str | None]]:
        """(image topic, its ground-truth topic or None) per camera."""
        images = [self.image_topic] if isinstance(self.image_topic, str) else list(self.image_topic)
        labels = self.labels_topic if isinstance(self.labels_topic, (list, tuple)) else [self.labels_topic]
        if len(images) > 1 and self.labels_topic is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} image topics need {len(images)} labels topics (one each, same "
                             f"order), got {len(labels)}")
        if len(images) > 1 and self.labels_dir is not None:
            raise ValueError("--labels-dir pairs label PNGs by stamp for one image topic; give one labels "
                             "topic per image topic instead")
        if len(images) > 1 and self.write_bag:
            raise ValueError("--write-bag writes the single-camera node's topics; evaluate one image topic "
                             "at a time to write annotated bags")
        return list(zip(images, labels if len(labels) == len(images) else [labels[0]] * len(images)))


@dataclass
class FrameRecord:
    index: int
    stamp_ns: int
    bag_time_s: float
    vocabulary_version: int
    latency_ms: float                 # decode + segment (the node's receive → publish work)
    inference_ms: float               # inside Segmenter.segment
    miou: float | None = None
    pacc: float | None = None
    topic: str = ""                   # the camera's image topic


@dataclass
class BagEvalResult:
    metrics: dict
    frames: list[FrameRecord]
    confusion: ConfusionMatrix | None
    error: BagReadError | None = None
    annotated_bag: Path | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.error is None


def _storage_of(bag: Path) -> str:
    if is_rosbag1(bag):
        return "ros1"
    return "mcap" if any(Path(bag).glob("*.mcap")) else "sqlite3"


class _Camera:
    """One image topic's scoring: its ground-truth pairing and confusion matrix."""

    def __init__(self, image_topic: str, labels_topic: str | None, num_classes: int, tolerance_ns: int):
        self.image_topic, self.labels_topic = image_topic, labels_topic
        self.matcher = StampMatcher(tolerance_ns)
        self.confusion = ConfusionMatrix(num_classes, ignore_index=IGNORE)
        self.records: list[FrameRecord] = []


class _Pending:
    """A segmented frame waiting for its ground truth."""

    __slots__ = ("record", "labels", "vocab_index")

    def __init__(self, record, labels, vocab_index):
        self.record, self.labels, self.vocab_index = record, labels, vocab_index


def evaluate_bag(segmenter: Any, options: BagEvalOptions) -> BagEvalResult:
    """Segment every image of `options.image_topic`, score against ground truth, write outputs."""
    opts = options
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    eval_names = opts.schedule.all_classes
    for extra in (opts.class_map or {}).values():
        if extra not in eval_names:
            log.warning("class map target %r is in no vocabulary; its pixels are not scored", extra)
    classes = EvaluationClasses(eval_names, opts.gt_class_names or list(eval_names), opts.class_map)
    if classes.unmatched_gt_names:
        log.info("ground-truth classes not in any vocabulary (not scored): %s",
                 ", ".join(classes.unmatched_gt_names[:20]))
    # Encode every vocabulary up front, as the node encodes off the image path.
    vocabularies = [segmenter.encode_vocabulary(list(e.classes), e.template, list(e.templates) or None)
                    for e in opts.schedule.entries]
    for note in {note for v in vocabularies for note in getattr(v, "notes", ())}:
        log.warning("%s", note)
    pred_luts = [classes.prediction_lut(v.names) for v in vocabularies]
    confusion = ConfusionMatrix(len(eval_names), ignore_index=IGNORE, class_names=eval_names)
    cameras = {image: _Camera(image, labels, len(eval_names), opts.stamp_tolerance_ns)
               for image, labels in opts.cameras()}
    by_labels = {c.labels_topic: c for c in cameras.values() if c.labels_topic}
    records: list[FrameRecord] = []
    error: BagReadError | None = None
    # Frames of one batch: one per camera, one vocabulary, at most what the backend serves.
    served = getattr(getattr(segmenter, "backend", None), "max_batch", None)
    batch_limit = min(len(cameras), served) if served else len(cameras)

    reader = open_bag(opts.bag)
    annotated = None
    try:
        image_conns = [c for topic in cameras for c in connections_for(reader, topic, IMAGE_TYPES + COMPRESSED_TYPES)]
        label_conns = [c for topic in by_labels for c in connections_for(reader, topic, IMAGE_TYPES + COMPRESSED_TYPES)]
        label_files = read_labels_dir(opts.labels_dir) if opts.labels_dir else None
        if opts.write_bag:
            storage = opts.write_bag_storage or {"ros1": "mcap"}.get(_storage_of(opts.bag), _storage_of(opts.bag))
            annotated = AnnotatedBagWriter(opts.out_dir / "annotated_bag", storage, opts.node_name,
                                           backend=getattr(segmenter, "backend_name", ""))
        total = sum(c.msgcount for c in image_conns)
        if opts.max_frames:
            total = min(total, opts.max_frames)
        start_ns = reader.reader.start_time
        threshold = float(getattr(segmenter, "unlabeled_threshold", 0.0))
        current = -1

        def score(camera: _Camera, pending: _Pending, gt: np.ndarray) -> None:
            vocab_names = vocabularies[pending.vocab_index].names
            if gt.shape != pending.labels.shape:
                raise ValueError(f"ground truth at stamp {pending.record.stamp_ns} is "
                                 f"{gt.shape[1]}x{gt.shape[0]} but the image is "
                                 f"{pending.labels.shape[1]}x{pending.labels.shape[0]}")
            pred = pred_luts[pending.vocab_index][pending.labels]
            target = classes.target(gt, vocab_names)
            frame_cm = ConfusionMatrix(len(eval_names), ignore_index=IGNORE).update(pred, target)
            confusion.merge(frame_cm)
            camera.confusion.merge(frame_cm)
            if frame_cm.counts.sum():
                pending.record.miou = frame_cm.summary()["mIoU"]
                pending.record.pacc = frame_cm.pixel_accuracy()

        batch: list[tuple[Any, np.ndarray, float, float]] = []   # (message, rgb, bag time, t0)

        def segment_batch() -> None:
            """Segment the batch in one call; record, write and pair each frame."""
            nonlocal current
            if not batch:
                return
            vi = opts.schedule.index_at(batch[0][2])
            results = _segment_batch(segmenter, [rgb for _, rgb, _, _ in batch], vocabularies[vi])
            done = time.perf_counter()
            for (message, rgb, bag_time, t0), result in zip(batch, results):
                camera = cameras[message.topic]
                latency = (done - t0) * 1e3
                stamp = stamp_ns(message.msg)
                record = FrameRecord(len(records), stamp, bag_time, vocabularies[vi].vocabulary_version, latency,
                                     float(result.timings.get("total", 0.0)), topic=message.topic)
                records.append(record)
                camera.records.append(record)
                if annotated is not None:
                    if vi != current:
                        annotated.write_label_info(message.log_time_ns, vocabularies[vi], threshold)
                    annotated.write_frame(message.log_time_ns, stamp, str(message.msg.header.frame_id),
                                          rgb, result, vocabularies[vi], latency)
                current = vi
                pending = _Pending(record, result.labels, vi)
                if label_files is not None:
                    key = min(label_files, key=lambda s: abs(s - stamp))
                    if abs(key - stamp) <= opts.stamp_tolerance_ns:
                        score(camera, pending, load_label_png(label_files[key]))
                    else:
                        camera.matcher.frames_without_gt += 1
                elif camera.labels_topic:
                    pair = camera.matcher.add_frame(stamp, pending)
                    if pair:
                        score(camera, *pair)
                bar.update(1)
            batch.clear()

        from tqdm import tqdm
        bar = tqdm(total=total, unit="frame", desc="bag-eval", disable=not opts.progress)
        loop_start = time.perf_counter()
        try:
            for message in iter_messages(reader, image_conns + label_conns):
                if message.topic in by_labels:
                    camera = by_labels[message.topic]
                    pair = camera.matcher.add_labels(stamp_ns(message.msg), decode_label_image(message))
                    if pair:
                        score(camera, *pair)
                    continue
                if opts.max_frames and len(records) + len(batch) >= opts.max_frames:
                    if not label_conns:
                        break
                    continue
                t0 = time.perf_counter()
                rgb = decode_rgb(message)
                bag_time = (message.log_time_ns - start_ns) / 1e9
                if batch and (message.topic in {m.topic for m, _, _, _ in batch}
                              or opts.schedule.index_at(bag_time) != opts.schedule.index_at(batch[0][2])):
                    segment_batch()    # a camera's next frame, or a vocabulary change: a new batch
                batch.append((message, rgb, bag_time, t0))
                if len(batch) == batch_limit:
                    segment_batch()
            segment_batch()
        except BagReadError as err:
            error = err
            log.error("%s", err)
        finally:
            bar.close()
        wall = time.perf_counter() - loop_start
        for camera in cameras.values():
            camera.matcher.finish()
    finally:
        reader.close()
        if annotated is not None:
            annotated.close()

    unseen = [n for n in (opts.unseen or []) if n in eval_names]
    split = None
    if opts.unseen is not None:
        unseen_ids = [eval_names.index(n) for n in unseen]
        split = ([i for i in range(len(eval_names)) if i not in unseen_ids], unseen_ids)
    has_gt = bool(label_conns or opts.labels_dir)
    metrics = {
        "source": str(opts.bag),
        "image_topic": opts.image_topic,
        "labels": opts.labels_topic or (str(opts.labels_dir) if opts.labels_dir else None),
        "complete": error is None,
        "error": str(error) if error else None,
        "backend": getattr(segmenter, "backend_name", ""),
        **_frame_counts(list(cameras.values()), records, has_gt),
        "throughput_fps": len(records) / wall if wall > 0 else 0.0,
        "classes": eval_names,
        "unseen_classes": unseen,
        "vocabulary_schedule": [{"at": e.at_s, "classes": list(e.classes), "version": v.vocabulary_version,
                                 "templates": describe_templates(tuple(prompt_fields(v)["prompt_templates"]))}
                                for e, v in zip(opts.schedule.entries, vocabularies)],
        "latency_ms": _latency(records),
        "aggregate": confusion.summary(*(split or (None, None))) if has_gt else {},
        "per_frame": [r.__dict__ for r in records],
    }
    if len(cameras) > 1:   # the same figures for each camera; the ones above cover all of them
        metrics["per_camera"] = {
            topic: {**_frame_counts([camera], camera.records, has_gt), "latency_ms": _latency(camera.records),
                    "aggregate": camera.confusion.summary(*(split or (None, None))) if has_gt else {}}
            for topic, camera in cameras.items()}
    result = BagEvalResult(metrics, records, confusion if has_gt else None, error,
                           annotated.path if annotated else None)
    result.files = write_outputs(result, opts)
    return result


def _segment_batch(segmenter: Any, frames: list[np.ndarray], vocabulary: Any) -> list:
    """`segmenter.segment_batch`, or frame by frame for a segmenter that has only `segment`."""
    if hasattr(segmenter, "segment_batch"):
        return segmenter.segment_batch(frames, vocabulary=vocabulary)
    return [segmenter.segment(rgb, vocabulary=vocabulary) for rgb in frames]


def _frame_counts(cameras: list[_Camera], records: list[FrameRecord], has_gt: bool) -> dict:
    without_gt = sum(c.matcher.frames_without_gt for c in cameras)
    return {"frames": len(records),
            "frames_scored": sum(r.miou is not None for r in records) if has_gt else 0,
            "frames_without_gt": without_gt if has_gt else len(records),
            "gt_without_frame": sum(c.matcher.gt_without_frame for c in cameras)}


def _latency(records: list[FrameRecord]) -> dict:
    return {"frame": latency_stats([r.latency_ms for r in records]),
            "inference": latency_stats([r.inference_ms for r in records])}


def write_outputs(result: BagEvalResult, opts: BagEvalOptions) -> list[Path]:
    """metrics.json, plots and report.md into `opts.out_dir`."""
    out = opts.out_dir
    plots: list[Path] = []
    if opts.plots:
        lat = [r.latency_ms for r in result.frames]
        if lat:
            plots.append(plot_latency_histogram(out / "latency_histogram.png", lat))
        if result.confusion is not None and result.confusion.counts.sum():
            plots.append(plot_per_class_iou(out / "per_class_iou.png",
                                            result.metrics["aggregate"]["per_class_iou"],
                                            result.metrics["unseen_classes"]))
            plots.append(plot_confusion_matrix(out / "confusion_matrix.png", result.confusion.matrix,
                                               result.metrics["classes"]))
    files = [write_metrics_json(out / "metrics.json", result.metrics)]
    files.append(write_report_md(out / "report.md", result.metrics, [p.name for p in plots]))
    return files + plots
