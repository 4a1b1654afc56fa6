"""Do DeOP's class-agnostic mask proposals find the objects?

DeOP classifies whole proposals, so it can only be as good as its best proposal per object.
This prints, over validation scenes, the IoU between each ground-truth object (all pixels of
one class) and the best of the N proposals (sigmoid > 0.5, upsampled to the labels), for the
trained checkpoint and for the same network untrained, side by side. It then splits the
trained model's error between its two streams with two oracles, as hIoU over all classes:
ground-truth object masks fed to its classifier as the proposals (how well it classifies),
and its own proposals each given the class it overlaps most (how well it segments).

The confusion-matrix shares quoted in docs/synthetic_world.md (how often a perfect mask gets a
seen class of the same colour) come from the "ground-truth masks" oracle; the script prints hIoU.
A diagnostic without a target. Results: docs/benchmarks.md.

    python bench/deop_proposal_quality.py [--config checkpoints/synthetic/deop.yaml] [--scenes 100]
(about 15 s for 100 scenes on 2 cores)
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import load_run_config  # noqa: E402
from training.evaluate import evaluation_set  # noqa: E402
from zs3_core.metrics import ConfusionMatrix  # noqa: E402
from zs3_core.models import build_model  # noqa: E402
from zs3_core.models.deop.model import mask_class_scores  # noqa: E402


def mask_class_combination(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """DeOP's eval scores from (B, N, C + 1) class logits (void last) and (B, N, h, w) mask logits."""
    return mask_class_scores(class_logits.softmax(-1)[..., :-1], mask_logits)


def object_mask_logits(target: torch.Tensor, class_ids: list[int], queries: int, grid: int) -> torch.Tensor:
    """Ground-truth objects as proposal logits (±8 by area share on the mask grid), the rest empty."""
    objects = torch.stack([(target == c).float() for c in class_ids])[None]
    share = F.adaptive_avg_pool2d(objects, grid)
    logits = torch.full((1, queries, grid, grid), -8.0)
    logits[0, :len(class_ids)] = 16.0 * share[0] - 8.0
    return logits


def oracle_class_logits(mask_logits: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_index: int) -> torch.Tensor:
    """Each proposal labelled with the class (or background → void) its soft mask overlaps most."""
    masks = F.interpolate(mask_logits, size=target.shape, mode="bilinear", align_corners=False).sigmoid()[0]
    regions = torch.stack([(target == c).float() for c in range(num_classes)] + [(target == ignore_index).float()])
    best = torch.einsum("nhw,khw->nk", masks, regions).argmax(1)
    logits = torch.full((1, masks.shape[0], num_classes + 1), -20.0)
    logits[0, torch.arange(masks.shape[0]), best] = 20.0
    return logits


@torch.inference_mode()
def oracle_split(model: torch.nn.Module, eval_set, run) -> dict[str, dict]:
    """hIoU of the model as is, of ground-truth masks through its classifier (how good its
    classification is) and of its own proposals with ground-truth classes (how good its masks are)."""
    model.eval()
    gzs3 = eval_set.source.gzs3
    names = list(gzs3.class_names)
    embeddings = model.encode_classes(names, run.model.prompt_template)
    matrices = {name: ConfusionMatrix(len(names), run.data.ignore_index)
                for name in ("as trained", "ground-truth masks", "ground-truth classes")}
    for i in range(len(eval_set)):
        image, target = eval_set[i]
        image = image[None]
        proposals = model.proposals(image)
        class_ids = [c for c in target.unique().tolist() if c != run.data.ignore_index]
        objects = object_mask_logits(target, class_ids, proposals.shape[1], proposals.shape[-1])
        scores = {
            "as trained": mask_class_combination(model.classify_proposals(image, proposals, embeddings), proposals),
            "ground-truth masks": mask_class_combination(model.classify_proposals(image, objects, embeddings), objects),
            "ground-truth classes": mask_class_combination(
                oracle_class_logits(proposals, target, len(names), run.data.ignore_index), proposals),
        }
        for name, score in scores.items():
            pred = F.interpolate(score, size=target.shape, mode="bilinear", align_corners=False)[0].argmax(0)
            matrices[name].update(pred, target)
    return {name: m.summary(gzs3.seen_ids, gzs3.unseen_ids) for name, m in matrices.items()}


@torch.inference_mode()
def best_proposal_ious(model: torch.nn.Module, eval_set, ignore_index: int) -> list[float]:
    """Per ground-truth object, the highest IoU any proposal reaches."""
    model.eval()
    ious = []
    for i in range(len(eval_set)):
        image, target = eval_set[i]
        masks = F.interpolate(model.proposals(image[None]), size=target.shape, mode="bilinear",
                              align_corners=False)[0].sigmoid() > 0.5            # (N, H, W)
        for class_id in target.unique().tolist():
            if class_id == ignore_index:
                continue
            obj = target == class_id
            inter = (masks & obj).flatten(1).sum(1)
            union = (masks | obj).flatten(1).sum(1).clamp_min(1)
            ious.append((inter / union).max().item())
    return ious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="checkpoints/synthetic/deop.yaml", help="DeOP run config with a checkpoint")
    parser.add_argument("--scenes", type=int, default=100, help="validation scenes (the first N)")
    args = parser.parse_args()
    run = load_run_config(args.config, overrides=[f"data.synthetic.val_scenes={args.scenes}"])
    eval_set = evaluation_set(run, None)
    torch.manual_seed(0)
    untrained = build_model(dataclasses.replace(run.model, checkpoint=None))
    trained = build_model(run.model)
    results = {name: best_proposal_ious(model, eval_set, run.data.ignore_index)
               for name, model in (("trained", trained), ("untrained", untrained))}
    for name, ious in results.items():
        print(f"{name:9s} best-proposal IoU over {len(ious)} objects: mean {statistics.mean(ious):.3f}  "
              f"median {statistics.median(ious):.3f}")
    ratio = statistics.mean(results["trained"]) / max(statistics.mean(results["untrained"]), 1e-6)
    print(f"trained / untrained mean best IoU: {ratio:.2f}")
    for name, summary in oracle_split(trained, eval_set, run).items():
        print(f"{name:21s} seen {100 * summary['mIoU_seen']:.1f}  unseen {100 * summary['mIoU_unseen']:.1f}  "
              f"hIoU {100 * summary['hIoU']:.1f}")


if __name__ == "__main__":
    main()
