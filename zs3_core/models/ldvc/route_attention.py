"""Bi-level routing attention: LDVC's local consensus self-attention (LDVC eq. 8–12).

The (h, w) token grid is split into a grid of `windows_per_side`² windows. Window queries
and keys are average-pooled (eq. 8–9), window-to-window affinities pick the top-k most
related windows for every window (eq. 10), their keys/values are gathered (eq. 11), and each
token attends to the tokens of its routed windows only (eq. 12). This is BiFormer's
bi-level routing attention (Zhu et al. 2023) without its LEPE depth-wise conv, which the
LDVC paper does not mention.

Export notes (measured, docs/sources.md): the gather is one flat-index `index_select` (plain ONNX Gather),
not BiFormer's expand+gather, which materialises (B, n², k, w², D) indices (~67M elements
per 512×512 image); k is a Python constant, so TopK gets a constant k (TensorRT needs it);
attention runs on 4-D (B·n², heads, tokens, dh) tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def window_partition(x: torch.Tensor, windows_per_side: int) -> torch.Tensor:
    """(B, h, w, D) → (B, n², h/n · w/n, D) with n = windows_per_side, windows in row-major order."""
    b, h, w, d = x.shape
    n = windows_per_side
    x = x.reshape(b, n, h // n, n, w // n, d).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, n * n, (h // n) * (w // n), d)


def window_merge(x: torch.Tensor, windows_per_side: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B, n², h/n · w/n, D) → (B, h, w, D)."""
    b, _, _, d = x.shape
    n = windows_per_side
    x = x.reshape(b, n, n, h // n, w // n, d).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, d)


class RouteAttention(nn.Module):
    """Multi-head bi-level routing self-attention over a (B, h, w, D) token grid.

    Args:
        dim: token width D.
        num_heads: attention heads; D must be divisible by it.
        windows_per_side: n, the grid is split into n × n windows (LDVC: 8 → 64 windows of
            4 × 4 tokens on the 32 × 32 grid of a 512² ViT-B/16 input).
        top_k: routed windows per window (LDVC: 16). top_k = n² is full self-attention.
    """

    def __init__(self, dim: int, num_heads: int = 8, windows_per_side: int = 8, top_k: int = 16):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"route attention width {dim} is not divisible by {num_heads} heads")
        if not 1 <= top_k <= windows_per_side ** 2:
            raise ValueError(f"route attention top_k must be in [1, {windows_per_side ** 2}] for "
                             f"{windows_per_side}×{windows_per_side} windows, got {top_k}")
        self.dim = dim
        self.num_heads = num_heads
        self.windows_per_side = windows_per_side
        self.top_k = top_k
        self.qkv = nn.Linear(dim, 3 * dim)       # eq. 8: one projection, split into q, k, v
        self.proj = nn.Linear(dim, dim)

    def route(self, q_windows: torch.Tensor, k_windows: torch.Tensor) -> torch.Tensor:
        """Eq. 9–10: (B, n², D) pooled queries/keys → (B, n², top_k) routed window indices."""
        affinity = q_windows @ k_windows.transpose(1, 2)                 # (B, n², n²)
        return torch.topk(affinity, k=self.top_k, dim=-1).indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D) → (B, h, w, D); h and w must be multiples of `windows_per_side`."""
        b, h, w, d = x.shape
        n = self.windows_per_side
        if h % n or w % n:
            raise ValueError(f"route attention needs a token grid divisible by {n} windows per side; "
                             f"got {h}×{w} (choose input_size so that the patch grid is a multiple of {n})")
        windows = n * n
        tokens = (h // n) * (w // n)
        q, k, v = window_partition(self.qkv(x), n).chunk(3, dim=-1)      # each (B, n², t, D)

        routed = self.route(q.mean(dim=2), k.mean(dim=2))                # (B, n², k)
        offsets = torch.arange(b, device=x.device).view(b, 1, 1) * windows
        flat_index = (routed + offsets).reshape(-1)                      # (B·n²·k,)

        # Eq. 11: gather the routed windows' keys and values with one flat index_select.
        kv = torch.cat([k, v], dim=-1).reshape(b * windows, tokens, 2 * d)
        kv = kv.index_select(0, flat_index).reshape(b * windows, self.top_k * tokens, 2 * d)
        k_g, v_g = kv.chunk(2, dim=-1)

        heads, dh = self.num_heads, d // self.num_heads
        q = q.reshape(b * windows, tokens, heads, dh).transpose(1, 2)    # (B·n², H, t, dh)
        k_g = k_g.reshape(b * windows, -1, heads, dh).transpose(1, 2)    # (B·n², H, k·t, dh)
        v_g = v_g.reshape(b * windows, -1, heads, dh).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k_g, v_g)                # eq. 12
        out = out.transpose(1, 2).reshape(b, windows, tokens, d)
        return self.proj(window_merge(out, n, h, w))
