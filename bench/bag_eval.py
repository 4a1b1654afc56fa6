"""Bag-eval throughput ÷ Segmenter alone on the same frames (target ≥ 0.9).

    python bench/bag_eval.py [--frames 30] [--size 320x240] [--rounds 3] [--write-bag]
                             [--config config/models/clip_baseline_tiny.yaml]

A synthetic bag is written to a temporary directory; then, round by round in one process,
`evaluate_bag` replays it (read, decode, segment, ground-truth matching, metrics; plots
and report excluded) and the same Segmenter segments the same decoded frames in a plain
loop. Rounds alternate so machine load hits both alike; the ratio is of the median rounds.
Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zs3_core.segmenter import Segmenter  # noqa: E402
from zs3_core.bags.bag_eval import BagEvalOptions, evaluate_bag  # noqa: E402
from zs3_core.bags.bag_io import connections_for, decode_rgb, iter_messages, open_bag  # noqa: E402
from zs3_core.bags.sample_bag import write_sample_bag  # noqa: E402
from zs3_core.bags.vocabulary_schedule import VocabularySchedule  # noqa: E402


class _NullSegmenter:
    """Segmenter stand-in that returns at once: what remains is bag-eval's own work."""

    backend_name = "null"
    unlabeled_threshold = 0.0

    def encode_vocabulary(self, names, template=None, templates=None):
        from types import SimpleNamespace
        return SimpleNamespace(names=tuple(names), template="{}", vocabulary_version=1, unlabeled_value=255)

    def segment(self, rgb, vocabulary):
        import numpy as np
        from zs3_core.segmenter import SegmentationResult
        h, w, n = rgb.shape[0], rgb.shape[1], len(vocabulary.names)
        return SegmentationResult(np.zeros((h, w), np.uint8), np.ones((h, w), np.float32),
                                  np.zeros(n, np.float32), np.zeros(n, np.float32), 1, 255, {"total": 0.0})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config/models/clip_baseline_tiny.yaml"))
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write-bag", action="store_true", help="include writing the annotated bag")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    seg = Segmenter.from_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_bag(Path(tmp) / "bench", "sqlite3", seconds=args.frames / 10, fps=10,
                                  image_size=(height, width))
        vocab = seg.encode_vocabulary(sample.class_names)
        bag = open_bag(sample.path)
        frames = [decode_rgb(m) for m in iter_messages(bag, connections_for(bag, sample.image_topic))]
        bag.close()
        seg.segment(frames[0], vocabulary=vocab)                     # warm-up
        eval_fps, alone_fps = [], []
        for r in range(args.rounds):
            opts = BagEvalOptions(sample.path, sample.image_topic, Path(tmp) / f"out{r}",
                                  VocabularySchedule.single(sample.class_names),
                                  labels_topic=sample.labels_topic, gt_class_names=sample.class_names,
                                  unseen=sample.unseen, progress=False, plots=False,
                                  write_bag=args.write_bag)
            t0 = time.perf_counter()
            result = evaluate_bag(seg, opts)
            eval_fps.append(result.metrics["frames"] / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for rgb in frames:
                seg.segment(rgb, vocabulary=vocab)
            alone_fps.append(len(frames) / (time.perf_counter() - t0))
    best_eval, best_alone = statistics.median(eval_fps), statistics.median(alone_fps)
    print(f"frames {len(frames)} at {width}x{height}, backend {seg.backend_name}, "
          f"annotated bag {'on' if args.write_bag else 'off'}")
    print(f"bag-eval  {best_eval:7.2f} frames/s  (rounds: {', '.join(f'{v:.2f}' for v in eval_fps)})")
    print(f"segmenter {best_alone:7.2f} frames/s  (rounds: {', '.join(f'{v:.2f}' for v in alone_fps)})")
    print(f"ratio bag-eval / segmenter = {best_eval / best_alone:.3f}  (target >= 0.9)")
    # Load-robust cross-check: the pipeline's own cost per frame, with a segmenter that does nothing.
    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_bag(Path(tmp) / "null", "sqlite3", seconds=args.frames / 10, fps=10,
                                  image_size=(height, width))
        opts = BagEvalOptions(sample.path, sample.image_topic, Path(tmp) / "out",
                              VocabularySchedule.single(sample.class_names), labels_topic=sample.labels_topic,
                              gt_class_names=sample.class_names, progress=False, plots=False,
                              write_bag=args.write_bag)
        t0 = time.perf_counter()
        frames_done = evaluate_bag(_NullSegmenter(), opts).metrics["frames"]
        overhead = (time.perf_counter() - t0) / frames_done
    per_frame = 1 / best_alone
    print(f"bag-eval overhead {overhead * 1e3:.2f} ms/frame vs segmenter {per_frame * 1e3:.1f} ms/frame "
          f"-> implied ratio {per_frame / (per_frame + overhead):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
