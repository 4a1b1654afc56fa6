"""Query-based classification anchor heatmap decoder and heatmap pooling (DeOP Sec. 4.2, eq. 3).

N learned anchor queries (one per proposal, index-aligned with the proposal network's
queries) pass K standard transformer decoder layers over the L2-normalised CLIP features
(+ sine positional encoding; K = 1 is best, Table 5). The heatmap output layer applies
query self-attention, then

    H = softmax(q · F_Vᵀ / √d) ⊙ sigmoid(M↓)          (eq. 3; softmax over the h·w patches)

with M↓ the proposal mask logits resized to the CLIP grid (sigmoid so H stays a weighting;
the reference code multiplies by the mask probabilities). Heatmap pooling (Sec. 4.2.2):
F_I = H · F_V, L2-normalised → one embedding per proposal in CLIP's joint space.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zs3_core.models.deop.proposals import QueryDecoderLayer, sine_position_encoding


class AnchorHeatmapDecoder(nn.Module):
    """(B, D, h, w) CLIP features + (B, N, H', W') mask logits → (B, N, D) pooled embeddings, (B, N, h, w) H."""

    def __init__(self, dim: int, num_queries: int = 100, layers: int = 1, heads: int = 8, ffn_dim: int = 2048):
        super().__init__()
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, dim)
        self.query_pos = nn.Embedding(num_queries, dim)
        self.layers = nn.ModuleList(QueryDecoderLayer(dim, heads, ffn_dim) for _ in range(layers))
        self.heatmap_self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.heatmap_norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, mask_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, h, w = features.shape
        if mask_logits.shape[1] != self.num_queries:
            raise ValueError(f"anchor decoder has {self.num_queries} queries but got {mask_logits.shape[1]} "
                             "proposal masks; set proposal_queries equal for both")
        values = F.normalize(features, dim=1).flatten(2).transpose(1, 2)              # (B, hw, D)
        pos = sine_position_encoding(h, w, d, features.device, values.dtype).unsqueeze(0).expand(b, -1, -1)
        q = self.query_feat.weight.unsqueeze(0).expand(b, -1, -1)
        query_pos = self.query_pos.weight.unsqueeze(0).expand(b, -1, -1)
        for layer in self.layers:
            q = layer(q, query_pos, values, pos)
        k = q + query_pos
        q = self.heatmap_norm(q + self.heatmap_self_attn(k, k, q, need_weights=False)[0])
        attention = torch.softmax(q @ values.transpose(1, 2) / math.sqrt(d), dim=-1)     # (B, N, hw)
        masks = F.interpolate(mask_logits, size=(h, w), mode="bilinear", align_corners=False).sigmoid()
        heatmaps = attention * masks.flatten(2)                                           # eq. 3
        pooled = F.normalize(heatmaps @ values, dim=-1)                                    # F_I (B, N, D)
        return pooled, heatmaps.reshape(b, -1, h, w)
