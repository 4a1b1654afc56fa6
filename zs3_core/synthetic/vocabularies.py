"""Vocabularies of any size up to 1,024 names, for benchmarks and tests of large vocabularies.

The synthetic world's own class names come first (the classes the shipped models can
actually find), then the COCO-Stuff and PASCAL VOC class names, then colour + object
compositions, so a trained model meets realistic prompts that mostly do not occur in the
image, as with a COCO-Stuff-sized vocabulary on a robot's camera.
"""
from __future__ import annotations

import itertools

from zs3_core.datasets.splits import COCOSTUFF_CLASSES, VOC_CLASSES

_COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan", "orange", "pink", "brown", "black",
            "white", "grey", "golden", "silver", "dark", "light", "striped", "dotted", "shiny", "matte",
            "wooden", "metal", "plastic", "glass", "paper", "stone", "rusty", "painted", "faded", "bright")
_OBJECTS = ("box", "crate", "barrel", "cone", "ball", "bag", "pallet", "cart", "door", "sign",
            "pipe", "cable", "ladder", "shelf", "bucket", "tool", "wheel", "panel", "lamp", "pole",
            "tile", "brick", "plank", "sheet", "tube", "valve", "lever", "switch", "helmet", "glove")


def sized_vocabulary(size: int, world_names: list[str] | tuple[str, ...]) -> list[str]:
    """`size` distinct class names: `world_names` first, then the extra names above."""
    extra = itertools.chain(COCOSTUFF_CLASSES, VOC_CLASSES,
                            (f"{c} {o}" for c, o in itertools.product(_COLOURS, _OBJECTS)))
    names = list(dict.fromkeys(itertools.chain(world_names, extra)))
    if size > len(names):
        raise ValueError(f"{size} names asked; at most {len(names)} are available")
    return names[:size]
