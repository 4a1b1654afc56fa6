"""CLIP ViT image encoder with the hooks zero-shot segmentation needs and open_clip lacks:
deep visual prompts (ZegCLIP / LDVC Sec. 3.3), per-layer patch severance (DeOP eq. 2),
intermediate taps for decoders (LDVC Sec. 3.4), and positional embeddings interpolated to
any patch grid (512×512 → 32×32 for ViT-B/16).
"""
from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import LayerNorm, Transformer, scaled_normal
from .config import VisionConfig
from .stem import ConvStem


class VisionOutput(NamedTuple):
    """What the image tower returns (a NamedTuple so torch.export can flatten it)."""

    global_feature: torch.Tensor  # (B, output_dim) = ln_post(CLS) @ proj, not normalised
    patch_features: torch.Tensor  # (B, output_dim, h, w) = ln_post(patch tokens) @ proj, not normalised
    taps: Dict[int, torch.Tensor]  # block index → (B, width, h, w) patch tokens after that block
    tokens: torch.Tensor  # (B, 1 + N + h*w, width) after the last block, before ln_post


def resize_pos_embed(
    pos_embed: torch.Tensor,
    grid: Tuple[int, int],
    old_grid: Optional[Tuple[int, int]] = None,
    mode: str = "bicubic",
) -> torch.Tensor:
    """Interpolate a ViT positional embedding to another patch grid, keeping the CLS entry.

    pos_embed: (1 + g_h·g_w, width) → (1 + h·w, width) for ``grid = (h, w)`` (non-square allowed).
    ``old_grid`` defaults to the square grid the length implies. Bicubic as open_clip and DeOP
    (ZegCLIP uses bilinear); antialiasing only when shrinking, as open_clip, which keeps the
    upsampling path exportable to ONNX. Returns ``pos_embed`` itself when the grid is unchanged.
    """
    n = pos_embed.shape[0] - 1
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"positional embedding has {n} patch entries, not a square grid; pass old_grid")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != n:
        raise ValueError(f"old_grid {old_grid} does not match {n} patch entries")
    grid = (int(grid[0]), int(grid[1]))
    if grid == tuple(old_grid):
        return pos_embed
    width = pos_embed.shape[1]
    image = pos_embed[1:].reshape(1, old_grid[0], old_grid[1], width).permute(0, 3, 1, 2)
    shrinking = grid[0] < old_grid[0] or grid[1] < old_grid[1]
    image = F.interpolate(image.float(), size=grid, mode=mode, align_corners=False, antialias=shrinking)
    image = image.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(grid[0] * grid[1], width)
    return torch.cat([pos_embed[:1], image], dim=0)


def severance_last_layer(layers: int, alpha: float = 1.0) -> Tuple[float, ...]:
    """Per-layer α with severance on the last block only: DeOP's best setting (Table 4) and the
    training-free baseline's. Shallow-layer severance breaks CLIP's embedding space."""
    return (0.0,) * (layers - 1) + (float(alpha),)


def _tracing() -> bool:
    """True under torch.export / torch.compile / TorchScript tracing / ONNX export, where the
    positional-embedding cache must not be used (it would bake stale Python state in)."""
    is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)  # torch < 2.5 (older Jetson wheels)
    return (
        torch.compiler.is_compiling()
        or is_exporting()
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
    )


class VisionTransformer(nn.Module):
    """CLIP ViT with parameter names of OpenAI CLIP's ``visual`` module (``conv1`` is the patchify
    conv; a tower configured with ``stem: conv`` has ``stem.*`` in its place)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        width, grid = config.width, config.grid_size
        scale = width ** -0.5
        if config.stem == "conv":
            self.stem = ConvStem(width, config.patch_size)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = scaled_normal(width, std=scale)
        self.positional_embedding = scaled_normal(grid * grid + 1, width, std=scale)
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio, config.activation)
        self.ln_post = LayerNorm(width)
        self.proj = scaled_normal(width, config.output_dim, std=scale)
        self.transformer.init_parameters()
        # (h, w) → (stamp of the parameter it was computed from, interpolated embedding)
        self._pos_cache: Dict[Tuple[int, int], Tuple[tuple, torch.Tensor]] = {}

    @property
    def patch_embed(self) -> nn.Module:
        """The module turning (B, 3, H, W) images into (B, width, h, w) patch embeddings (where
        DeOP's additive prompt hooks in), whichever the stem."""
        return self.stem if self.config.stem == "conv" else self.conv1

    def positional_embedding_for(self, h: int, w: int) -> torch.Tensor:
        """(1 + h·w, width) embedding for an h×w patch grid.

        The native grid returns the parameter. Other grids are interpolated once and cached while
        the parameter is frozen (keyed by its version, device and dtype, so a reload or ``.to()``
        invalidates the entry); a trainable embedding is re-interpolated each call so gradients flow.
        """
        pos = self.positional_embedding
        native = self.config.grid_size
        if (h, w) == (native, native):
            return pos
        if (pos.requires_grad and torch.is_grad_enabled()) or _tracing():
            return resize_pos_embed(pos, (h, w), (native, native))
        stamp = (pos._version, pos.device, pos.dtype, pos.data_ptr())
        hit = self._pos_cache.get((h, w))
        if hit is None or hit[0] != stamp:
            hit = (stamp, resize_pos_embed(pos.detach(), (h, w), (native, native)))
            self._pos_cache[(h, w)] = hit
        return hit[1]

    def _alphas(self, severance: Optional[Sequence[float]]) -> Tuple[float, ...]:
        layers = self.config.layers
        if severance is None:
            return (0.0,) * layers
        alphas = tuple(float(a) for a in severance)
        if len(alphas) != layers:
            raise ValueError(f"severance has {len(alphas)} values; the vision tower has {layers} layers")
        if any(not 0.0 <= a <= 1.0 for a in alphas):
            raise ValueError(f"severance values must lie in [0, 1], got {alphas}")
        return alphas

    def _check_inputs(self, images: torch.Tensor, prompts: Optional[torch.Tensor], taps: Sequence[int]) -> None:
        p = self.config.patch_size
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % p or images.shape[-1] % p:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of patch size {p}")
        if prompts is not None and (
            prompts.dim() != 3 or prompts.shape[-1] != self.config.width or prompts.shape[0] > self.config.layers
        ):
            raise ValueError(
                f"visual prompts must be (L', N, {self.config.width}) with L' <= {self.config.layers}, "
                f"got {tuple(prompts.shape)}"
            )
        bad = [i for i in taps if not 0 <= i < self.config.layers]
        if bad:
            raise ValueError(f"tap indices {bad} out of range: blocks are 0..{self.config.layers - 1}")

    def forward(
        self,
        images: torch.Tensor,
        prompts: Optional[torch.Tensor] = None,
        taps: Sequence[int] = (),
        severance: Optional[Sequence[float]] = None,
    ) -> VisionOutput:
        """images: (B, 3, H, W), H and W multiples of patch_size.

        prompts: (L', N, width) deep visual prompts (ZegCLIP/LDVC): inserted after ``ln_pre`` as
        [CLS, prompts, patches]; before block i < L' the previous prompt outputs are replaced by
        ``prompts[i]``; blocks i ≥ L' let them pass through. ``None`` or L' = 0 means no prompts.
        taps: block indices (0-based) whose patch-token outputs to return as (B, width, h, w).
        severance: per-layer α (length = layers), DeOP eq. 2; ``None`` = all 0 (plain CLIP).
        """
        self._check_inputs(images, prompts, taps)
        alphas = self._alphas(severance)
        n_layers_prompted = 0 if prompts is None else prompts.shape[0]
        n_prompts = prompts.shape[1] if n_layers_prompted else 0

        x = self.patch_embed(images.to(self.class_embedding.dtype))  # (B, width, h, w)
        b, width, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, width)
        cls = self.class_embedding.to(x.dtype).expand(b, 1, width)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding_for(h, w).to(x.dtype)
        x = self.ln_pre(x)

        late_class = self.config.class_token_block
        class_start = x[:, :1]
        read: list = []  # the patch tokens entering each block a late class token reads
        tapped: Dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.transformer.resblocks):
            if i < n_layers_prompted:
                layer_prompts = prompts[i].to(x.dtype).unsqueeze(0).expand(b, n_prompts, width)
                rest = x[:, 1:] if i == 0 else x[:, 1 + n_prompts:]
                x = torch.cat([x[:, :1], layer_prompts, rest], dim=1)
            if late_class and i == late_class:
                x = torch.cat([class_start, x[:, 1:]], dim=1)
            if late_class and i >= late_class:
                read.append(x[:, 1 + n_prompts:])
            x = block(x, alpha=alphas[i])
            if i in taps:
                tapped[i] = x[:, 1 + n_prompts:].transpose(1, 2).reshape(b, width, h, w)

        global_feature = self.ln_post(x[:, 0]) @ self.proj
        patch_tokens = self.class_view(class_start, read) if late_class else x[:, 1 + n_prompts:]
        patches = self.ln_post(patch_tokens) @ self.proj  # (B, h*w, output_dim)
        patch_features = patches.transpose(1, 2).reshape(b, -1, h, w)
        return VisionOutput(global_feature, patch_features, tapped, x)

    def class_view(self, class_start: torch.Tensor, read: Sequence[torch.Tensor]) -> torch.Tensor:
        """What a late class token would hold had it read each patch alone: from its start,
        through blocks ``class_token_block``.., its attention replaced by that patch's value
        (patch severance for the class token). (B, 1, width) and [(B, h*w, width)] → (B, h*w, width)."""
        y = class_start.expand_as(read[0])
        for block, patches in zip(self.transformer.resblocks[self.config.class_token_block:], read):
            y = y + block.attn(block.ln_1(patches), alpha=1.0)
            y = y + block.mlp(block.ln_2(y))
        return y
