"""Configuration of the CLIP towers as plain dataclasses (open_clip's CLIPVisionCfg/CLIPTextCfg style).

The same code builds OpenAI's ViT-B/16 and the tiny CLIP of the synthetic world; only these
numbers differ. ``ClipConfig.to_dict``/``from_dict`` round-trip through YAML.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from zs3_core.config import ConfigError, dataclass_from_dict

ACTIVATIONS = ("quick_gelu", "gelu")
STEMS = ("patch", "conv")


class ClipConfigError(ConfigError):
    """A CLIP configuration is inconsistent or has unknown fields."""


def conv_stem_stages(patch_size: int) -> int:
    """How many stride-2 convolutions a convolutional stem needs for ``patch_size`` (log2 of it);
    only powers of two ≥ 2 have an answer."""
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise ClipConfigError(f"vision.stem 'conv' needs a power-of-two patch_size, got {patch_size}; the smallest is 2")
    return patch_size.bit_length() - 1


def _check_tower(cfg: Any, tower: str) -> None:
    """Checks both towers share: heads divide the width, a known activation."""
    if cfg.heads <= 0 or cfg.width % cfg.heads:
        raise ClipConfigError(f"{tower}.width {cfg.width} is not divisible by {tower}.heads {cfg.heads}")
    if cfg.activation not in ACTIVATIONS:
        raise ClipConfigError(
            f"{tower}.activation is {cfg.activation!r}; expected one of {ACTIVATIONS} "
            "(OpenAI weights use 'quick_gelu', most open_clip-trained models 'gelu')"
        )


@dataclass
class VisionConfig:
    """ViT image tower. ``image_size`` is the native input size: the positional-embedding grid
    is ``image_size // patch_size`` per side; other input sizes are interpolated.

    ``stem``: ``"patch"`` is CLIP's single patch_size×patch_size conv (all published weights);
    ``"conv"`` is a stack of stride-2 3×3 convolutions (``stem.ConvStem``) for small towers
    trained from scratch, which learn shape through it and not through a linear patchify.

    ``class_token_block``: the block from which the class token reads the image. 0 is CLIP (all
    published weights). ``k > 0`` restarts the class token from its embedding before block k
    (CaiT's late class attention), so the image embedding is built only from what blocks k..
    read off the patches, and each patch, read the same way, gives a patch feature in the
    image-text space (``VisionTransformer.class_view``): the dense alignment real CLIP's
    last-layer values have and a tower trained from scratch in minutes does not acquire."""

    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    output_dim: int = 512
    mlp_ratio: float = 4.0
    activation: str = "quick_gelu"
    stem: str = "patch"
    class_token_block: int = 0

    def __post_init__(self) -> None:
        _check_tower(self, "vision")
        if not 0 <= self.class_token_block < self.layers:
            raise ClipConfigError(
                f"vision.class_token_block is {self.class_token_block}; it must name a block, 0..{self.layers - 1}"
            )
        if self.stem not in STEMS:
            raise ClipConfigError(f"vision.stem is {self.stem!r}; expected one of {STEMS}")
        if self.stem == "conv":
            conv_stem_stages(self.patch_size)
        if self.image_size % self.patch_size:
            raise ClipConfigError(
                f"vision.image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )

    @property
    def grid_size(self) -> int:
        """Patches per side at the native image size."""
        return self.image_size // self.patch_size


@dataclass
class TextConfig:
    """Causal text transformer over CLIP's 49,408-token BPE vocabulary."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    output_dim: int = 512
    mlp_ratio: float = 4.0
    activation: str = "quick_gelu"

    def __post_init__(self) -> None:
        _check_tower(self, "text")


@dataclass
class ClipConfig:
    """Both towers; their ``output_dim`` is the shared image-text embedding size."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self) -> None:
        if self.vision.output_dim != self.text.output_dim:
            raise ClipConfigError(
                f"vision.output_dim {self.vision.output_dim} != text.output_dim {self.text.output_dim}: "
                "image and text embeddings must share one space"
            )

    @property
    def embed_dim(self) -> int:
        return self.vision.output_dim

    @classmethod
    def vitb16(cls, image_size: int = 224, activation: str = "quick_gelu") -> "ClipConfig":
        """OpenAI CLIP ViT-B/16 (QuickGELU). ``image_size=512`` gives the 32×32 grid of the papers."""
        return cls(
            vision=VisionConfig(image_size=image_size, patch_size=16, width=768, layers=12, heads=12,
                                output_dim=512, activation=activation),
            text=TextConfig(width=512, layers=12, heads=8, output_dim=512, activation=activation),
        )

    @classmethod
    def tiny(cls, image_size: int = 224, stem: str = "patch") -> "ClipConfig":
        """Small CLIP for the synthetic world: same code, head dim 64 like ViT-B/16, and the real
        49,408-token vocabulary so the real tokenizer applies. Pre-training from scratch uses
        ``stem="conv"`` (see ``VisionConfig``)."""
        return cls(
            vision=VisionConfig(image_size=image_size, patch_size=16, width=192, layers=6, heads=3,
                                output_dim=128, stem=stem),
            text=TextConfig(width=128, layers=4, heads=2, output_dim=128),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClipConfig":
        """Build from a (YAML) mapping ``{vision: {...}, text: {...}}``; missing fields take
        defaults; unknown keys and wrong types raise ``ConfigError`` naming the field."""
        return dataclass_from_dict(cls, dict(data) if isinstance(data, Mapping) else data, "clip")
