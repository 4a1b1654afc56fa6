"""Do the tiny CLIP's patch features live in the text space, or only its image embedding? (issue 4)

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

Shipped tiny CLIP (fp32, dense term 1.0), 100 scenes (237 objects; chance 2.8 %): pooled patches
19.8 % (α = 0 and 1), masked input 92.0 %. Alone in their scene pooled patches get 53.8 %
(masked input 100 %), among others 15.6 % (91.0 %). Pre-training showed one object per caption,
so in clutter each patch feature carries its neighbours. A one-off probe (200 scenes, not kept)
classified each object by a copy of the class token that attends only to the object's patches:
98.2 % alone, 32.1 % among others; 40.5 % when each object's patches also attend only within
the object; 90.4 % when the other objects' pixels are set to the mean colour before the stem.
The mixing happens in the pixels each patch embedding sees (the conv stem's 31-px receptive
field; objects are 2–4 patches wide and often touch) more than in attention, so masking attention
by object, which one pass allows, recovers little. DeOP classifies every proposal from one pass
and meets this (bench/deop_proposal_quality.py).

Earlier CLIPs, 100 scenes, not split (pooled α = 0, α = 1, masked input): without the dense term
3.4 %, 3.4 %, 86.5 % (initial temperature 0.02) and 7.6 %, 9.7 %, 75.9 % (0.07); with a late
class token (`vision.class_token_block: 5`, its patch features the class token's view of each
patch) pooled 22.4 %, masked 65.4 %, but its image embedding learnt slower (probe 64.2 % against
96.9 %) and its chain gave LDVC hIoU 15.0, DeOP 0.0, baseline 6.4; the dense term pre-trained in
bf16: 18.6 %, 18.1 %, 91.1 % (its chain: baseline 9.2, LDVC 50.3, DeOP 4.1). None shipped.

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
