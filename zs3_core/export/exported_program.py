"""`torch.export` of the image path with a dynamic class count (and batch, when asked).

The ExportedProgram is the artefact Torch-TensorRT's dynamo path compiles, and a portable
`.pt2` file in its own right (`torch.export.load(path).module()` runs it without zs3_core's
model code). torch.export captures one whole graph or fails: a model that would graph-break
under `torch.compile` cannot export silently in pieces.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.export import Dim

from zs3_core.backends.base import ImageBackend
from zs3_core.export.image_path import (DEFAULT_MAX_CLASSES, TRACE_CLASSES, ExportError, ImagePath,
                                        check_max_batch, check_max_classes, example_inputs)

log = logging.getLogger(__name__)


def class_dynamic_shapes(max_classes: int, max_batch: int = 1) -> dict:
    """`dynamic_shapes` for ImagePath.forward: dim 0 of the class embeddings varies, and dim 0
    of the image (the batch: frames of several cameras) when `max_batch` > 1. A batch of 1
    stays static: torch.export specialises size 1, so a range 1..1 is no dimension."""
    batch = {0: Dim("B", min=1, max=check_max_batch(max_batch))} if max_batch > 1 else None
    return {"image": batch, "class_embeddings": {0: Dim("C", min=1, max=check_max_classes(max_classes))}}


def export_image_path(model: torch.nn.Module, max_classes: int = DEFAULT_MAX_CLASSES,
                      with_logits: bool = False, device: str | torch.device = "cpu",
                      compute_dtype: torch.dtype | None = None,
                      trace_classes: int = TRACE_CLASSES, max_batch: int = 1) -> torch.export.ExportedProgram:
    """ExportedProgram of `model.predict` for C in 1..max_classes and B in 1..max_batch images
    at the model's input size.

    `trace_classes` (≥ 2) is the example C and `max_batch` the example B; they stay recorded
    as the symbols' hints, which Torch-TensorRT uses as the `opt` sizes of its optimisation
    profile (a multi-camera node runs full batches).

    Raises ExportError (with torch's reason) when the graph cannot be captured whole, e.g. a
    data-dependent branch on C or a size specialised to the traced class count.
    """
    module = ImagePath(model.eval(), with_logits=with_logits, compute_dtype=compute_dtype).eval()
    args = example_inputs(model, trace_classes, device=device, batch=max_batch)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            program = torch.export.export(module, args, dynamic_shapes=class_dynamic_shapes(max_classes, max_batch))
    except Exception as err:   # torch raises several internal error types; keep its message
        raise ExportError(f"torch.export of {type(model).__name__}.predict with dynamic C failed: {err}") from err
    log.info("torch.export of %s (C in 1..%d, B in 1..%d, %dx%d) took %.1f s", type(model).__name__, max_classes, max_batch,
             model.config.input_size, model.config.input_size, time.perf_counter() - start)
    return program


def save_exported_program(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """Write a `.pt2` archive (torch.export.save); load it with `torch.export.load`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def load_exported_program(path: str | Path) -> torch.export.ExportedProgram:
    return torch.export.load(str(path))


class ExportedProgramBackend(ImageBackend):
    """Runs a saved `.pt2` image path behind the backend contract (used by `zs3 export
    --verify`; a torch-only machine can serve it without the model's Python code)."""

    def __init__(self, path: str | Path):
        self.module = load_exported_program(path).module()
        self.name = "exported-program/fp32/cpu"

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        return self.module(image, class_embeddings).float()
