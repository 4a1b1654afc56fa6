"""What the node's SegmentationInfo and LabelInfo messages say, as plain functions.

The live node and the annotated bag of `zs3 bag-eval --write-bag` fill their messages from
these, so the two can never drift apart. Sequences are typed numpy arrays: rosbags
serialises only those, and rclpy's generated setters accept them as well.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from zs3_core import visualize


def segmentation_info_fields(result: Any, vocabulary: Any, latency_ms: float, inference_ms: float,
                             backend: str) -> dict:
    """zs3_ros/SegmentationInfo fields (all but header) for one SegmentationResult."""
    fraction = np.asarray(result.class_fraction, np.float32)
    return dict(
        vocabulary_version=int(vocabulary.vocabulary_version),
        class_ids=np.arange(len(vocabulary.names), dtype=np.uint16),
        class_names=list(vocabulary.names),
        class_confidence=np.asarray(result.class_confidence, np.float32),
        pixel_fraction=fraction,
        unlabeled_fraction=float(max(0.0, 1.0 - float(np.sum(fraction, dtype=np.float64)))),
        latency_ms=float(latency_ms),
        inference_ms=float(inference_ms),
        backend=str(backend),
    )


def label_info_fields(vocabulary: Any, threshold: float) -> dict:
    """zs3_ros/LabelInfo fields (all but header and colors) plus `rgba`: (C, 4) float colours."""
    n = len(vocabulary.names)
    rgba = np.ones((n, 4), np.float32)
    rgba[:, :3] = visualize.class_colors(n).astype(np.float32) / 255.0
    return dict(vocabulary_version=int(vocabulary.vocabulary_version),
                class_ids=np.arange(n, dtype=np.uint16), class_names=list(vocabulary.names),
                threshold=float(threshold), unlabeled_value=int(vocabulary.unlabeled_value),
                prompt_template=vocabulary.template or "", rgba=rgba, **prompt_fields(vocabulary))


def prompt_fields(vocabulary: Any) -> dict:
    """The synonyms and templates in force, as LabelInfo and the vocabulary services report
    them: `class_synonyms[i]` is class i written "name|synonym|…", `prompt_templates` every
    template. A vocabulary without synonyms or an ensemble reports its names and its template."""
    synonyms = getattr(vocabulary, "synonyms", None) or tuple((name,) for name in vocabulary.names)
    templates = getattr(vocabulary, "templates", None) or ((vocabulary.template,) if vocabulary.template else ())
    return dict(class_synonyms=["|".join(s) for s in synonyms], prompt_templates=list(templates))
