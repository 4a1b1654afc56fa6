"""Does a backend still segment like eager fp32 PyTorch? (`zs3 export --verify`)

Compared through the Segmenter, as users run it: the same model, images and vocabulary go
through a reference Segmenter (torch fp32) and the candidate (onnxruntime, tensorrt, torch
bf16 …). Two numbers per class count: the largest absolute difference of the backend's
probabilities, and the share of pixels whose final label is identical.

A caveat on what agreement means: with random weights many pixels have near-tied classes,
so a few low-order bits flip labels that a trained model would separate by a wide margin;
judge agreement on trained weights (or the structured vocabularies the tests build).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

DEFAULT_CLASS_COUNTS = (1, 20, 171)
MAX_ABS_DIFF = 1e-3            # fp32 graphs (onnxruntime, torch.export) vs eager fp32
MIN_LABEL_AGREEMENT = 0.995    # fp32 graphs
MIN_LABEL_AGREEMENT_REDUCED = 0.99   # fp16 / bf16


@dataclass(frozen=True)
class ParityReport:
    backend: str
    num_classes: int
    max_abs_diff: float        # over the backend's (1, C, h, w) probabilities
    label_agreement: float     # share of pixels with the same Segmenter label

    def passed(self, max_abs_diff: float | None, min_agreement: float) -> bool:
        close = max_abs_diff is None or self.max_abs_diff <= max_abs_diff
        return close and self.label_agreement >= min_agreement

    def row(self) -> str:
        return (f"{self.backend:<24} C={self.num_classes:<4} max|Δp|={self.max_abs_diff:.2e} "
                f"labels identical={100 * self.label_agreement:.2f}%")


def synthetic_images(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Scenes of the synthetic world (shapes on textures): structured content, not noise."""
    from zs3_core.synthetic import SyntheticWorld, WorldConfig

    world = SyntheticWorld(WorldConfig(seed=seed, image_size=(size, size)))
    return [world.scene(i).image for i in range(count)]


def class_names(count: int) -> list[str]:
    return [f"class {i}" for i in range(count)]


def compare(reference, candidate, images: Sequence[np.ndarray], vocabulary) -> ParityReport:
    """`reference` and `candidate` are Segmenters over the same model; `vocabulary` an
    EncodedVocabulary of the reference, given to both so the embeddings are identical."""
    from zs3_core.preprocess import to_model_input

    diff, same, total = 0.0, 0, 0
    config = reference.config
    for rgb in images:
        x = to_model_input(rgb, config.input_size, config.pixel_mean, config.pixel_std)
        with torch.inference_mode():
            p_ref = reference.backend(x, vocabulary.embeddings).cpu()
            p_new = candidate.backend(x, vocabulary.embeddings).cpu()
        diff = max(diff, (p_ref - p_new).abs().max().item())
        a = reference.segment(rgb, vocabulary=vocabulary).labels
        b = candidate.segment(rgb, vocabulary=vocabulary).labels
        same += int((a == b).sum())
        total += a.size
    return ParityReport(candidate.backend_name, len(vocabulary.names), diff, same / total)


def verify(reference, candidate, images: Sequence[np.ndarray],
           class_counts: Iterable[int] = DEFAULT_CLASS_COUNTS) -> list[ParityReport]:
    """One ParityReport per class count (vocabularies "class 0" … "class C-1")."""
    return [compare(reference, candidate, images, reference.encode_vocabulary(class_names(c)))
            for c in class_counts]


def object_vocabulary(segmenter, scene):
    """An EncodedVocabulary with one class per object (and the background) of a synthetic
    `scene`: the mean of the model's severed patch features over that object.

    This gives the label structure a trained model has (coherent regions with clear margins)
    on random weights, where text embeddings of random names leave most pixels near-tied.
    Needs the training-free baseline's feature path (`model.clip.visual`, `model.severance`).
    """
    import cv2
    import torch.nn.functional as F

    from zs3_core.preprocess import to_model_input
    from zs3_core.segmenter import EncodedVocabulary

    config, model = segmenter.config, segmenter.model
    x = to_model_input(scene.image, config.input_size, config.pixel_mean, config.pixel_std)
    device = next(model.parameters()).device
    with torch.inference_mode():
        features = model.clip.visual(x.to(device), severance=model.severance).patch_features
        features = F.normalize(features.float(), dim=1)[0].cpu()                  # (D, h, w)
    grid = (features.shape[2], features.shape[1])   # (w, h), as OpenCV wants it
    labels = cv2.resize(scene.labels, grid, interpolation=cv2.INTER_NEAREST)
    ids = sorted(set(labels.ravel().tolist()))
    prototypes = torch.stack([features[:, torch.from_numpy(labels == i)].mean(1) for i in ids])
    named = segmenter.encode_vocabulary(class_names(len(ids)))
    return EncodedVocabulary(named.vocabulary, F.normalize(prototypes, dim=-1), named.vocabulary_version)
