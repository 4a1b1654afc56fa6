"""`zs3 bag-eval BAG --image-topic T [--labels-topic L | --labels-dir D] --out DIR [--write-bag]`.

Several cameras: `--image-topic /front/image /rear/image --labels-topic /front/labels
/rear/labels` (one labels topic per image topic, same order) scores each camera and all
together, segmenting the cameras' frames in batches as the multi-camera node does.

Bag reading needs ROS message handling, which lives in zs3_ros; it is imported only when
this command runs, so `zs3` itself stays ROS-free.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zs3_core.commands.segment import add_model_arguments, add_templates_argument

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bag-eval", help="replay a bag through the segmenter; metrics, plots, annotated bag",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 directory (sqlite3 or mcap) or ROS 1 .bag file")
    p.add_argument("--image-topic", default=None, nargs="+",
                   help="sensor_msgs/Image or CompressedImage topic(s), one per camera (default: the ones "
                        "`zs3 make-bag` recorded)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--labels-topic", default=None, nargs="+",
                    help="ground-truth label images (mono8/mono16 or PNG), one topic per image topic")
    gt.add_argument("--labels-dir", default=None, help="ground-truth PNGs named <header stamp ns>.png")
    p.add_argument("--no-labels", action="store_true", help="ignore ground truth the bag carries")
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument("--classes", default=None, help='comma-separated class names, each with optional '
                       '"|"-separated synonyms, e.g. "person|pedestrian,forklift"')
    vocab.add_argument("--vocabulary", default=None, help="file of class names (YAML list or one a line)")
    vocab.add_argument("--vocabulary-schedule", default=None,
                       help="YAML list of {at: seconds from bag start, classes: [...]}: live vocabulary changes")
    p.add_argument("--template", default=None, help='prompt template with one "{}"')
    add_templates_argument(p)
    p.add_argument("--gt-classes", default=None,
                   help="ground-truth id → name file (YAML list/mapping or one a line); default: bag metadata")
    p.add_argument("--class-map", default=None, help='"gt_name=vocabulary_name,..." or a YAML mapping file')
    p.add_argument("--unseen", default=None, help="comma-separated unseen classes for mIoU(S/U) and hIoU")
    p.add_argument("--stamp-tolerance", type=float, default=0.001,
                   help="seconds between image and label header stamps that still match (default 0.001)")
    p.add_argument("--out", required=True, help="output directory (metrics.json, report.md, plots)")
    p.add_argument("--write-bag", action="store_true", help="also write the node's output topics as a bag")
    p.add_argument("--write-bag-storage", choices=["sqlite3", "mcap"], default=None)
    p.add_argument("--node-name", default="zs3_segmenter", help="namespace of the written output topics")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zs3_core import Segmenter
    from zs3_core.vocabulary import VocabularyError, parse_class_list
    from zs3_core.bags.bag_eval import BagEvalOptions, evaluate_bag
    from zs3_core.bags.bag_io import BagError, read_class_metadata
    from zs3_core.bags.ground_truth import GroundTruthError, load_class_map, load_gt_class_names
    from zs3_core.bags.vocabulary_schedule import (
        ScheduleError, VocabularySchedule, load_schedule_file, load_vocabulary_file,
    )

    bag = Path(args.bag)
    meta = read_class_metadata(bag) if bag.exists() else None
    meta = meta or {}
    try:
        if args.vocabulary_schedule:
            schedule = load_schedule_file(args.vocabulary_schedule)
        elif args.vocabulary:
            schedule = load_vocabulary_file(args.vocabulary)
        elif args.classes:
            schedule = VocabularySchedule.single(parse_class_list(args.classes), args.template, args.templates)
        elif meta.get("class_names"):
            schedule = VocabularySchedule.single(meta["class_names"], args.template, args.templates)
        else:
            log.error("no vocabulary: give --classes, --vocabulary or --vocabulary-schedule")
            return 2
        image_topic = _one_or_list(args.image_topic) or meta.get("image_topic")
        if not image_topic:
            log.error("--image-topic is required (the bag has no zs3 metadata naming it)")
            return 2
        labels_topic = _one_or_list(args.labels_topic) or (None if args.labels_dir or args.no_labels
                                             else meta.get("labels_topic"))
        options = BagEvalOptions(
            bag=bag, image_topic=image_topic, out_dir=Path(args.out), schedule=schedule,
            labels_topic=labels_topic, labels_dir=Path(args.labels_dir) if args.labels_dir else None,
            gt_class_names=(load_gt_class_names(args.gt_classes) if args.gt_classes
                            else meta.get("class_names")),
            class_map=load_class_map(args.class_map),
            unseen=parse_class_list(args.unseen) if args.unseen else meta.get("unseen"),
            stamp_tolerance_ns=int(round(args.stamp_tolerance * 1e9)),
            write_bag=args.write_bag, write_bag_storage=args.write_bag_storage,
            node_name=args.node_name, max_frames=args.max_frames, progress=not args.no_progress)
        seg = Segmenter.from_config(args.config, checkpoint=args.checkpoint, backend=args.backend,
                                    device=args.device, precision=args.precision)
        result = evaluate_bag(seg, options)
    except (BagError, ScheduleError, GroundTruthError, VocabularyError, FileNotFoundError,
            FileExistsError, ValueError) as err:
        log.error("%s", err)
        return 2
    print(summary_table(result.metrics))
    print(f"wrote {', '.join(str(f) for f in result.files)}"
          + (f"; annotated bag {result.annotated_bag}" if result.annotated_bag else ""))
    if not result.complete:
        log.error("incomplete evaluation (results so far were written): %s", result.metrics["error"])
        return 2
    return 0


def _one_or_list(values):
    """One topic as a string (the single-camera metrics keep their shape), several as a list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def summary_table(metrics: dict) -> str:
    """The few numbers a user looks at first, as an aligned text table."""
    agg = metrics.get("aggregate", {})
    lat = metrics["latency_ms"]["frame"]
    rows = [("frames", str(metrics["frames"])), ("frames scored", str(metrics["frames_scored"]))]
    for key in ("mIoU", "mIoU_seen", "mIoU_unseen", "hIoU", "pAcc"):
        if agg.get(key) is not None and agg[key] == agg[key]:
            rows.append((key, f"{100 * agg[key]:.1f} %"))
    if lat["p50"] is not None:
        rows.append(("latency p50 / p99", f"{lat['p50']:.1f} / {lat['p99']:.1f} ms"))
    rows.append(("throughput", f"{metrics['throughput_fps']:.1f} frames/s"))
    for topic, camera in metrics.get("per_camera", {}).items():
        miou = camera["aggregate"].get("mIoU")
        rows.append((topic, f"{camera['frames']} frames" + (f", mIoU {100 * miou:.1f} %" if miou is not None else "")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
