"""Several cameras through one node: frames segmented per second with one batched model call
per cycle, against the same node segmenting one frame at a time.

    python bench/multi_camera.py [--cameras 4] [--rate 30] [--seconds 12] [--rounds 2]
    python bench/multi_camera.py --config config/models/clip_baseline_vitb16.yaml --size 512 --seconds 40

Four synthetic cameras publish faster than the node can serve (each `--rate` Hz, raw rgb8
`--size`² frames, over DDS on loopback). The node runs `cameras: [cam0..cam3]` twice per
round on ONE shared Segmenter: `batch_size: 0` (the newest frame of every camera in one
model call) and `batch_size: 1` (the same node, one camera's frame per model call, taking
turns). Rounds alternate the two so machine load hits both alike. Printed: total frames
segmented per second of each, their ratio (target ≥ 1.5 on the shipped default model), and
each camera's median latency (node receive → publish). Default model: the shipped
checkpoints/synthetic/ldvc.yaml with backend auto. With the ViT-B/16 config the weights are
random (no CLIP weights shipped): timing does not depend on them. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zs3_core.segmenter import Segmenter  # noqa: E402
from zs3_ros.synthetic_camera import moving_shapes, running_cameras, world_class_names  # noqa: E402

MODES = {"batched": 0, "one-by-one": 1}   # the node's batch_size


def run_round(segmenter, cameras, frames, batch_size, rate_hz, warmup_s, seconds, model_config):
    """Start the node, stream every camera at `rate_hz`, count outputs in the measured window.
    Returns (frames per second, {camera: median latency ms}, batches per second)."""
    parameters = {"classes": world_class_names() + ["background"], "qos_reliability": "reliable",
                  "publish_overlay": False, "batch_size": batch_size, "model_config": model_config}
    with running_cameras(cameras, parameters=parameters, segmenter=segmenter) as (node, clients):
        stop = threading.Event()

        def stream(camera):
            client, i = clients[camera], 0
            while not stop.is_set():
                client.publish(frames[i % len(frames)])
                i += 1
                stop.wait(1.0 / rate_hz)

        threads = [threading.Thread(target=stream, args=(c,), daemon=True) for c in cameras]
        for t in threads:
            t.start()
        time.sleep(warmup_s)
        start, batches0 = time.monotonic(), node._batches.batches_total
        time.sleep(seconds)
        end, batches = time.monotonic(), node._batches.batches_total - batches0
        stop.set()
        for t in threads:
            t.join()
        served, latency = 0, {}
        for camera, client in clients.items():
            with client._lock:
                window = [f for f in client.frames.values()
                          if f.info is not None and start <= f.arrived.get("info", 0.0) < end]
            served += len(window)
            latency[camera] = statistics.median(f.info.latency_ms for f in window) if window else float("nan")
        return served / (end - start), latency, batches / (end - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "checkpoints" / "synthetic" / "ldvc.yaml"))
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second each camera publishes")
    parser.add_argument("--size", type=int, default=240, help="square frame size in pixels")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per mode and round")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds streamed before measuring")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    cameras = [f"cam{i}" for i in range(args.cameras)]
    segmenter = Segmenter.from_config(args.config, backend=args.backend, max_batch=args.cameras)
    frames = list(moving_shapes(8, size=(args.size, args.size)))
    print(f"{args.config}: backend {segmenter.backend_name}, {args.cameras} cameras at {args.rate:g} Hz each, "
          f"{args.size}x{args.size} frames, model input {segmenter.config.input_size}px")
    results = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode, batch_size in MODES.items():
            fps, latency, batches = run_round(segmenter, cameras, frames, batch_size, args.rate, args.warmup,
                                              args.seconds, args.config)
            results[mode].append((fps, latency))
            lat = "  ".join(f"{c} {ms:.0f}" for c, ms in latency.items())
            print(f"round {r} {mode:<10}: {fps:6.2f} frames/s ({batches:.2f} model calls/s); "
                  f"median latency ms: {lat}", flush=True)
    fps = {mode: statistics.median(f for f, _ in runs) for mode, runs in results.items()}
    print()
    for mode, runs in results.items():
        per_camera = {c: statistics.median(lat[c] for _, lat in runs) for c in cameras}
        print(f"{mode:<10}: {fps[mode]:6.2f} frames/s total; median latency per camera (ms): "
              + ", ".join(f"{c} {ms:.0f}" for c, ms in per_camera.items()))
    ratio = fps["batched"] / fps["one-by-one"] if fps["one-by-one"] else float("inf")
    print(f"batched / one-by-one: {ratio:.2f}x (target >= 1.5 on the shipped default model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
