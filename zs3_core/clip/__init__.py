"""CLIP ViT image and text encoders with the hooks zero-shot segmentation needs (deep prompts,
patch severance, intermediate taps, positional-embedding interpolation), at OpenAI/open_clip
parameter names so their checkpoints load directly. See docs/architecture.md."""
from .checkpoint import (
    ClipCheckpointError,
    ClipStateDictMismatch,
    config_from_state_dict,
    load_clip,
    load_clip_into,
    load_clip_state_dict,
    normalize_state_dict,
)
from .config import ClipConfig, ClipConfigError, TextConfig, VisionConfig
from .model import CLIP
from .text import TextTower, TextTransformer
from .tokenizer import ClipTokenizer, ClipTokenizerUnavailable
from .vision import VisionOutput, VisionTransformer, resize_pos_embed, severance_last_layer

__all__ = [
    "CLIP", "ClipCheckpointError", "ClipConfig", "ClipConfigError", "ClipStateDictMismatch", "ClipTokenizer",
    "ClipTokenizerUnavailable", "TextConfig", "TextTower", "TextTransformer", "VisionConfig", "VisionOutput",
    "VisionTransformer", "config_from_state_dict", "load_clip", "load_clip_into", "load_clip_state_dict",
    "normalize_state_dict", "resize_pos_embed", "severance_last_layer",
]
