"""The graph every export format compiles: `(image[B,3,S,S], class_embeddings[C,D])` →
probabilities `(B, C, h, w)`.

Kept in one place so ONNX, torch.export and Torch-TensorRT see exactly the same module and
the same example inputs. S is fixed per exported graph (the positional embedding is
interpolated once at that size: dynamic spatial shapes with `F.interpolate` break
Torch-TensorRT, pytorch/TensorRT #2332); the class count C and the batch B (frames of
several cameras sharing one vocabulary) are dynamic.
"""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_MAX_CLASSES = 256
# Example class count used while tracing. Not 1: torch.export specialises sizes 0 and 1,
# which would pin C to 1 instead of leaving it symbolic.
TRACE_CLASSES = 7
# Example batch used while tracing a graph with a dynamic batch: not 1 for the same reason.
TRACE_BATCH = 2


class ExportError(RuntimeError):
    """An export or compilation step failed, or its result does not match eager PyTorch."""


class ImagePath(nn.Module):
    """`model.predict` as a standalone module; `with_logits=True` also returns the logits
    (parity tests compare both, deployed graphs carry only the probabilities).

    `compute_dtype` (e.g. fp16 for a TensorRT build) casts the fp32 inputs inside the graph
    and the outputs back to fp32, so every backend keeps the fp32 calling contract.
    """

    def __init__(self, model: nn.Module, with_logits: bool = False, compute_dtype: torch.dtype | None = None):
        super().__init__()
        self.model = model
        self.with_logits = with_logits
        self.compute_dtype = compute_dtype

    def forward(self, image: torch.Tensor, class_embeddings: torch.Tensor):
        if self.compute_dtype is not None:
            image, class_embeddings = image.to(self.compute_dtype), class_embeddings.to(self.compute_dtype)
        if self.with_logits:
            logits = self.model(image, class_embeddings)
            outputs = (logits, self.model.probabilities(logits))
        else:
            outputs = (self.model.predict(image, class_embeddings),)
        if self.compute_dtype is not None:
            outputs = tuple(o.float() for o in outputs)
        return outputs if self.with_logits else outputs[0]


def embedding_dim(model: nn.Module) -> int:
    """D of the class embeddings the model's image path expects (CLIP's joint embedding)."""
    clip = getattr(model, "clip", None)
    if clip is not None:
        return int(clip.config.embed_dim)
    raise ExportError(f"{type(model).__name__} has no `clip`; cannot tell the class-embedding width")


def example_inputs(model: nn.Module, num_classes: int = TRACE_CLASSES,
                   device: str | torch.device = "cpu", seed: int = 0,
                   batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` normalised-range images at the model's input size and unit-norm class embeddings."""
    size = int(model.config.input_size)
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=g)
    classes = torch.nn.functional.normalize(torch.randn(num_classes, embedding_dim(model), generator=g), dim=-1)
    return image.to(device), classes.to(device)


def check_max_batch(max_batch: int) -> int:
    if int(max_batch) < 1:
        raise ExportError(f"max_batch must be at least 1, got {max_batch}")
    return int(max_batch)


def check_max_classes(max_classes: int) -> int:
    if not 2 <= int(max_classes) <= 65535:
        raise ExportError(f"max_classes must be in 2..65535 (mono16 labels), got {max_classes}")
    return int(max_classes)
