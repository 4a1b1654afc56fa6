"""Torch-TensorRT: the image path as a cached fp16 TensorRT engine (Jetson Orin, CUDA GPUs).

The engine is built on the device it runs on (first start: minutes on a Jetson, logged with
its duration) or prebuilt with `zs3 export --format tensorrt`, and cached on disk keyed by
model, versions, GPU, precision, input size, class range and batch range
(`zs3_core.export.cache`). The batch range is fixed when the engine is built: `max_batch`
(a multi-camera node passes its camera count) is the most frames one call serves.
Any failure to build, save, load or cache the engine is a BackendError naming the stage,
which `auto` answers by falling back to the next backend.
"""
from __future__ import annotations

from pathlib import Path

import torch

from zs3_core.backends.base import BackendError, ImageBackend


class TensorRTBackend(ImageBackend):
    def __init__(self, model: torch.nn.Module, device: str = "cuda", precision: str = "fp16",
                 max_classes: int = 256, cache_dir: str | Path | None = None, max_batch: int = 1):
        from zs3_core.export.image_path import ExportError
        from zs3_core.export.tensorrt import TENSORRT_PRECISIONS, compile_tensorrt, tensorrt_unavailable_reason

        if precision not in TENSORRT_PRECISIONS:
            raise BackendError(f"the tensorrt backend builds {tuple(TENSORRT_PRECISIONS)} engines, not {precision}")
        reason = tensorrt_unavailable_reason(device)
        if reason:
            raise BackendError(f"backend 'tensorrt' cannot run here: {reason}")
        self.device = torch.device(device)
        self.max_classes = max_classes
        self.max_batch = max_batch
        try:
            self.engine, self.cache_result = compile_tensorrt(model, precision, max_classes, self.device,
                                                              cache_dir, max_batch)
        except ExportError as err:
            raise BackendError(str(err)) from err
        self.name = f"tensorrt/{precision}/{self.device.type}"

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        self.check_class_count(class_embeddings.shape[0], "engine")
        out = self.engine(image.to(self.device, torch.float32), class_embeddings.to(self.device, torch.float32))
        return out.float()
