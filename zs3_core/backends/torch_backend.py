"""Eager PyTorch: fp32 anywhere, bf16 autocast on CPU (AMX/AVX-512 make it several times
faster on x86 robots without a GPU), fp16 or bf16 autocast on CUDA."""
from __future__ import annotations

import contextlib

import torch

from zs3_core.backends.base import PRECISIONS, BackendError, ImageBackend

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend(ImageBackend):
    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32", max_batch: int = 1):
        """`max_batch` is accepted for the common backend signature: eager PyTorch serves any batch."""
        if precision not in PRECISIONS:
            raise BackendError(f"precision {precision!r} is unknown; choose one of {PRECISIONS}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("device 'cuda' was asked for but torch sees no CUDA GPU")
        if self.device.type == "cpu" and precision == "fp16":
            raise BackendError("fp16 on CPU is slower and less accurate than fp32; use bf16 or fp32")
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.name = f"torch/{precision}/{self.device.type}"

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            probs = self.model.predict(image.to(self.device), class_embeddings.to(self.device))
        return probs.float()
