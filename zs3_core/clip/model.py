"""The two-tower CLIP model (Radford et al., 2021) at OpenAI's parameter names.

``visual.*`` is the image tower; the text tower's parameters sit at the top level
(inherited from ``TextTower``), plus ``logit_scale``: exactly the keys of an OpenAI or
open_clip ViT state dict, so ``load_state_dict`` needs no key mapping.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ClipConfig
from .text import TextTower
from .vision import VisionOutput, VisionTransformer


class CLIP(TextTower):
    """Image and text encoders sharing one embedding space of size ``config.embed_dim``."""

    def __init__(self, config: ClipConfig):
        super().__init__(config.text)
        self.config = config
        self.visual = VisionTransformer(config.vision)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def encode_image(
        self,
        images: torch.Tensor,
        prompts: Optional[torch.Tensor] = None,
        severance: Optional[Sequence[float]] = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) → (B, embed_dim) global image embedding, not normalised."""
        return self.visual(images, prompts=prompts, severance=severance).global_feature

    def encode_image_dense(self, images: torch.Tensor, **kwargs) -> VisionOutput:
        """The full ``VisionOutput`` (patch features, taps, tokens); kwargs as ``VisionTransformer``."""
        return self.visual(images, **kwargs)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Contrastive forward for pre-training: L2-normalised image (B, D) and text (C, D)
        embeddings and the logit scale exp(logit_scale), as open_clip returns them."""
        image_features = F.normalize(self.encode_image(images), dim=-1)
        text_features = F.normalize(self.encode_text(tokens), dim=-1)
        return image_features, text_features, self.logit_scale.exp()
