"""Text adapter: fuse the global image feature into the class embeddings (LDVC eq. 3).

t′ = Linear([t ⊙ g ; t]) with t the class embeddings and g the global ([CLS]) image feature,
both L2-normalised, the "relationship descriptor" form of ZegCLIP that LDVC follows
(docs/sources.md). The result has the class embeddings' size and is per image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TextAdapter(nn.Module):
    """(C, D) class embeddings and (B, D) global feature → (B, C, D) fused class embeddings."""

    def __init__(self, dim: int):
        super().__init__()
        self.fuse = nn.Linear(2 * dim, dim)
        # Start as t′ = t: CLIP's class embeddings pass through unchanged and the relationship
        # term is learned from zero. PyTorch's default init (paper silent) gives every class
        # the same random bias, several times the size of its own t-dependent part, so all
        # t′ start almost parallel and the logits cannot tell classes apart.
        with torch.no_grad():
            self.fuse.weight.zero_()
            self.fuse.weight[:, dim:].copy_(torch.eye(dim))
            self.fuse.bias.zero_()

    def forward(self, class_embeddings: torch.Tensor, global_feature: torch.Tensor) -> torch.Tensor:
        t = F.normalize(class_embeddings, dim=-1).unsqueeze(0)          # (1, C, D)
        g = F.normalize(global_feature, dim=-1).unsqueeze(1)            # (B, 1, D)
        t = t.expand(g.shape[0], -1, -1)
        return self.fuse(torch.cat([t * g, t], dim=-1))
