"""Postprocess side by side: an exact method against the literal (C, H, W) one, in one run.

    python bench/postprocess.py [--frames 2] [--sizes 640x480,1280x720,1920x1080]
                                [--classes 6,20,171,1024] [--reference-limit-gb 3] [--threads 1]
                                [--device cpu|cuda] [--method candidate|chunked|auto]

Probabilities come from the shipped default model (checkpoints/synthetic, LDVC) on synthetic
scenes resized to each frame size, with vocabularies of the world's class names plus extra
names (zs3_core/synthetic/vocabularies.py). Per frame size and vocabulary, both methods run
on the same probabilities, interleaved frame by frame: median time per frame, peak memory
growth during the call (RSS high-water mark on CPU, allocator peak on CUDA), label agreement
(share of pixels equal) and the largest confidence difference. The literal method is skipped
where its (C, H, W) tensor would exceed --reference-limit-gb; agreement is then measured
against `postprocess_chunked` (the same values class chunk by class chunk, first maximum).

"new" is --method forced for every cell: "candidate" (default; candidate classes per grid
cell, proved per pixel), "chunked" (the literal method a class chunk at a time, a GPU's
choice) or "auto" (what `postprocess` picks: `choose_method`, which also hands problems of at
most LITERAL_UP_TO classes x pixels to the literal method). Both run with --threads torch
threads (default 1: on a busy 2-core machine the thread pool's hand-offs dominate the
candidate method's many small steps; the literal one is mostly one big kernel).

Targets: at 1920x1080 the 171-class postprocess <= 1.5x the 6-class one, and >= 10x faster
than the literal method; labels identical (agreement 1.0).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zs3_core import Segmenter  # noqa: E402
from zs3_core.postprocess import LITERAL_UP_TO, choose_method, postprocess, postprocess_chunked, postprocess_literal  # noqa: E402
from zs3_core.preprocess import to_model_input  # noqa: E402
from zs3_core.synthetic import SyntheticWorld  # noqa: E402
from zs3_core.synthetic.vocabularies import sized_vocabulary  # noqa: E402


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def measured(fn, device: str):
    """(result, milliseconds, peak MiB allocated beyond what was in use before the call)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")       # reset VmHWM to the current RSS
        before = _rss_mib("VmRSS:")
    start = time.perf_counter()
    result = fn()
    ms = (time.perf_counter() - start) * 1e3
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = _rss_mib("VmHWM:") - before
    return result, ms, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2, help="scenes per cell (after one warm-up call)")
    parser.add_argument("--sizes", default="640x480,1280x720,1920x1080")
    parser.add_argument("--classes", default="6,20,171,1024")
    parser.add_argument("--reference-limit-gb", type=float, default=3.0,
                        help="skip the literal method where C*H*W*4 bytes exceed this")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both methods")
    parser.add_argument("--method", default="candidate", choices=["candidate", "chunked", "auto"],
                        help="the \"new\" column: a method forced for every cell, or auto (what `postprocess` picks)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    seg = Segmenter.from_config(device=args.device)
    world = SyntheticWorld()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    class_counts = [int(c) for c in args.classes.split(",")]
    threshold = seg.unlabeled_threshold
    rows, new_ms = [], {}
    for num_classes in class_counts:
        vocab = seg.encode_vocabulary(sized_vocabulary(num_classes, world.class_names))
        for width, height in sizes:
            literal = num_classes * height * width * 4 <= args.reference_limit_gb * 2**30
            times_new, times_old, peaks_new, peaks_old, agree, conf_diff = [], [], [], [], [], []
            for i in range(args.frames + 1):
                frame = cv2.resize(world.scene(i).image, (width, height), interpolation=cv2.INTER_LINEAR)
                x = to_model_input(frame, seg.config.input_size, seg.config.pixel_mean, seg.config.pixel_std)
                with torch.inference_mode():
                    probs = seg.backend(x.to(args.device), vocab.embeddings.to(args.device))
                grid = tuple(probs.shape[-2:])
                new, ms, peak = measured(lambda: postprocess(probs, height, width, threshold, method=args.method),
                                         args.device)
                if i:
                    times_new.append(ms)
                    peaks_new.append(peak)
                if literal:
                    old, ms, peak = measured(lambda: postprocess_literal(probs, height, width, threshold),
                                             args.device)
                    reference_labels, reference_conf = old[0], old[1]
                    if i:
                        times_old.append(ms)
                        peaks_old.append(peak)
                else:
                    reference = postprocess_chunked(probs, height, width, threshold)
                    reference_labels, reference_conf = reference[0], reference[1]
                if i:
                    agree.append(float((new[0] == reference_labels).mean()))
                    if reference_conf is not None:
                        conf_diff.append(float(np.abs(new[1] - reference_conf).max()))
            t_new = statistics.median(times_new)
            t_old = statistics.median(times_old) if times_old else float("nan")
            new_ms[(num_classes, width, height)] = (t_new, t_old)
            rows.append((f"{width}x{height}", num_classes, t_new, t_old, t_old / t_new,
                         max(peaks_new), max(peaks_old) if peaks_old else float("nan"),
                         min(agree), max(conf_diff) if conf_diff else float("nan")))
            r = rows[-1]
            print(f"{r[0]:>10} {r[1]:5d} classes: new {r[2]:8.1f} ms, literal {r[3]:8.1f} ms "
                  f"({r[4]:5.1f}x), peak {r[5]:7.1f} / {r[6]:7.1f} MiB, agreement {r[7]:.6f}", flush=True)

    print(f"\nPostprocess per frame, new = {args.method} method, shipped LDVC model, {seg.backend_name}, "
          f"{args.threads} torch thread(s), "
          f"median of {args.frames} frames; `postprocess` hands up to {LITERAL_UP_TO:,} classes x pixels to the "
          f"literal method\n")
    print("| frame | classes | new (ms) | literal (ms) | speed-up | new peak (MiB) | literal peak (MiB) "
          "| label agreement | max abs conf diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        old = "skipped (> limit)" if np.isnan(r[3]) else f"{r[3]:.1f}"
        speed_up = "-" if np.isnan(r[4]) else f"{r[4]:.1f}x"
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {old} | {speed_up} | {r[5]:.0f} | "
              f"{'-' if np.isnan(r[6]) else f'{r[6]:.0f}'} | {r[7]:.6f} | "
              f"{'-' if np.isnan(r[8]) else f'{r[8]:.1e}'} |")
    key171, key6 = (171, 1920, 1080), (6, 1920, 1080)
    if key171 in new_ms and key6 in new_ms:
        print(f"\n1920x1080, new method: 171 classes / 6 classes = "
              f"{new_ms[key171][0] / new_ms[key6][0]:.2f}x (target <= 1.5x)")
        six_by = choose_method(6, grid, 1080, 1920, torch.device(args.device))
        if six_by == "literal" or six_by == args.method or args.method == "auto":   # a column timed it
            six = new_ms[key6][1] if six_by == "literal" and args.method != "auto" else new_ms[key6][0]
            print(f"1920x1080, as dispatched (6 classes by the {six_by} method): "
                  f"171 classes / 6 classes = {new_ms[key171][0] / six:.2f}x")
        print(f"1920x1080, 171 classes: literal / new = "
              f"{new_ms[key171][1] / new_ms[key171][0]:.1f}x faster (target >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
