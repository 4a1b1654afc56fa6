"""Convolutional stem for small ViTs ("Early Convolutions Help Transformers See Better",
Xiao et al., NeurIPS 2021): a few stride-2 3×3 convolutions replace the single 16×16 patchify.

Why: a ViT trained from scratch on little data learns colour but not shape through a linear
patchify (measured in ``bench/shape_learning.py``: the tiny CLIP tower stays at chance on shape
where a 4-block CNN reaches 0.93). Overlapping 3×3 convolutions give every token local edge and
corner features. The stem is only for towers trained here (the synthetic world); OpenAI and
open_clip weights use the patchify conv and load unchanged.

GroupNorm, not BatchNorm: a frozen CLIP inside a model in ``train()`` mode must not update
running statistics, and batches of 1 at inference must behave like training.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import conv_stem_stages

CHANNELS_PER_GROUP = 8


def conv_stem_channels(width: int, patch_size: int) -> list[int]:
    """Output channels of the stride-2 convolutions: doubling up to ``width`` (24, 48, 96, 192
    for width 192 and 16-px patches). ``patch_size`` must be a power of two ≥ 2."""
    stages = conv_stem_stages(patch_size)
    return [max(width >> (stages - 1 - i), CHANNELS_PER_GROUP) for i in range(stages)]


class ConvStem(nn.Module):
    """(B, 3, H, W) → (B, width, H/p, W/p): log2(p) × [3×3 stride-2 conv, GroupNorm, GELU], then
    a 1×1 projection to ``width`` (the role of the patchify conv's linear map)."""

    def __init__(self, width: int, patch_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in conv_stem_channels(width, patch_size):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                       nn.GroupNorm(max(c_out // CHANNELS_PER_GROUP, 1), c_out), nn.GELU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, width, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(images))
