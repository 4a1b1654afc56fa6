"""Chooses and builds a backend by name."""
from __future__ import annotations

import logging

from zs3_core.backends import auto
from zs3_core.backends.base import BACKEND_NAMES, BackendError, ImageBackend
from zs3_core.backends.torch_backend import TorchBackend

log = logging.getLogger(__name__)


def available_backends(device: str = "cpu") -> list[str]:
    """Backends that can run on `device` here, fastest first (see backends/auto.py)."""
    from zs3_core.backends.onnxruntime_backend import onnxruntime_unavailable_reason
    from zs3_core.export.tensorrt import tensorrt_unavailable_reason

    names = ["tensorrt"] if tensorrt_unavailable_reason(device) is None else []
    names.append("torch")
    if onnxruntime_unavailable_reason(device) is None:
        names.append("onnxruntime")
    return names


def create_backend(name: str, model, device: str = "cpu", precision: str = "fp32",
                   **options) -> ImageBackend:
    """The backend `name` for `model`; "auto" takes the fastest one available and logs why.

    `options` go to the backend (max_classes, max_batch, cache_dir, onnx_path); BackendError
    says why a named backend cannot run here.
    """
    if name not in BACKEND_NAMES:
        raise BackendError(f"backend {name!r} is unknown; choose one of {BACKEND_NAMES}")
    if name == "auto":
        return _first_that_starts(model, device, options)
    if name == "onnxruntime":
        from zs3_core.backends.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(model, device=device, precision=precision, **options)
    if name == "tensorrt":
        from zs3_core.backends.tensorrt_backend import TensorRTBackend
        return TensorRTBackend(model, device=device, precision=precision, **options)
    return TorchBackend(model, device=device, precision=precision, max_batch=options.get("max_batch", 1))


def _first_that_starts(model, device: str, options: dict) -> ImageBackend:
    """`auto`: the fastest candidate that starts; each failure is logged and kept on the
    backend that runs (`fallback`), so the node can put it on /diagnostics."""
    failures = []
    for choice in auto.backend_candidates(device):
        try:
            backend = create_backend(choice.name, model, device, choice.precision, **options)
        except BackendError as err:
            failures.append(f"{choice.name}/{choice.precision} failed: {err}")
            log.warning("backend auto: %s; trying the next backend", failures[-1])
            continue
        backend.fallback = "; ".join(failures)
        log.info("backend auto -> %s (%s)", backend.describe(), choice.reason)
        return backend
    raise BackendError("backend auto: no backend could start: " + "; ".join(failures))
