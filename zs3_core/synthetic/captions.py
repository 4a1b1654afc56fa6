"""Scene captions: the text side of tiny-CLIP pre-training.

Like web alt-text, a caption names what is in the picture (every class present, seen or
unseen) in a few phrasings, so the text encoder learns colour and shape words separately
and can compose them for classes it never saw in segmentation training.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TEMPLATES = (
    "a photo of {}.",
    "a picture of {}.",
    "{} on a textured background.",
    "an image with {}.",
    "there is {} in the scene.",
)


def _article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(class_names: Sequence[str], rng: np.random.Generator) -> str:
    """One caption naming every class in `class_names` (each once, order shuffled)."""
    if not class_names:
        return "an empty textured background."
    names = [class_names[i] for i in rng.permutation(len(class_names))]
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    return template.format(_join([_article(n) for n in names]))
