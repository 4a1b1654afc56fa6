"""How fast does the tiny CLIP's image tower learn *shape*, next to a small CNN?

The synthetic classes are colour × shape. A tiny CLIP with CLIP's patchify stem learnt colour
but not shape, so LDVC segmented by colour alone. This benchmark trains image classifiers side
by side with the same data, optimiser and steps, on single-object scenes of the pre-training world:
  * `patch`: the tiny CLIP ViT from scratch (`ClipConfig.tiny`'s vision tower + a linear head);
  * `conv`: the same with the convolutional stem (`vision.stem: conv`, zs3_core/clip/stem.py);
  * `cnn`: a 4-block CNN (3×3 conv, BatchNorm, ReLU, max-pool) + a linear head, for reference.
It prints colour and shape accuracy on 256 held-out scenes as training goes, and at the end
the ratio of shape accuracy above chance (1/6).

About 2.5 min per ViT and 5 min for the CNN at 200 steps × 64 on 2 cores. A diagnostic without a
target. Results: docs/benchmarks.md; the variants measured with it: docs/synthetic_world.md.

    python bench/shape_learning.py [--steps 200] [--batch 64]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.pretrain import normalise_images, sincos_position_table
from zs3_core.clip import CLIP, ClipConfig
from zs3_core.config import IMAGENET_MEAN, IMAGENET_STD
from zs3_core.synthetic import SyntheticWorld, WorldConfig

HELD_OUT = 2_000_000_000


class TinyClipImageClassifier(nn.Module):
    """The tiny CLIP vision tower (sine-cosine positions, as pre-training starts) + a linear head."""

    def __init__(self, num_classes: int, image_size: int, stem: str):
        super().__init__()
        config = ClipConfig.tiny(image_size=image_size, stem=stem)
        self.visual = CLIP(config).visual
        with torch.no_grad():
            self.visual.positional_embedding.copy_(
                sincos_position_table(config.vision.grid_size, config.vision.width))
        self.head = nn.Linear(config.vision.output_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(images).global_feature)


def small_cnn(num_classes: int) -> nn.Module:
    layers = []
    for c_in, c_out in ((3, 32), (32, 64), (64, 96), (96, 128)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


def scenes(world: SyntheticWorld, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    drawn = [world.scene(start + i) for i in range(count)]
    labels = torch.tensor([s.class_ids[0] if s.class_ids else 0 for s in drawn])
    return normalise_images([s.image for s in drawn], IMAGENET_MEAN, IMAGENET_STD), labels


def train_and_probe(name: str, model: nn.Module, world: SyntheticWorld, steps: int, batch: int) -> float:
    shapes = len(world.config.shapes)
    test_x, test_y = scenes(world, HELD_OUT, 256)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    started, shape_acc = time.perf_counter(), 0.0
    for step in range(steps):
        x, y = scenes(world, step * batch, batch)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            model.eval()
            with torch.no_grad():
                predicted = model(test_x).argmax(1)
            model.train()
            colour_acc = (predicted // shapes == test_y // shapes).float().mean().item()
            shape_acc = (predicted % shapes == test_y % shapes).float().mean().item()
            print(f"{name:>4} step {step + 1:4d} {time.perf_counter() - started:5.0f} s  "
                  f"colour {colour_acc:.2f}  shape {shape_acc:.2f}", flush=True)
    return shape_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", nargs="+", choices=("patch", "conv", "cnn"), default=["patch", "conv", "cnn"],
                        help="patch: ViT with CLIP's patchify; conv: ViT with the convolutional stem; cnn: reference")
    args = parser.parse_args()
    world = SyntheticWorld(WorldConfig(seed=1, objects=(1, 1)))
    chance = 1 / len(world.config.shapes)
    image_size = max(world.config.image_size)
    shape = {}
    for name in args.models:
        torch.manual_seed(0)
        model = small_cnn(world.num_classes) if name == "cnn" else \
            TinyClipImageClassifier(world.num_classes, image_size, stem=name)
        shape[name] = train_and_probe(name, model, world, args.steps, args.batch)
    if "cnn" in shape:
        for name in set(shape) - {"cnn"}:
            print(f"shape accuracy above chance, ViT ({name} stem) / CNN: "
                  f"{(shape[name] - chance) / max(shape['cnn'] - chance, 1e-6):.2f}")
    print("shape accuracy: " + ", ".join(f"{k} {v:.2f}" for k, v in shape.items()) + f" (chance {chance:.2f})")


if __name__ == "__main__":
    main()
