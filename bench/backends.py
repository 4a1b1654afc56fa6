"""Backends side by side: latency ratio vs eager fp32 and label agreement, in one run.

    python bench/backends.py [--config config/models/clip_baseline_vitb16.yaml] [--repeats 5]

Every backend serves the same model (ViT-B/16 baseline at 512×512 by default, random
weights) through the Segmenter. Latency is the backend call alone (the image path;
preprocessing and postprocessing are identical for all), median over rounds that
interleave the backends so machine load affects all alike. Agreement is the share of
pixels whose Segmenter label equals eager fp32's, on synthetic scenes with two vocabularies:
"objects" (one class per scene object, the structure a trained model gives; for a model
trained on the synthetic world, such as the shipped LDVC, the world's class names) and "text-20"
(20 random text embeddings; tie-prone on random weights, reported for completeness).
Targets: torch bf16 >= 2.0x fp32 with >= 99% agreement (CPU with native bf16); TensorRT
fp16 >= 3x eager fp32 on the same GPU with >= 99%. On CUDA, torch fp16 and bf16 are
measured beside them. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zs3_core import Segmenter  # noqa: E402
from zs3_core.backends import BackendError, create_backend  # noqa: E402
from zs3_core.export.verify import class_names, compare, object_vocabulary  # noqa: E402
from zs3_core.preprocess import to_model_input  # noqa: E402
from zs3_core.synthetic import SyntheticWorld, WorldConfig  # noqa: E402


def scene_vocabulary(reference: Segmenter, scene, world: SyntheticWorld):
    """The "objects" vocabulary: one prototype per scene object for the training-free baseline
    (random weights), the world's class names for a model trained on them (e.g. the shipped
    LDVC, which has no baseline feature path)."""
    if hasattr(reference.model, "severance"):
        return object_vocabulary(reference, scene)
    return reference.encode_vocabulary(world.class_names)


def candidates(device: str) -> list[tuple[str, str]]:
    if device == "cpu":
        return [("torch", "bf16"), ("onnxruntime", "fp32")]
    return [("torch", "fp16"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("tensorrt", "fp16")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config/models/clip_baseline_vitb16.yaml"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scenes", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    reference = Segmenter.from_config(args.config, backend="torch", device=args.device, precision="fp32")
    cache = Path(tempfile.mkdtemp(prefix="zs3-bench-"))
    segmenters = {"torch/fp32": reference}
    for name, precision in candidates(args.device):
        options = {"cache_dir": cache} if name != "torch" else {}
        try:
            start = time.perf_counter()
            backend = create_backend(name, reference.model, args.device, precision, **options)
            print(f"{backend.describe()}: ready in {time.perf_counter() - start:.1f} s (export/build)")
        except BackendError as err:
            print(f"{name}/{precision}: skipped ({err})")
            continue
        segmenters[backend.describe().rsplit("/", 1)[0]] = Segmenter(
            reference.model, reference.config, backend=backend, device=args.device)

    size = reference.config.input_size
    world = SyntheticWorld(WorldConfig(seed=0, image_size=(size, size)))
    scenes = [world.scene(i) for i in range(args.scenes)]
    text_vocab = reference.encode_vocabulary(class_names(20))
    cfg = reference.config
    x = to_model_input(scenes[0].image, size, cfg.pixel_mean, cfg.pixel_std)

    times = {name: [] for name in segmenters}
    for name, seg in segmenters.items():      # warm-up (autotuning, first-call allocation)
        seg.backend(x, text_vocab.embeddings)
    for _ in range(args.repeats):
        for name, seg in segmenters.items():
            if args.device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            seg.backend(x, text_vocab.embeddings)
            if args.device != "cpu":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)

    fp32 = statistics.median(times["torch/fp32"])
    print(f"\nmodel {Path(args.config).name}, {size}x{size}, device {args.device}, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved rounds\n")
    print("| backend | median ms | speed-up vs fp32 | labels = fp32 (objects) | labels = fp32 (text-20) |")
    print("|---|---:|---:|---:|---:|")
    for name, seg in segmenters.items():
        median = statistics.median(times[name])
        if seg is reference:
            objects = text = 1.0
        else:
            same = total = 0
            for scene in scenes:
                r = compare(reference, seg, [scene.image], scene_vocabulary(reference, scene, world))
                same += r.label_agreement * scene.labels.size
                total += scene.labels.size
            objects = same / total
            text = compare(reference, seg, [s.image for s in scenes], text_vocab).label_agreement
        print(f"| {name} | {1000 * median:.0f} | {fp32 / median:.2f}x | {100 * objects:.2f}% | {100 * text:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
