"""Do the tiny CLIP's patch features live in the text space, or only its image embedding? (issue 4)

DeOP and the training-free baseline classify pooled *patch* features against the text
embeddings; only LDVC learns a decoder between the two. This classifies every ground-truth
object of the validation scenes (36 names, "a photo of a {}.") three ways, side by side:

- pooled patch features: the object's mask (area-resized to the patch grid) averages the
  L2-normalised patch features of one CLIP pass, without and with patch severance (α = 1 on
  the last layer, as DeOP and the baseline use);
- masked input: the image with every pixel outside the object set to the mean colour, one
  CLIP pass each, the image embedding — what a two-pass method such as zsseg does.

Measured on the 2-core CPU, 100 scenes (237 objects; chance 2.8 %), shipped tiny CLIP
(initial temperature 0.02): pooled patches 3.4 % (α = 0) and 3.4 % (α = 1), masked input
86.5 %. The previous tiny CLIP (temperature 0.07): 7.6 %, 9.7 % and 75.9 %. The image
embedding knows the classes, the patch features do not, so DeOP's one-pass classification
and the baseline stay near chance however good the proposals are
(bench/deop_proposal_quality.py); LDVC learns a decoder between the two and does not.

A tiny CLIP pre-trained with a late class token (`vision.class_token_block: 5`, same 800
steps; its patch features are the class token's view of each patch): pooled patches 22.4 %,
masked input 65.4 %. Patches align, the image embedding learns slower (probe 64.2 % against
96.9 %), and the chain on it gave LDVC hIoU 15.0, DeOP 0.0, baseline 6.4: not shipped.
A tiny CLIP pre-trained with the dense term (`train.dense_alignment_weight: 1.0`, the same
contrastive loss on the mean severed patch feature): pooled patches 18.6 % (α = 0) and 18.1 %
(α = 1), masked input 91.1 %; its chain gave baseline 9.2, LDVC 50.3, DeOP 4.1: not shipped.

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
    """(image, object mask, class index) for every labelled class region of every scene."""
    for i in range(len(eval_set)):
        image, target = eval_set[i]
        for label in target.unique().tolist():
            if label != ignore_index:
                yield image, target == label, label


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
    correct = dict.fromkeys(methods, 0)
    total = 0
    for image, mask, label in objects(eval_set, run.data.ignore_index):
        total += 1
        for name, embed in methods.items():
            correct[name] += int((text @ F.normalize(embed(image, mask), dim=0)).argmax().item() == label)
    print(f"{total} objects in {len(eval_set)} scenes, {len(eval_set.class_names)} classes (chance "
          f"{100 / len(eval_set.class_names):.1f} %)")
    for name, count in correct.items():
        print(f"  {name:32s} {100 * count / total:5.1f} % classified right")


if __name__ == "__main__":
    main()
