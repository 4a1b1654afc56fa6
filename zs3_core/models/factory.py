"""Builds the model a ModelConfig names. A plain function, no registry: the list of models
is short and reading this file tells you all of them."""
from __future__ import annotations

import logging

from zs3_core.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)

MODEL_NAMES = ("clip_baseline", "ldvc", "deop")


CLIP_PRESETS = ("vitb16", "tiny")


def resolve_clip_config(value, image_size: int = 224):
    """A ClipConfig from a preset name ("vitb16", "tiny") or a {vision, text} mapping; presets
    get the model's input size so the positional grid is resized once, at load."""
    from zs3_core.clip import ClipConfig

    if isinstance(value, ClipConfig):
        return value
    if isinstance(value, str):
        if value not in CLIP_PRESETS:
            raise ConfigError(f"model.clip {value!r} is not a preset; choose one of {CLIP_PRESETS} "
                              "or give a mapping with 'vision' and 'text' sections")
        return getattr(ClipConfig, value)(image_size=image_size)
    if isinstance(value, dict):
        return ClipConfig.from_dict(value)
    raise ConfigError(f"model.clip must be a preset name or a mapping, got {value!r}")


def build_clip(config: ModelConfig):
    """CLIP with the config's architecture; pretrained weights when `clip_weights` is set."""
    from zs3_core.clip import CLIP, load_clip

    if config.clip_weights:
        if config.clip in (None, "auto"):
            return load_clip(config.clip_weights, None, image_size=config.input_size)
        return load_clip(config.clip_weights, resolve_clip_config(config.clip, config.input_size))
    log.warning("model.clip_weights is not set: CLIP has RANDOM weights; masks are meaningless "
                "until pretrained or trained weights are given")
    return CLIP(resolve_clip_config(config.clip, config.input_size))


def build_model(config: ModelConfig):
    """The ZeroShotSegmentationModel for `config.name`, with the trained tensors of
    `config.checkpoint` when set: a shipped config then names a whole trained model."""
    model = _build_architecture(config)
    if config.checkpoint:
        from zs3_core.model_checkpoint import load_model_checkpoint
        info = load_model_checkpoint(config.checkpoint, model)
        log.info("loaded %s (step %d)", config.checkpoint, info["step"])
    return model


def _build_architecture(config: ModelConfig):
    if config.name == "clip_baseline":
        from zs3_core.models.baseline import TrainingFreeBaseline
        return TrainingFreeBaseline(config, build_clip(config))
    if config.name == "ldvc":
        from zs3_core.models.ldvc import LDVC
        return LDVC(config, build_clip(config))
    if config.name == "deop":
        from zs3_core.models.deop import DeOP
        return DeOP(config, build_clip(config))
    raise ConfigError(f"model.name {config.name!r} is unknown; choose one of {MODEL_NAMES}")
