"""The backend contract."""
from __future__ import annotations

from typing import Optional

import torch

# The names a user may choose, in one place: the CLI's choices, the node's parameter
# descriptors and checks, and the factory all read these.
BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "bf16", "fp16")


class BackendError(RuntimeError):
    """A backend cannot run here (missing package, device or precision), with the reason."""


class ImageBackend:
    """Runs (B, 3, S, S) images + (C, D) class embeddings → (B, C, h, w) float32 probabilities:
    one vocabulary for a batch of frames (several cameras, one model call)."""

    name: str = "?"
    max_classes: Optional[int] = None   # the most classes one call serves (an exported graph's
                                        # profile); None: any number
    max_batch: Optional[int] = None     # the most frames one call serves (an exported graph or
                                        # engine built for a bounded batch); None: any number
    fallback: str = ""                  # set by `auto` when a faster backend failed: which and why

    def __call__(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_class_count(self, count: int, built: str) -> None:
        """BackendError unless 1 ≤ count ≤ max_classes; ``built`` names what fixed the range
        ("graph", "engine"). The Segmenter refuses such vocabularies earlier; this guards direct calls."""
        if self.max_classes is not None and not 1 <= count <= self.max_classes:
            raise BackendError(f"{count} classes; this {built} serves 1..{self.max_classes}")

    def describe(self) -> str:
        """Short label for logs and diagnostics, e.g. "torch/bf16/cpu"."""
        return self.name
