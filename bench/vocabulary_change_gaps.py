"""Output gaps while a large vocabulary encodes: the node under each rclpy executor.

    python bench/vocabulary_change_gaps.py [--rounds 6] [--classes 432] [--config config/models/clip_baseline_tiny.yaml]
    python bench/vocabulary_change_gaps.py --classes 20 --templates imagenet --executors single-threaded \
        [--config config/models/clip_baseline_vitb16.yaml --input-size 64]

A 5 Hz camera streams while the operator asks for a vocabulary of `--classes` new names
(the live-robot case of tests/test_node_vocabulary.py). Rounds alternate between a node
spun by SingleThreadedExecutor (what `zs3_ros.node.main` uses) and one spun by
MultiThreadedExecutor, so machine load hits both alike. Printed per executor: the largest
output gap of each round, the share of rounds over the limit (two input periods, 0.4 s at 5 Hz),
and the median encode time. Target: no gap over the limit with the single-threaded executor.
With `--templates` the new vocabulary is asked in a template ensemble (e.g. CLIP's 80
"imagenet" templates: 20 classes make 1,600 sentences), the text-encoder work that ensembles
multiply; `--input-size` shrinks the image path (a ViT-B/16 at 512² takes seconds per frame on
2 cores, which would hide the encoder's effect on the stream). Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402

from zs3_ros.synthetic_camera import (moving_shapes, running_segmenter,  # noqa: E402
                                      stream_while_changing_vocabulary, world_class_names)

INITIAL = ["red circle", "green square", "blue triangle"]
PERIOD_S = 0.2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "models" / "clip_baseline_tiny.yaml"))
    parser.add_argument("--rounds", type=int, default=6, help="rounds per executor")
    parser.add_argument("--classes", type=int, default=432, help="size of the new vocabulary")
    parser.add_argument("--templates", action="append", default=[],
                        help="ask in this template ensemble (templates or set names such as imagenet; repeatable)")
    parser.add_argument("--executors", nargs="+", default=["single-threaded", "multi-threaded"],
                        choices=["single-threaded", "multi-threaded"])
    parser.add_argument("--input-size", type=int, default=0, help="node input_size (0: the model config's)")
    args = parser.parse_args(argv)

    frames = list(moving_shapes(10, size=(48, 64)))
    params = {"classes": INITIAL, "qos_reliability": "reliable", "model_config": args.config,
              "input_size": args.input_size}
    executors = {name: {"single-threaded": SingleThreadedExecutor, "multi-threaded": MultiThreadedExecutor}[name]
                 for name in args.executors}
    gaps = {name: [] for name in executors}
    encode_ms = {name: [] for name in executors}
    base = world_class_names()
    for round_index in range(args.rounds):
        for name, executor_type in executors.items():
            # Fresh names every round: the text cache must not answer for the encoder.
            names = [f"{base[i % len(base)]} number {i} {name} {round_index}" for i in range(args.classes)]
            with running_segmenter(parameters=params, executor_type=executor_type) as (_, client):
                run = stream_while_changing_vocabulary(client, frames, names, period_s=PERIOD_S,
                                                       prompt_templates=args.templates, timeout_s=900.0)
            if run.reply is None or not run.reply.success:
                print(f"{name}: round {round_index} got no successful reply", file=sys.stderr)
                return 1
            if round_index == 0:
                print(f"{name}: {run.reply.message}", flush=True)
            gaps[name].append(run.max_gap_s())
            encode_ms[name].append(run.reply.encode_time_ms)
            print(f"round {round_index} {name:16s} max gap {run.max_gap_s():.3f} s, "
                  f"encode {run.reply.encode_time_ms:.0f} ms", flush=True)

    limit = 2 * PERIOD_S + 0.05
    templates = f" x {len(run.reply.prompt_templates)} templates" if args.templates else ""
    print(f"\n{args.classes} classes{templates}, 5 Hz input, limit {limit:.2f} s; {args.rounds} rounds each")
    for name in executors:
        over = sum(g > limit for g in gaps[name])
        print(f"{name:16s} largest gap {min(gaps[name]):.2f}-{max(gaps[name]):.2f} s, "
              f"{over}/{args.rounds} rounds over, median encode {statistics.median(encode_ms[name]):.0f} ms")
    if len(executors) == 2:
        ratio = max(gaps["multi-threaded"]) / max(gaps["single-threaded"])
        print(f"worst gap, multi- / single-threaded: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
