"""`make demo`: the live zs3_segmenter node on a synthetic camera stream.

    python -m zs3_ros.demo --out demo_out [--seed 0] [--frames 30] [--fps 5] [--config config/segment.yaml]
                           [--figure docs/demo_overlay.png]

Starts the node in-process with the parameter file (the same path as `ros2 run zs3_ros
zs3_segmenter --ros-args --params-file ...`), publishes moving coloured shapes over DDS,
changes the vocabulary once through ~/set_vocabulary half way, and writes what came back.
The first vocabulary holds only the synthetic world's seen classes (what its LDVC/DeOP
configs train on); the second adds the held-out (unseen) classes, and the stream always
shows one of them, so with trained weights the change is visible as an unseen object
getting its name. The shapes move within the world's own rules (no object hides more than
`max_occlusion` of another; they bounce off each other), so the model sees scenes of the
distribution it was trained and evaluated on; `--seed` picks another stream.

The score is the mean IoU over every unseen object in view: per frame, the mean over that
frame's unseen objects; overall, the mean over every (frame, unseen object) pair segmented
with one vocabulary. Each object's IoU counts every pixel the node labelled with its class
anywhere in the frame, background included (what a user of ~/labels sees), and is 0 while
the class is not in the vocabulary.

    demo_out/labels/frame_NNN.png   label images as published (mono8/mono16 class ids)
    demo_out/overlay_strip.png      input frames over their overlays, region names, "*" = unseen
    demo_out/frames.jsonl           one line per frame: vocabulary version, classes present,
                                    IoU of each unseen object and their mean, latency
    demo_out/summary.json           vocabularies, counts, mean unseen IoU before/after (overall,
                                    per frame, per class), weights note

`--figure PATH` also writes the overlay strip to PATH (the README figure:
`python -m zs3_ros.demo --figure docs/demo_overlay.png`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from zs3_core import visualize
from zs3_core.bags.conversions import image_to_numpy
from zs3_core.synthetic import BACKGROUND_NAME
from zs3_ros.synthetic_camera import moving_scenes, running_segmenter, world_class_names

log = logging.getLogger("zs3_ros.demo")
ROOT = Path(__file__).resolve().parent.parent
# "background" is a class the synthetic models train on; the node publishes it as unlabeled
FIRST_VOCABULARY = world_class_names(which="seen") + [BACKGROUND_NAME]   # what the synthetic models train on
SECOND_VOCABULARY = world_class_names(which="all") + [BACKGROUND_NAME]   # + the held-out classes
UNSEEN = world_class_names(which="unseen")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_out", help="output folder (created)")
    parser.add_argument("--frames", type=int, default=30, help="frames to publish (>= 20)")
    parser.add_argument("--fps", type=float, default=5.0, help="camera rate")
    parser.add_argument("--size", default="256x256", help="frame size HxW")
    parser.add_argument("--config", default=str(ROOT / "config" / "segment.yaml"), help="node parameter file")
    parser.add_argument("--strip", type=int, default=6, help="frames in the overlay strip")
    parser.add_argument("--seed", type=int, default=0, help="camera stream seed (which objects, how they move)")
    parser.add_argument("--figure", default=None, help="also write the overlay strip here (e.g. docs/demo_overlay.png)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    height, width = (int(v) for v in args.size.lower().split("x"))
    scenes = list(moving_scenes(args.frames, size=(height, width), fps=args.fps, seed=args.seed))
    frames = [scene.image for scene in scenes]
    switch_at = len(frames) // 2
    records, strip = [], []
    strip_at = set(np.linspace(0, len(frames) - 1, args.strip).round().astype(int).tolist())

    with running_segmenter(params_file=args.config, parameters={"classes": FIRST_VOCABULARY},
                           overlay=True) as (node, client):
        weights_note = node.weights_note   # the node's own plain statement (empty when weights are trained)
        if weights_note:
            log.warning("NOTE: %s", weights_note)
        first = client.get_vocabulary()
        keys, reply, pending = [], None, None
        period = 1.0 / args.fps
        start = time.monotonic()
        for i, frame in enumerate(frames):
            if i == switch_at:
                pending = client.set_vocabulary_async(SECOND_VOCABULARY)   # the stream keeps going
            keys.append(client.publish(frame))
            time.sleep(max(0.0, start + (i + 1) * period - time.monotonic()))
            if pending is not None and pending.done():
                reply, pending = pending.result(), None
        deadline = time.monotonic() + 60
        while pending is not None and not pending.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pending is not None:
            reply = pending.result() if pending.done() else None
        client.wait_outputs(keys[-1], timeout=30, kinds=("labels", "info", "overlay"))
        if reply is None or not reply.success:
            raise RuntimeError(f"the vocabulary change failed: {getattr(reply, 'message', 'no reply')}")
        log.info("vocabulary v%d -> v%d (%d classes) at frame %d: %s", first.vocabulary_version,
                 reply.vocabulary_version, len(reply.class_names), switch_at, reply.message)

        for i, key in enumerate(keys):
            outputs = client.frames.get(key)
            record = {"frame": i, "stamp": f"{key[0]}.{key[1]:09d}"}
            if outputs is None or outputs.labels is None or outputs.info is None:
                record.update(published=False, note="superseded by a newer frame (newest frame wins)")
                records.append(record)
                continue
            labels = image_to_numpy(outputs.labels)
            info = outputs.info
            present = [name for name, fraction in zip(info.class_names, info.pixel_fraction) if fraction > 0]
            visualize.write_label_png(out / "labels" / f"frame_{i:03d}.png", labels)
            unseen_iou = unseen_object_iou(scenes[i], labels, info.class_names)
            record.update(published=True, vocabulary_version=info.vocabulary_version, num_classes=len(info.class_names),
                          classes_present=present, unseen_iou=unseen_iou,
                          mean_unseen_iou=round(float(np.mean(list(unseen_iou.values()))), 4) if unseen_iou else None,
                          latency_ms=round(info.latency_ms, 2),
                          inference_ms=round(info.inference_ms, 2),
                          round_trip_ms=round((outputs.arrived["labels"] - outputs.published_at) * 1000, 2))
            records.append(record)
            if i in strip_at and outputs.overlay is not None:
                named = visualize.name_regions(image_to_numpy(outputs.overlay), labels, info.class_names, UNSEEN)
                strip.append(np.concatenate([frames[i], named], axis=0))
        counters = node.frame_counters()

    with open(out / "frames.jsonl", "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    if strip:
        visualize.write_rgb_png(out / "overlay_strip.png", np.concatenate(strip, axis=1))
        if args.figure:
            visualize.write_rgb_png(Path(args.figure), np.concatenate(strip, axis=1))
    published = [r for r in records if r.get("published")]
    summary = {
        "weights": weights_note or "trained weights",
        "random_weights": bool(weights_note),
        "stream_seed": args.seed,
        "frames_published": len(frames), "frames_segmented": len(published),
        "node_counters": counters,
        "vocabulary_before": {"version": first.vocabulary_version, "classes": list(first.class_names)},
        "vocabulary_after": {"version": reply.vocabulary_version, "classes": list(reply.class_names),
                             "encode_time_ms": round(reply.encode_time_ms, 1), "requested_at_frame": switch_at},
        "median_latency_ms": float(np.median([r["latency_ms"] for r in published])) if published else None,
        "unseen_iou": {"before": unseen_iou_summary(published, first.vocabulary_version),
                       "after": unseen_iou_summary(published, reply.vocabulary_version)},
        "per_frame": [{k: r[k] for k in ("frame", "vocabulary_version", "mean_unseen_iou", "unseen_iou")}
                      for r in published],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def unseen_object_iou(scene, labels: np.ndarray, class_names) -> dict[str, float]:
    """IoU of each unseen object in the frame against its ground truth (0 while the class is
    not in the vocabulary: nothing can be labelled with a name the node was not given). Every
    pixel the node labels with the class counts, background included: what a user sees."""
    result = {}
    for cid in scene.class_ids:
        name = SECOND_VOCABULARY[cid]
        if name not in UNSEEN:
            continue
        truth = scene.labels == cid
        predicted = labels == list(class_names).index(name) if name in class_names else np.zeros_like(truth)
        union = np.logical_or(truth, predicted).sum()
        result[name] = round(float(np.logical_and(truth, predicted).sum() / union), 4) if union else 0.0
    return result


def unseen_iou_summary(records: list, version: int) -> dict:
    """The frames segmented with vocabulary `version`: the mean IoU over every (frame, unseen
    object) pair ("mean"), each frame's mean ("per_frame", frame index -> mean) and each
    unseen class's mean over the frames that show it ("per_class")."""
    pairs, per_frame, per_class = [], {}, {}
    for r in records:
        if r.get("vocabulary_version") != version or not r["unseen_iou"]:
            continue
        per_frame[r["frame"]] = r["mean_unseen_iou"]
        for name, iou in r["unseen_iou"].items():
            pairs.append(iou)
            per_class.setdefault(name, []).append(iou)
    return {"mean": round(float(np.mean(pairs)), 4) if pairs else None,
            "objects": len(pairs), "frames": len(per_frame), "per_frame": per_frame,
            "per_class": {name: round(float(np.mean(v)), 4) for name, v in per_class.items()}}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="[demo] %(message)s")
    args = parse_args(argv)
    if args.frames < 20:
        log.error("--frames must be at least 20")
        return 2
    summary = run(args)
    versions = sorted({r for r in [summary["vocabulary_before"]["version"], summary["vocabulary_after"]["version"]]})
    log.info("%d of %d frames segmented, vocabulary versions %s, median latency %.1f ms",
             summary["frames_segmented"], summary["frames_published"], versions, summary["median_latency_ms"] or 0)
    for record in summary["per_frame"]:
        log.info("frame %3d, vocabulary v%d: mean unseen IoU %s %s", record["frame"], record["vocabulary_version"],
                 "-" if record["mean_unseen_iou"] is None else f"{record['mean_unseen_iou']:.2f}",
                 " ".join(f"({name} {iou:.2f})" for name, iou in record["unseen_iou"].items()))
    before, after = summary["unseen_iou"]["before"], summary["unseen_iou"]["after"]
    log.info("mean unseen IoU (whole frame, every unseen object in view): %s before the vocabulary change "
             "(%d objects in %d frames), %s after (%d objects in %d frames)",
             _fmt(before["mean"]), before["objects"], before["frames"],
             _fmt(after["mean"]), after["objects"], after["frames"])
    log.info("wrote %s (labels/, overlay_strip.png, frames.jsonl, summary.json)", args.out)
    if summary["random_weights"]:
        log.warning("NOTE: the weights are RANDOM; the labels show the pipeline working, not real segmentation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
