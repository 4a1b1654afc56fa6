"""Class-agnostic mask proposal network: MaskFormer without its classification branch
(DeOP Sec. 3.1 and supplementary A, Fig. 6).

backbone → pixel decoder (FPN) → per-pixel embeddings F_P at stride 4; a DETR transformer
decoder turns N = 100 learned queries into mask embeddings over the stride-32 features;
masks M = mask_embed · F_P (MaskFormer, Cheng et al. 2021, Sec. 3.3).

Backbone: `resnet101c` is the paper's ResNet-101c (`resnet101c.py`; ImageNet weights through
`backbone_convert.py`). `light_resnet_c` (the synthetic configs, a deviation: CPU budget and no
pretrained weights for the synthetic world) is a light ResNet-c of BasicBlocks — the "c" deep stem of three 3×3 convs,
then one BasicBlock per stage at strides 4/8/16/32 with 64/128/256/512 channels — trained
from scratch, so the whole stream runs on a CPU and needs no extra pretrained weights.
GroupNorm instead of BatchNorm because per-device batches are small (MaskFormer freezes BN
of a pretrained backbone instead, which a from-scratch backbone cannot do).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.GroupNorm(min(32, cout // 4), cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs) with a projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = conv_norm_relu(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.GroupNorm(min(32, cout // 4), cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(min(32, cout // 4), cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class LightResNetC(nn.Module):
    """(B, 3, S, S) → [(B, c_i, S/4, S/4), …, (B, c_4, S/32, S/32)] feature pyramid."""

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        stem = channels[0]
        self.stem = nn.Sequential(conv_norm_relu(3, stem // 2, 2), conv_norm_relu(stem // 2, stem // 2),
                                  conv_norm_relu(stem // 2, stem), nn.MaxPool2d(3, 2, 1))
        strides = (1,) + (2,) * (len(channels) - 1)
        cins = (stem,) + tuple(channels[:-1])
        self.stages = nn.ModuleList(BasicBlock(cin, cout, s) for cin, cout, s in zip(cins, channels, strides))
        self.channels = tuple(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class FPNPixelDecoder(nn.Module):
    """MaskFormer's simple FPN pixel decoder: pyramid → (B, mask_dim, S/4, S/4) per-pixel embeddings."""

    def __init__(self, in_channels: tuple[int, ...], conv_dim: int = 256, mask_dim: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, conv_dim, 1) for c in in_channels[:-1])
        self.top = conv_norm_relu(in_channels[-1], conv_dim)
        self.output = nn.ModuleList(conv_norm_relu(conv_dim, conv_dim) for _ in in_channels[:-1])
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, 1, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        y = self.top(features[-1])
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral[i](features[i])
            y = self.output[i](lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
        return self.mask_features(y)


def sine_position_encoding(h: int, w: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """DETR's normalised 2-D sine positional encoding → (h·w, dim); dim divisible by 4."""
    if dim % 4:
        raise ValueError(f"sine positional encoding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    scale = 2 * math.pi
    y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * scale
    x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * scale
    freq = 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    py = y[:, None] / freq                                                # (h, quarter)
    px = x[:, None] / freq                                                # (w, quarter)
    py = torch.cat([py.sin(), py.cos()], dim=-1)[:, None, :].expand(h, w, 2 * quarter)
    px = torch.cat([px.sin(), px.cos()], dim=-1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([py, px], dim=-1).reshape(h * w, dim).to(dtype or torch.float32)


class QueryDecoderLayer(nn.Module):
    """DETR decoder layer (post-norm): query self-attention, cross-attention to memory, FFN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor) -> torch.Tensor:
        """q, query_pos: (B, N, dim); memory, memory_pos: (B, L, dim) → (B, N, dim)."""
        k = q + query_pos
        q = self.norm1(q + self.self_attn(k, k, q, need_weights=False)[0])
        q = self.norm2(q + self.cross_attn(q + query_pos, memory + memory_pos, memory, need_weights=False)[0])
        return self.norm3(q + self.ffn(q))


PROPOSAL_BACKBONES = ("light_resnet_c", "resnet101c")


def build_proposal_backbone(name: str, channels: tuple[int, ...]) -> nn.Module:
    """The backbone named by `model.options.proposal_backbone` (`channels`: light ResNet-c only)."""
    if name == "light_resnet_c":
        return LightResNetC(channels)
    if name == "resnet101c":
        from zs3_core.models.deop.resnet101c import ResNet101C
        return ResNet101C("deep")
    raise ValueError(f"model.options.proposal_backbone must be one of {PROPOSAL_BACKBONES}, got {name!r}")


class MaskProposalNetwork(nn.Module):
    """(B, 3, S, S) image → (B, N, S/4, S/4) class-agnostic mask logits M."""

    def __init__(self, num_queries: int = 100, channels: tuple[int, ...] = (64, 128, 256, 512),
                 hidden_dim: int = 256, mask_dim: int = 256, decoder_layers: int = 6, heads: int = 8,
                 ffn_dim: int = 2048, backbone: str = "light_resnet_c"):
        super().__init__()
        self.backbone = build_proposal_backbone(backbone, channels)
        self.pixel_decoder = FPNPixelDecoder(self.backbone.channels, hidden_dim, mask_dim)
        self.input_proj = nn.Conv2d(self.backbone.channels[-1], hidden_dim, 1)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_pos = nn.Embedding(num_queries, hidden_dim)
        self.layers = nn.ModuleList(QueryDecoderLayer(hidden_dim, heads, ffn_dim) for _ in range(decoder_layers))
        self.mask_embed = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
                                        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
                                        nn.Linear(hidden_dim, mask_dim))

    def forward(self, image: torch.Tensor, every_layer: bool = False):
        """Mask logits of the last decoder layer; with `every_layer`, a list with those of every
        layer, last one last (MaskFormer's deep supervision: one shared mask head)."""
        features = self.backbone(image)
        pixel_embeddings = self.pixel_decoder(features)                   # (B, mask_dim, S/4, S/4)
        memory = self.input_proj(features[-1])                            # (B, hidden, S/32, S/32)
        b, d, h, w = memory.shape
        memory_pos = sine_position_encoding(h, w, d, memory.device, memory.dtype).unsqueeze(0).expand(b, -1, -1)
        memory = memory.flatten(2).transpose(1, 2)
        q = self.query_feat.weight.unsqueeze(0).expand(b, -1, -1)
        query_pos = self.query_pos.weight.unsqueeze(0).expand(b, -1, -1)
        per_layer = []
        for layer in self.layers:
            q = layer(q, query_pos, memory, memory_pos)
            if every_layer:
                per_layer.append(torch.einsum("bnc,bchw->bnhw", self.mask_embed(q), pixel_embeddings))
        if every_layer:
            return per_layer
        return torch.einsum("bnc,bchw->bnhw", self.mask_embed(q), pixel_embeddings)
