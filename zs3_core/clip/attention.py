"""CLIP's pre-norm transformer block with generalized patch severance (DeOP eq. 2).

Parameter names match OpenAI CLIP / open_clip (``ln_1``, ``attn.in_proj_weight``,
``attn.in_proj_bias``, ``attn.out_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) so their state
dicts load unchanged. Attention is written with ``F.scaled_dot_product_attention`` on
batch-first tensors and has no control flow on tensor values, so it traces with
``torch.export`` and exports to ONNX.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back (as OpenAI CLIP): fp16/bf16 LayerNorm in CLIP ViTs
    overflows (TensorRT issues #2564, #2709)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """x·σ(1.702x): the activation OpenAI's CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    """``"quick_gelu"`` (OpenAI weights) or ``"gelu"`` (most open_clip-trained weights)."""
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}; expected 'quick_gelu' or 'gelu'")


class SeverableAttention(nn.Module):
    """Multi-head self-attention whose token mixing can be cut (generalized patch severance).

    Output = α·out_proj(V) + (1−α)·out_proj(softmax(QKᵀ/√d)V)  (DeOP eq. 2). α = 0 is plain
    CLIP attention (identical to ``nn.MultiheadAttention`` with the same weights); α = 1 leaves
    each token's output depending on that token only. Because out_proj is affine, the mix is
    taken before out_proj: one projection instead of two.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, alpha: float = 0.0, causal: bool = False) -> torch.Tensor:
        """x: (B, L, width) → (B, L, width). ``alpha`` and ``causal`` are Python values fixed at
        trace time, never tensors, so the graph has no data-dependent branches."""
        b, n, width = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if alpha == 1.0:
            mixed = v  # severed: no token mixing, attention need not be computed
        else:
            hd = width // self.heads
            q, k, vh = (t.reshape(b, n, self.heads, hd).transpose(1, 2) for t in (q, k, v))
            attended = attention(q, k, vh, causal)
            attended = attended.transpose(1, 2).reshape(b, n, width)
            mixed = attended if alpha == 0.0 else alpha * v + (1.0 - alpha) * attended
        return self.out_proj(mixed)


def cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 (JetPack 6 wheels) takes no device argument
        return torch.is_autocast_cpu_enabled()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Scaled dot-product attention; in fp32 while training under CPU bf16 autocast, because
    PyTorch's bf16 flash-attention backward on CPU is slow: 446 ms against 88 ms in fp32 per
    tiny-CLIP pre-training step (batch 120, AMX Xeon). Inference keeps bf16 (its forward is
    as fast) and tracing never takes this branch (no grad)."""
    if torch.is_grad_enabled() and q.device.type == "cpu" and cpu_autocast_enabled():
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) (OpenAI CLIP)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, activation: str = "quick_gelu"):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = LayerNorm(width)
        self.attn = SeverableAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", make_activation(activation)),
            ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor, alpha: float = 0.0, causal: bool = False) -> torch.Tensor:
        """x: (B, L, width) → (B, L, width)."""
        x = x + self.attn(self.ln_1(x), alpha=alpha, causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Holds ``resblocks`` at CLIP's names. The encoders run the blocks themselves, because
    prompts, severance and taps act between blocks."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0,
                 activation: str = "quick_gelu"):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_ratio, activation) for _ in range(layers)]
        )

    def init_parameters(self) -> None:
        """open_clip's initialisation (std scaled by width and depth), used by both towers."""
        proj_std = (self.width ** -0.5) * ((2 * self.layers) ** -0.5)
        attn_std = self.width ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


def scaled_normal(*shape: int, std: float) -> nn.Parameter:
    """A parameter drawn from N(0, std²), as CLIP initialises embeddings and projections."""
    return nn.Parameter(torch.randn(*shape) * std)


__all__ = [
    "LayerNorm", "QuickGELU", "make_activation", "SeverableAttention", "ResidualAttentionBlock",
    "Transformer", "scaled_normal",
]
