"""The one inference API used by the node, the CLI, bag evaluation and training's demos.

preprocess → backend (image path, class embeddings as input) → postprocess. Vocabularies
are encoded into immutable snapshots: encoding never touches the snapshot in use, so a
caller (the ROS node) can encode on one thread while frames are segmented on another and
swap the reference between frames.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from zs3_core.backends import BackendError, ImageBackend, create_backend
from zs3_core.class_embeddings import class_embeddings, sentence_encoder, templates_for_model
from zs3_core.config import DEFAULT_MODEL_CONFIG, ModelConfig, dataclass_to_dict, load_model_config
from zs3_core.models import build_model
from zs3_core.open_set import background_ids, leave_out_background, resolve_threshold, unlabel
from zs3_core.postprocess import UNLABELED_MONO8, UNLABELED_MONO16, postprocess, unlabeled_value_for  # noqa: F401
from zs3_core.preprocess import to_model_input
from zs3_core.text_cache import TextEmbeddingCache
from zs3_core.vocabulary import MAX_CLASSES, Vocabulary, VocabularyError

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EncodedVocabulary:
    """A vocabulary with its (C, D) text embeddings; immutable, swapped as one reference."""
    vocabulary: Vocabulary
    embeddings: torch.Tensor
    vocabulary_version: int       # increases with every vocabulary encoded; results and messages carry it
    encode_ms: float = 0.0
    notes: tuple[str, ...] = ()   # what was used instead of what was asked (e.g. a model without ensembles)

    @property
    def names(self) -> tuple[str, ...]:
        return self.vocabulary.names

    @property
    def template(self) -> str:
        """The first template in force (the only one unless an ensemble is)."""
        return self.vocabulary.template

    @property
    def templates(self) -> tuple[str, ...]:
        return self.vocabulary.templates

    @property
    def synonyms(self) -> tuple[tuple[str, ...], ...]:
        return self.vocabulary.synonyms

    @property
    def unlabeled_value(self) -> int:
        return unlabeled_value_for(len(self.names))


@dataclass
class SegmentationResult:
    labels: np.ndarray            # (H, W) uint8 or uint16: class index, or unlabeled_value
    confidence: np.ndarray        # (H, W) float32 in [0, 1]: probability of the chosen class
    class_confidence: np.ndarray  # (C,) float32: mean confidence over the pixels of each class (0 if absent)
    class_fraction: np.ndarray    # (C,) float32: share of the image labelled with each class
    vocabulary_version: int
    unlabeled_value: int
    timings: dict = field(default_factory=dict)   # milliseconds: preprocess, model, postprocess, total;
                                                  # batch_size: frames that shared the model call


class Segmenter:
    """Zero-shot segmentation of RGB frames into the classes of the current vocabulary."""

    def __init__(self, model, config: ModelConfig, backend: Union[str, ImageBackend] = "auto", device: str = "cpu",
                 precision: str = "fp32", model_id: Optional[str] = None,
                 max_classes: int = MAX_CLASSES, max_batch: int = 1):
        self.model = model.eval()
        self.config = config
        self.device = device
        # A ready ImageBackend is taken as is (export verification, benchmarks share one model).
        self.backend = backend if isinstance(backend, ImageBackend) else create_backend(
            backend, self.model, device=device, precision=precision, max_batch=max_batch)
        self.model_id = model_id or _describe_model(config)
        self.max_classes = max_classes
        # The open-set rule: a fixed model.unlabeled_threshold, else the checkpoint's calibrated one.
        self.unlabeled_threshold, self.threshold_source = resolve_threshold(config.unlabeled_threshold,
                                                                            config.checkpoint)
        self.background_classes = tuple(config.background_classes)
        self.text_cache = TextEmbeddingCache()
        self._versions = itertools.count(1)
        self._encode_lock = threading.Lock()
        self._current: Optional[EncodedVocabulary] = None

    @classmethod
    def from_config(cls, config: Union[str, Path, dict, ModelConfig] = DEFAULT_MODEL_CONFIG,
                    checkpoint: Optional[str] = None,
                    backend: str = "auto", device: str = "cpu", precision: str = "fp32",
                    max_batch: int = 1) -> "Segmenter":
        """Build the configured model with its trained tensors (`checkpoint` if given, else the
        config's own `model.checkpoint`), pick a backend that serves `max_batch` frames per call
        (an engine's batch range is fixed when it is built; eager torch and ONNX take any)."""
        model_config = load_model_config(config)
        if checkpoint:  # replaces the config's own: loaded once, and part of the model's identity
            model_config = dataclasses.replace(model_config, checkpoint=checkpoint)
        model = build_model(model_config).to(device)
        return cls(model, model_config, backend=backend, device=device, precision=precision,
                   model_id=_describe_model(model_config), max_batch=max_batch)

    def set_unlabeled_threshold(self, threshold: Optional[float]) -> float:
        """A fixed open-set threshold, or None for the one calibrated with the checkpoint."""
        self.unlabeled_threshold, self.threshold_source = resolve_threshold(threshold, self.config.checkpoint)
        return self.unlabeled_threshold

    @property
    def backend_name(self) -> str:
        return self.backend.describe()

    @property
    def vocabulary(self) -> Optional[EncodedVocabulary]:
        return self._current

    def encode_vocabulary(self, names: Sequence[str], template: Optional[str] = None,
                          templates: Optional[Sequence[str]] = None) -> EncodedVocabulary:
        """Validate and encode `names` ("name" or "name|synonym|…"); the vocabulary in force is
        not touched. One `template`, or an ensemble `templates` (templates or built-in set
        names such as "imagenet"); neither: the model config's template. A model that takes no
        ensemble keeps its own template, and the result's `notes` say so.

        Raises VocabularyError with the reason for any unusable list or template.
        """
        if template and templates:
            raise VocabularyError("give one prompt template or a list of prompt templates, not both")
        vocab = Vocabulary.create(names, None if templates else (template or self.config.prompt_template),
                                  max_classes=self.max_classes, templates=templates)
        used, note = templates_for_model(self.model, vocab.templates, self.config.prompt_template)
        if used != vocab.templates:
            vocab = dataclasses.replace(vocab, templates=used)
        served = self.backend.max_classes
        if served is not None and len(vocab.names) > served:   # refused here, not on every frame
            raise VocabularyError(f"{len(vocab.names)} classes; the {self.backend.describe()} backend "
                                  f"serves at most {served} (its graph was built for 1..{served})")
        start = time.perf_counter()
        with self._encode_lock:      # one text-encoder run at a time; image path unaffected
            embeddings = class_embeddings(vocab, lambda sentences: self.text_cache.get_or_encode(
                self.model_id, sentences, self._encode_sentences))
            version = next(self._versions)
        return EncodedVocabulary(vocab, embeddings, version, (time.perf_counter() - start) * 1000,
                                 (note,) if note else ())

    def _encode_sentences(self, sentences: list[str]) -> torch.Tensor:
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is not None and hasattr(tokenizer, "encode"):
            limit = getattr(tokenizer, "context_length", 77)
            for sentence in sentences:
                n = len(tokenizer.encode(sentence)) + 2     # + start and end tokens
                if n > limit:
                    raise VocabularyError(f"{sentence[:60]!r} is {n} tokens; CLIP reads at most {limit} "
                                          f"(shorten the class name, synonym or template)")
        return sentence_encoder(self.model)(sentences)

    def set_vocabulary(self, names: Sequence[str], template: Optional[str] = None,
                       templates: Optional[Sequence[str]] = None) -> EncodedVocabulary:
        """Encode `names` and make them the vocabulary `segment` uses by default."""
        encoded = self.encode_vocabulary(names, template, templates)
        self._current = encoded
        return encoded

    def segment(self, rgb: np.ndarray, vocabulary: Optional[EncodedVocabulary] = None) -> SegmentationResult:
        """Label every pixel of an (H, W, 3) uint8 RGB frame with a class of `vocabulary`."""
        return self.segment_batch([rgb], vocabulary)[0]

    def segment_batch(self, frames: Sequence[np.ndarray],
                      vocabulary: Optional[EncodedVocabulary] = None) -> list[SegmentationResult]:
        """Segment several (H, W, 3) uint8 RGB frames of any sizes with ONE model forward.

        Each frame is resized to the model input on its own, so the inputs stack into one
        (B, 3, S, S) batch; the batch runs once through the backend (one set of weight reads
        and kernel launches for all frames: what makes several cameras cheaper together than
        one by one), and each frame's probabilities are post-processed at that frame's own
        resolution. ``segment(frame)`` is this with one frame, so both give the same labels.
        Every result carries the batch's model time (``timings["model"]``) and its size
        (``timings["batch_size"]``).
        """
        vocab = vocabulary or self._current
        if vocab is None:
            raise VocabularyError("no vocabulary set: call set_vocabulary([...]) first")
        if not frames:
            return []
        self.check_batch_size(len(frames))
        t0 = time.perf_counter()
        x = torch.cat([to_model_input(rgb, self.config.input_size, self.config.pixel_mean, self.config.pixel_std)
                       for rgb in frames])
        t1 = time.perf_counter()
        probs = self.backend(x, vocab.embeddings)     # stays on its device: postprocess returns host arrays
        t2 = time.perf_counter()
        results = []
        shared = {"preprocess": (t1 - t0) * 1e3 / len(frames), "model": (t2 - t1) * 1e3,
                  "batch_size": float(len(frames))}
        for i, rgb in enumerate(frames):
            start = time.perf_counter()
            result = self._postprocess_frame(probs[i:i + 1], rgb.shape[0], rgb.shape[1], vocab)
            post_ms = (time.perf_counter() - start) * 1e3
            result.timings = {**shared, "postprocess": post_ms,
                              "total": shared["preprocess"] + shared["model"] + post_ms}
            results.append(result)
        return results

    def check_batch_size(self, count: int) -> None:
        """BackendError unless the backend serves `count` frames in one call (an exported graph
        or engine may be built for a fixed or bounded batch)."""
        served = self.backend.max_batch
        if served is not None and count > served:
            raise BackendError(f"{count} frames in one batch; the {self.backend.describe()} backend "
                               f"serves at most {served} (its graph was built for 1..{served})")

    def _postprocess_frame(self, probs: torch.Tensor, height: int, width: int,
                           vocab: EncodedVocabulary) -> SegmentationResult:
        """One frame's (1, C, h, w) probabilities → its SegmentationResult at H×W: the open-set
        threshold, then the background classes published as unlabeled. The single per-frame
        step after the model, for one frame or a batch alike."""
        labels, confidence, class_conf, class_frac, unlabeled = postprocess(
            probs, height, width, self.unlabeled_threshold)
        background = background_ids(vocab.names, self.background_classes)
        if background:   # "none of these" classes: published as unlabeled, out of the per-class summaries
            labels = unlabel(labels, confidence, background, 0.0, unlabeled)   # threshold applied above
            class_conf, class_frac = leave_out_background(class_conf, class_frac, background)
        return SegmentationResult(labels, confidence, class_conf, class_frac, vocab.vocabulary_version, unlabeled)


def _describe_model(config: ModelConfig) -> str:
    """Identity of the text side for the embedding cache: config + weight files (path, size, mtime)."""
    parts = [repr(sorted(dataclass_to_dict(config).items(), key=lambda kv: kv[0]))]
    for path in (config.clip_weights, config.checkpoint):
        if path and Path(path).exists():
            st = Path(path).stat()
            parts.append(f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
