"""Node overhead: (image published → labels received) ÷ (Segmenter.segment on the same image).

    python bench/node_overhead.py [--frames 8] [--size 512] [--config config/models/clip_baseline_vitb16.yaml]

Both are measured in the same process on the same Segmenter instance (CLIP ViT-B/16
baseline, random weights), alternating node round trip and direct call frame by frame so
machine load hits both alike; the ratio of medians is printed. Target: ≤ 1.10 — the node
(DDS transport both ways, conversion, label/confidence/info publishing) adds at most 10 %.
Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zs3_core.segmenter import Segmenter  # noqa: E402
from zs3_ros.synthetic_camera import moving_shapes, running_segmenter  # noqa: E402

CLASSES = ["red circle", "green square", "blue triangle", "yellow ring", "purple cross", "cyan star"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "models" / "clip_baseline_vitb16.yaml"))
    parser.add_argument("--size", type=int, default=512, help="square frame size in pixels")
    parser.add_argument("--frames", type=int, default=8, help="measured frames (after 2 warm-up frames)")
    parser.add_argument("--reliability", default="best_effort", choices=["best_effort", "reliable"],
                        help="input QoS of the node (best_effort is the shipped default)")
    args = parser.parse_args(argv)

    segmenter = Segmenter.from_config(args.config)
    segmenter.encode_vocabulary(CLASSES)   # warm-up: the first encode loads the tokenizer
    frames = list(moving_shapes(args.frames + 2, size=(args.size, args.size)))
    params = {"classes": CLASSES, "qos_reliability": args.reliability,
              "model_config": args.config, "publish_overlay": False}
    node_ms, direct_ms, in_node_ms = [], [], []
    with running_segmenter(parameters=params, segmenter=segmenter) as (node, client):
        for i, frame in enumerate(frames):
            key = client.publish(frame)
            outputs = client.wait_outputs(key, timeout=120, kinds=("labels", "confidence", "info"))
            if outputs is None:
                print(f"frame {i}: no labels within 120 s (lost on the way?)", file=sys.stderr)
                continue
            round_trip = (outputs.arrived["labels"] - outputs.published_at) * 1000
            t0 = time.perf_counter()
            result = segmenter.segment(frame, vocabulary=node.vocabulary)
            direct = (time.perf_counter() - t0) * 1000
            assert result.labels.shape == (args.size, args.size)
            if i >= 2:   # warm-up frames fill caches and allocators for both paths
                node_ms.append(round_trip)
                direct_ms.append(direct)
                in_node_ms.append(outputs.info.inference_ms)
            print(f"frame {i}: node {round_trip:8.1f} ms   segment() {direct:8.1f} ms"
                  f"{'   (warm-up)' if i < 2 else ''}")
    if not node_ms:
        print("no frames measured", file=sys.stderr)
        return 1
    node_median, direct_median = statistics.median(node_ms), statistics.median(direct_ms)
    ratio = node_median / direct_median
    print(f"\n{Path(args.config).name}, {args.size}x{args.size}, {len(node_ms)} frames, "
          f"backend {segmenter.backend_name}")
    print(f"median node round trip {node_median:.1f} ms, median Segmenter.segment {direct_median:.1f} ms, "
          f"overhead {node_median - direct_median:+.1f} ms")
    paired = statistics.median(n / s for n, s in zip(node_ms, in_node_ms))
    print(f"paired per frame (round trip / segment() inside the node, same frame): median {paired:.3f}")
    print(f"node_overhead_ratio {ratio:.3f} (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
