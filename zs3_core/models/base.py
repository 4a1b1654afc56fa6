"""The one interface every segmentation model serves through.

The image path takes the class embeddings as an input instead of owning them, so a compiled
or exported graph (ONNX, TensorRT) never depends on the vocabulary: C is a dynamic
dimension and the text encoder runs only when the vocabulary changes.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from zs3_core.config import ModelConfig


class ZeroShotSegmentationModel(nn.Module):
    """Base class: subclasses implement `encode_classes`, `forward` and `probabilities`."""

    config: ModelConfig

    def encode_classes(self, names: Sequence[str], template: str) -> torch.Tensor:
        """Text side: (C, D) class embeddings for `template.format(name)` of each name."""
        raise NotImplementedError

    def forward(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Image path: (B, 3, S, S) normalised image, (C, D) embeddings → (B, C, h, w) logits."""
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) logits → per-class probabilities in [0, 1]; softmax unless overridden."""
        return logits.softmax(dim=1)

    def predict(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """The inference graph: probabilities at feature resolution, (B, C, h, w)."""
        return self.probabilities(self(image, class_embeddings))

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters that training updates and checkpoints store (CLIP stays frozen unless a
        model fine-tunes part of it)."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def lr_scale(self, name: str) -> float:
        """Learning-rate factor of one trainable parameter: pre-trained weights being
        fine-tuned usually want a smaller step than newly initialised ones."""
        return 1.0
