"""Chooses and builds a backend by name."""
from __future__ import annotations

import logging

from zs3_core.backends.base import BackendError, ImageBackend
from zs3_core.backends.torch_backend import TorchBackend

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "torch")


def available_backends() -> list[str]:
    """Backends that can run on this machine, fastest first."""
    return ["torch"]


def create_backend(name: str, model, device: str = "cpu", precision: str = "fp32") -> ImageBackend:
    """The backend `name` for `model`; "auto" takes the fastest one available and logs why."""
    if name not in BACKEND_NAMES:
        raise BackendError(f"backend {name!r} is unknown; choose one of {BACKEND_NAMES}")
    if name == "auto":
        choice = available_backends()[0]
        log.info("backend auto -> %s (the only backend available here)", choice)
        name = choice
    return TorchBackend(model, device=device, precision=precision)
