"""Training-free baseline: frozen CLIP, patch severance on the last layer, dense classification.

With α = 1 on the last block every patch token's output is out_proj(v) of that patch alone
(DeOP's generalized patch severance, MaskCLIP's observation): the tokens keep the local
content CLIP's final attention would otherwise smear over the whole image. Each patch
embedding is then scored against the text embeddings like CLIP scores a whole image.
Needs only pretrained CLIP weights, so users get masks before training anything.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from zs3_core.config import ModelConfig
from zs3_core.models.base import ZeroShotSegmentationModel


class TrainingFreeBaseline(ZeroShotSegmentationModel):
    """Frozen CLIP → (B, C, h, w) cosine logits scaled by CLIP's own temperature."""

    def __init__(self, config: ModelConfig, clip):
        super().__init__()
        self.config = config
        self.clip = clip
        self.clip.requires_grad_(False)
        layers = clip.config.vision.layers
        self.severance = tuple([0.0] * (layers - 1) + [1.0])
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from zs3_core.clip import ClipTokenizer
            self._tokenizer = ClipTokenizer(context_length=self.clip.config.text.context_length)
        return self._tokenizer

    @torch.no_grad()
    def encode_classes(self, names: Sequence[str], template: str) -> torch.Tensor:
        tokens = self.tokenizer([template.format(n) for n in names])
        device = next(self.clip.parameters()).device
        return F.normalize(self.clip.encode_text(tokens.to(device)).float(), dim=-1)

    def forward(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        features = self.clip.visual(image, severance=self.severance).patch_features   # (B, D, h, w)
        features = F.normalize(features, dim=1)
        classes = F.normalize(class_embeddings.to(features.dtype), dim=-1)          # (C, D)
        scale = self.clip.logit_scale.exp().clamp(max=100.0).to(features.dtype)
        return scale * torch.einsum("bdhw,cd->bchw", features, classes)
