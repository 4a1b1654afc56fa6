"""Where do the synthetic-world models lose IoU: the coarse logit grid, colour, or shape?

Two measurements on the fixed validation scenes, side by side in one run:
  1. **Grid ceiling.** An oracle that knows every pixel's class but can only answer on an
     n×n grid (the area share of each class per cell), upsampled bilinearly to the labels as
     `zs3 eval` upsamples model logits. Background is ignored (label 255), so only boundaries
     between touching objects and thin parts cost IoU.
  2. **Attribute accuracy.** For each shipped model, the share of labelled pixels whose
     predicted class has the right colour word, the right shape word, and both (= pAcc),
     over all labelled pixels and over the unseen classes' pixels.

About 15 s for 200 scenes on 2 cores. A diagnostic without a target. Results:
docs/benchmarks.md; earlier models' numbers: docs/synthetic_world.md.

    python bench/synthetic_error_sources.py [--scenes 200] [--configs checkpoints/synthetic/ldvc.yaml ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import load_run_config  # noqa: E402
from training.evaluate import evaluation_set, gzs3_predictor, predict_labels  # noqa: E402
from zs3_core.metrics import ConfusionMatrix  # noqa: E402
from zs3_core.models import build_model  # noqa: E402

SHIPPED = ["checkpoints/synthetic/ldvc.yaml", "checkpoints/synthetic/deop.yaml",
           "checkpoints/synthetic/clip_baseline.yaml"]


def grid_oracle(labels: torch.Tensor, num_classes: int, grid: int, ignore_index: int) -> torch.Tensor:
    """(H, W) labels → (H, W) prediction of an oracle answering on a grid×grid map."""
    known = torch.where(labels == ignore_index, num_classes, labels)
    onehot = F.one_hot(known, num_classes + 1).permute(2, 0, 1).float()[None, :num_classes]
    cells = F.adaptive_avg_pool2d(onehot, grid)
    return F.interpolate(cells, size=labels.shape, mode="bilinear", align_corners=False)[0].argmax(0)


def grid_ceiling(config: str, scenes: int, grids: tuple[int, ...]) -> None:
    run = load_run_config(config, overrides=[f"data.synthetic.val_scenes={scenes}"])
    eval_set = evaluation_set(run, None)
    gzs3 = eval_set.source.gzs3
    for grid in grids:
        matrix = ConfusionMatrix(gzs3.num_classes, ignore_index=run.data.ignore_index,
                                 class_names=list(gzs3.class_names))
        for i in range(len(eval_set)):
            _, target = eval_set[i]
            matrix.update(grid_oracle(target, gzs3.num_classes, grid, run.data.ignore_index), target)
        stats = matrix.summary(list(gzs3.seen_ids), list(gzs3.unseen_ids))
        print(f"grid ceiling {grid:2d}x{grid:<2d}  seen {100 * stats['mIoU_seen']:5.1f}  "
              f"unseen {100 * stats['mIoU_unseen']:5.1f}  hIoU {100 * stats['hIoU']:5.1f}", flush=True)


def words(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: the index of its first word (colour) and of its last word (shape)."""
    colours = sorted({n.split()[0] for n in names})
    shapes = sorted({n.split()[-1] for n in names})
    return (torch.tensor([colours.index(n.split()[0]) for n in names]),
            torch.tensor([shapes.index(n.split()[-1]) for n in names]))


@torch.inference_mode()
def attribute_accuracy(config: str, scenes: int) -> None:
    run = load_run_config(config, overrides=[f"data.synthetic.val_scenes={scenes}"])
    model = build_model(run.model).eval()
    eval_set = evaluation_set(run, None)
    gzs3 = eval_set.source.gzs3
    colour_of, shape_of = words(list(gzs3.class_names))
    is_unseen = torch.zeros(gzs3.num_classes, dtype=torch.bool)
    is_unseen[list(gzs3.unseen_ids)] = True
    predict = gzs3_predictor(model, run, gzs3)
    counts = torch.zeros(2, 4)  # rows: all, unseen; columns: pixels, colour, shape, both
    for i in range(len(eval_set)):
        image, target = eval_set[i]
        predicted = predict_labels(predict, image, target.shape, run)
        labelled = target != run.data.ignore_index
        truth, guess = target[labelled], predicted[labelled]
        colour, shape = colour_of[truth] == colour_of[guess], shape_of[truth] == shape_of[guess]
        for row, keep in enumerate((torch.ones_like(colour), is_unseen[truth])):
            counts[row] += torch.stack([keep.sum(), (colour & keep).sum(), (shape & keep).sum(),
                                        (colour & shape & keep).sum()]).float()
    for row, name in enumerate(("all", "unseen")):
        pixels, colour, shape, both = counts[row].tolist()
        print(f"{config}: {name:6s} pixels colour {100 * colour / pixels:5.1f} %  "
              f"shape {100 * shape / pixels:5.1f} %  both {100 * both / pixels:5.1f} %", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200, help="validation scenes (the first N of the 500)")
    parser.add_argument("--configs", nargs="+", default=SHIPPED, help="run configs with trained checkpoints")
    parser.add_argument("--grids", nargs="+", type=int, default=[8, 16], help="oracle grid sizes")
    args = parser.parse_args()
    grid_ceiling(args.configs[0], args.scenes, tuple(args.grids))
    for config in args.configs:
        attribute_accuracy(config, args.scenes)


if __name__ == "__main__":
    main()
