"""At which input size should a trained model be served? GZS3 and whole-frame numbers per size.

A model trained on 128x128 crops (an 8x8 patch grid) can be fed its scenes upsampled: the
positional grid is interpolated and each patch covers fewer scene pixels, so object borders
fall on a finer grid. For each size in `--sizes`, side by side in one run: mIoU(seen),
mIoU(unseen), hIoU (background ignored, the dataset metric), the whole-frame numbers
(background left unlabeled, unseen-object IoU over every pixel), and the model's milliseconds
per 640x480 frame through `Segmenter.segment`. The size is chosen on validation scenes 300-499
(`--scenes 300:500`, the open-set calibration scenes) and reported on 0-299. LDVC's route
windows need a patch grid divisible by 4, so 128, 192 and 256 are its sizes.
Results and commands: docs/synthetic_world.md#why-the-shipped-ldvc-is-served-at-192-pixels.

    python bench/serving_size.py [--config checkpoints/synthetic/ldvc.yaml] [--sizes 128 192 256] [--scenes 300:500]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import load_run_config  # noqa: E402
from training.evaluate import evaluate_model  # noqa: E402
from zs3_core.models import build_model  # noqa: E402
from zs3_core.segmenter import Segmenter  # noqa: E402

TIMED_FRAMES = 20


def model_ms(config, names: list[str]) -> float:
    """Median model milliseconds per 640x480 frame (after warm-up) on the torch fp32 backend."""
    segmenter = Segmenter.from_config(config, backend="torch")
    vocabulary = segmenter.encode_vocabulary(names)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    times = [segmenter.segment(frame, vocabulary).timings["model"] for _ in range(TIMED_FRAMES + 3)]
    return float(np.median(times[3:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="checkpoints/synthetic/ldvc.yaml")
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 192, 256])
    parser.add_argument("--scenes", default="300:500", help="validation scenes FIRST:END")
    args = parser.parse_args(argv)
    first, end = (int(v) for v in args.scenes.split(":"))
    torch.set_grad_enabled(False)
    print(f"{args.config}, validation scenes {first}-{end - 1}")
    print("| input | grid | mIoU seen | mIoU unseen | hIoU | whole-frame unseen IoU | background unlabeled | model ms |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        run = load_run_config(args.config, overrides=[f"model.input_size={size}"])
        start = time.perf_counter()
        result = evaluate_model(build_model(run.model), run, progress=False, images=range(first, end))
        s, w = result.summary, result.whole_frame
        grid = size // 16
        print(f"| {size} | {grid}x{grid} | {100 * s['mIoU_seen']:.1f} | {100 * s['mIoU_unseen']:.1f} | "
              f"{100 * s['hIoU']:.1f} | {w['mIoU_unseen']:.3f} | {100 * w['background_unlabeled']:.1f} % | "
              f"{model_ms(run.model, list(result.class_names)):.1f} |  ({time.perf_counter() - start:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
