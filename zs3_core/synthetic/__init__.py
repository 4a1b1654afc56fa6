"""Procedurally generated world of coloured shapes: scenes, masks, GZS3 split, captions, camera stream."""
from zs3_core.synthetic.split import CompositionSplit, SplitError, make_split
from zs3_core.synthetic.world import (
    BACKGROUND_NAME,
    DEFAULT_COLOURS,
    IGNORE_INDEX,
    Scene,
    SceneObject,
    SyntheticWorld,
    WorldConfig,
    WorldConfigError,
)

__all__ = ["BACKGROUND_NAME", "CompositionSplit", "DEFAULT_COLOURS", "IGNORE_INDEX", "Scene", "SceneObject",
           "SplitError", "SyntheticWorld", "WorldConfig", "WorldConfigError", "make_split"]
