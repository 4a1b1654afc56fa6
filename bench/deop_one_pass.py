"""DeOP one pass vs the decoupled multi-pass baseline (DeOP Sec. 5.1, Table 1).

One pass (DeOP): proposal network + ONE CLIP ViT-B/16 pass over the 512×512 image (patch
severance on the last layer) + anchor heatmap pooling + classification.
Multi-pass (SimBaseline / ZegFormer, DeOP Fig. 1b): the same proposal network, then one CLIP
pass per proposal: the proposal's bounding box is cropped from the image, pixels outside the
mask set to the mean (0 after normalisation), resized to CLIP's 224×224 input, and its global
feature classified against the text embeddings. All 100 proposals are classified (the
papers' N' < N threshold depends on trained scores; random weights cannot supply them).

Random weights: speed does not depend on them. On a CPU the per-crop passes can be
subsampled (`--crops K`) and extrapolated to 100; the output says when it did.

    python bench/deop_one_pass.py [--device cuda] [--crops 100] [--repeats 3]

Target: one pass faster than one pass per proposal (the paper's claim). Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zs3_core.config import load_model_config  # noqa: E402
from zs3_core.models import build_model  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "config/models/deop_vitb16_voc.yaml"


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def masked_crops(image: torch.Tensor, masks: torch.Tensor, size: int) -> torch.Tensor:
    """(1, 3, S, S) image, (N, S, S) bool masks → (N, 3, size, size) masked bounding-box crops."""
    crops = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if ys.numel() == 0:
            y0, y1, x0, x1 = 0, mask.shape[0], 0, mask.shape[1]
        else:
            y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        crop = (image[0] * mask)[:, y0:y1, x0:x1]
        crops.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)[0])
    return torch.stack(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--crops", type=int, default=None,
                        help="CLIP passes actually run for the multi-pass baseline (default: all on GPU, 10 on CPU)")
    parser.add_argument("--crop-size", type=int, default=224, help="CLIP input of a proposal crop (SimBaseline: 224)")
    parser.add_argument("--batch", type=int, default=10, help="crops per CLIP call in the multi-pass baseline")
    parser.add_argument("--classes", type=int, default=20, help="vocabulary size (VOC: 20)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = args.device
    torch.manual_seed(0)

    model = build_model(load_model_config(CONFIG)).to(device).eval()
    size = model.config.input_size
    queries = model.options.proposal_queries
    crops_run = args.crops or (queries if device.startswith("cuda") else 10)
    crops_run = min(crops_run, queries)
    image = torch.randn(1, 3, size, size, device=device)
    classes = F.normalize(torch.randn(args.classes, model.clip.config.embed_dim, device=device), dim=-1)

    with torch.inference_mode():
        one_pass = timed(lambda: model.predict(image, classes), device, args.repeats)
        proposals = timed(lambda: model.proposals(image), device, args.repeats)
        masks = F.interpolate(model.proposals(image), size=(size, size), mode="bilinear") > 0
        crops = masked_crops(image, masks[0], args.crop_size)[:crops_run]
        crop_prep = timed(lambda: masked_crops(image, masks[0], args.crop_size), device, 1)

        def classify_crops():
            for start in range(0, crops.shape[0], args.batch):
                features = model.clip.visual(crops[start:start + args.batch]).global_feature
                (F.normalize(features, dim=-1) @ classes.t()).softmax(-1)

        clip_crops = timed(classify_crops, device, args.repeats)
    clip_all = clip_crops * queries / crops_run
    multi_pass = proposals + crop_prep + clip_all

    print(f"device: {device} ({torch.cuda.get_device_name() if device.startswith('cuda') else f'{torch.get_num_threads()} CPU threads'})")
    print(f"input {size}x{size}, CLIP ViT-B/16, {queries} proposals, {args.classes} classes, random weights")
    print(f"DeOP one pass          : {one_pass * 1000:9.1f} ms/image ({1 / one_pass:.2f} FPS)")
    print(f"  of which proposals   : {proposals * 1000:9.1f} ms")
    note = "" if crops_run == queries else f"  [extrapolated from {crops_run} of {queries} crops]"
    print(f"multi-pass baseline    : {multi_pass * 1000:9.1f} ms/image ({1 / multi_pass:.2f} FPS)")
    print(f"  proposals + cropping : {(proposals + crop_prep) * 1000:9.1f} ms")
    print(f"  {queries} CLIP passes at {args.crop_size}: {clip_all * 1000:9.1f} ms{note}")
    print(f"speed ratio (multi-pass / one pass): {multi_pass / one_pass:.2f}x  (paper: 3-4x ViT-B/16, ~7x ViT-L)")


if __name__ == "__main__":
    main()
