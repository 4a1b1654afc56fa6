"""The one interface every segmentation model serves and trains through.

The image path takes the class embeddings as an input instead of owning them, so a compiled
or exported graph (ONNX, TensorRT) never depends on the vocabulary: C is a dynamic
dimension and the text encoder runs only when the vocabulary changes.

Inference and training are separate calls: `forward` / `predict` return the same tensors in
train and eval mode (what serving and export see), while `training_outputs` returns whatever
the model's loss needs (a model may keep extra channels or intermediate heads there) and
`compute_loss` turns that into named loss terms. The training loop calls only these two.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zs3_core.config import ModelConfig


class ZeroShotSegmentationModel(nn.Module):
    """Base class: subclasses implement `encode_classes`, `forward` and `probabilities`, and
    (if they train) `compute_loss`, plus `training_outputs` where the loss needs more than
    the logits."""

    config: ModelConfig
    # Whether a template ensemble is averaged per class (zs3_core/class_embeddings.py). A model
    # whose learned text prompts replace the hand-written template sets False and says why in
    # `prompt_ensemble_note`; it keeps its config's template, and callers are told so.
    prompt_ensembles: bool = True
    prompt_ensemble_note: str = ""

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

    def training_outputs(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> Any:
        """What `compute_loss` reads, for a training batch; the logits unless overridden."""
        return self(image, class_embeddings)

    def compute_loss(self, outputs: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms on `training_outputs(...)` against (B, H, W) int64 labels (255 = ignored):
        a dict with the total under "loss" (the tensor to back-propagate) and detached terms
        under their own names for logging."""
        raise NotImplementedError(f"{type(self).__name__} has no training loss")

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters that training updates and checkpoints store (CLIP stays frozen unless a
        model fine-tunes part of it)."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def lr_scale(self, name: str) -> float:
        """Learning-rate factor of one trainable parameter: pre-trained weights being
        fine-tuned usually want a smaller step than newly initialised ones."""
        return 1.0
