"""Builds the model a ModelConfig names. A plain function, no registry: the list of models
is short and reading this file tells you all of them."""
from __future__ import annotations

import logging

from zs3_core.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)

MODEL_NAMES = ("clip_baseline",)


def build_clip(config: ModelConfig):
    """CLIP with the config's architecture; pretrained weights when `clip_weights` is set."""
    from zs3_core.clip import CLIP, ClipConfig, load_clip

    if config.clip_weights:
        clip_config = None if config.clip in (None, "auto") else ClipConfig.resolve(config.clip)
        return load_clip(config.clip_weights, clip_config)
    log.warning("model.clip_weights is not set: CLIP has RANDOM weights; masks are meaningless "
                "until pretrained or trained weights are given")
    return CLIP(ClipConfig.resolve(config.clip))


def build_model(config: ModelConfig):
    """The ZeroShotSegmentationModel for `config.name`."""
    if config.name == "clip_baseline":
        from zs3_core.models.baseline import TrainingFreeBaseline
        return TrainingFreeBaseline(config, build_clip(config))
    raise ConfigError(f"model.name {config.name!r} is unknown; choose one of {MODEL_NAMES}")
