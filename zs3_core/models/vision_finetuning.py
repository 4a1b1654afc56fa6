"""Fine-tuning the last blocks of CLIP's image tower with a segmentation model (a deviation).

Both papers keep CLIP frozen: ViT-B/16's patch tokens already lie near its text space, so
prompts and a decoder (LDVC) or heatmap pooling (DeOP) suffice. A small CLIP trained from
scratch has no such dense alignment (bench/clip_dense_alignment.py: pooled patch features
classify at chance). DeOP's pooled embedding is a weighted mean of those features, with no
learned transform, so frozen it cannot learn at all; the last blocks give it one. The tuned
blocks are stored in the model's checkpoint and train at `lr_scale` × the model's rate.
"""
from __future__ import annotations

from torch import nn


def unfreeze_last_vision_blocks(clip: nn.Module, count: int, lr_scale: float) -> None:
    """Let the last `count` image blocks of an otherwise frozen CLIP train (0: none)."""
    layers = len(clip.visual.transformer.resblocks)
    if not 0 <= count <= layers or lr_scale <= 0:
        raise ValueError(f"model.options.finetune_vision_blocks must lie in 0..{layers} (the image "
                         f"tower's blocks) and finetune_lr_scale be > 0, got {count} and {lr_scale}")
    for block in clip.visual.transformer.resblocks[layers - count:]:
        block.requires_grad_(True)


def vision_lr_scale(name: str, lr_scale: float) -> float:
    """The learning-rate factor of parameter `name`: `lr_scale` for CLIP's, 1 for the model's own."""
    return lr_scale if name.startswith("clip.") else 1.0
