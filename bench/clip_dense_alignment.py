"""Do the tiny CLIP's patch features live in the text space, or only its image embedding?

DeOP and the training-free baseline classify pooled *patch* features against the text
embeddings; only LDVC learns a decoder between the two. This classifies every ground-truth
object of the validation scenes (36 names, "a photo of a {}.") three ways, side by side:

- pooled patch features: the object's mask (area-resized to the patch grid) averages the
  L2-normalised patch features of one CLIP pass, without and with patch severance (α = 1 on
  the last layer, as DeOP and the baseline use);
- masked input: the image with every pixel outside the object set to the mean colour, one
  CLIP pass each, the image embedding — what a two-pass method such as zsseg does.

Each is reported over all objects and split by scene: objects alone in theirs (1 class) and
objects among others (2+ classes; objects of one class form one region).

A diagnostic without a target: it shows whether a method that classifies pooled patch
features (the baseline, DeOP) can work on a given CLIP, and how much clutter costs it.
Results: docs/benchmarks.md; what they led to: docs/synthetic_world.md.

    python bench/clip_dense_alignment.py [--config checkpoints/synthetic/clip_baseline.yaml] [--scenes 100]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import load_run_config  # noqa: E402
from training.evaluate import evaluation_set  # noqa: E402
from zs3_core.clip import severance_last_layer  # noqa: E402
from zs3_core.models import build_model  # noqa: E402

TEMPLATE = "a photo of a {}."


def objects(eval_set, ignore_index: int):
    """(image, object mask, class index, classes in the scene) for every labelled class region
    of every scene."""
    for i in range(len(eval_set)):
        image, target = eval_set[i]
        labels = [label for label in target.unique().tolist() if label != ignore_index]
        for label in labels:
            yield image, target == label, label, len(labels)


@torch.inference_mode()
def pooled_patch_embedding(clip, image: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """The object's mask-weighted mean of normalised patch features, one CLIP pass."""
    features = clip.visual(image[None], severance=severance_last_layer(clip.config.vision.layers, alpha))
    patches = F.normalize(features.patch_features[0], dim=0)                          # (D, h, w)
    weights = F.interpolate(mask[None, None].float(), size=patches.shape[-2:], mode="area")[0, 0]
    return (patches * weights).sum((1, 2))


@torch.inference_mode()
def masked_input_embedding(clip, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image embedding of the image with everything but the object at the mean colour (0)."""
    return clip.encode_image(torch.where(mask, image, torch.zeros_like(image))[None])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="checkpoints/synthetic/clip_baseline.yaml",
                        help="a run config whose model.clip_weights is the CLIP to probe")
    parser.add_argument("--scenes", type=int, default=100, help="validation scenes (the first N)")
    args = parser.parse_args()
    run = load_run_config(args.config, overrides=[f"data.synthetic.val_scenes={args.scenes}"])
    eval_set = evaluation_set(run, None)
    model = build_model(run.model).eval()
    with torch.inference_mode():   # the baseline's text side is plain CLIP
        text = F.normalize(model.encode_classes(eval_set.class_names, TEMPLATE), dim=-1)
    methods = {
        "pooled patch features, α = 0": lambda image, mask: pooled_patch_embedding(model.clip, image, mask, 0.0),
        "pooled patch features, α = 1": lambda image, mask: pooled_patch_embedding(model.clip, image, mask, 1.0),
        "masked input, image embedding": lambda image, mask: masked_input_embedding(model.clip, image, mask),
    }
    groups = ("all scenes", "1 class in scene", "2+ classes")
    correct = {(name, group): 0 for name in methods for group in groups}
    total = dict.fromkeys(groups, 0)
    for image, mask, label, in_scene in objects(eval_set, run.data.ignore_index):
        scene_groups = ("all scenes", "1 class in scene" if in_scene == 1 else "2+ classes")
        for group in scene_groups:
            total[group] += 1
        for name, embed in methods.items():
            right = int((text @ F.normalize(embed(image, mask), dim=0)).argmax().item() == label)
            for group in scene_groups:
                correct[name, group] += right
    print(f"{total['all scenes']} objects in {len(eval_set)} scenes, {len(eval_set.class_names)} classes "
          f"(chance {100 / len(eval_set.class_names):.1f} %); % classified right, by the classes in their scene")
    print(f"  {'':32s}" + "".join(f"{group} ({total[group]})".rjust(24) for group in groups))
    for name in methods:
        print(f"  {name:32s}" + "".join(
            (f"{100 * correct[name, group] / total[group]:.1f}" if total[group] else "-").rjust(24)
            for group in groups))


if __name__ == "__main__":
    main()
