"""ONNX Runtime: the exported fp32 image path on the CPU or CUDA execution provider.

For robots that ship without PyTorch's CUDA stack, or where ONNX Runtime is already the
inference runtime. On CPU it ran 1.9x faster than eager fp32 (bench/backends.py), less than
torch bf16 where the CPU has native bf16, which `auto` prefers there. The graph is exported
once per model (see `zs3_core.export.onnx.cached_onnx`) and reused on later starts.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from zs3_core.backends.base import BackendError, ImageBackend
from zs3_core.vocabulary import MAX_CLASSES

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def default_onnx_cache() -> Path:
    """$ZS3_ONNX_CACHE, else ~/.cache/zs3_ros/onnx (read at use, so tests and containers can redirect it)."""
    return Path(os.environ.get("ZS3_ONNX_CACHE", Path.home() / ".cache" / "zs3_ros" / "onnx"))


def onnxruntime_unavailable_reason(device: str = "cpu") -> Optional[str]:
    """None when ONNX Runtime can run on `device` here, else why not."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return "onnxruntime/onnx are not installed (pip install .[export])"
    import onnxruntime

    kind = torch.device(device).type
    if kind not in PROVIDERS:
        return f"ONNX Runtime runs on cpu or cuda, not {device!r}"
    if PROVIDERS[kind] not in onnxruntime.get_available_providers():
        return f"this onnxruntime build has no {PROVIDERS[kind]} (install onnxruntime-gpu for CUDA)"
    return None


def fixed_batch(session) -> Optional[int]:
    """The batch size the graph's `image` input is fixed to, or None when its axis is symbolic."""
    batch = next(i for i in session.get_inputs() if i.name == "image").shape[0]
    return batch if isinstance(batch, int) else None


class OnnxRuntimeBackend(ImageBackend):
    """Runs `image_path.onnx` (inputs `image`, `class_embeddings`; output `probabilities`).

    The graphs `zs3 export` writes take any batch; a graph given as `onnx_path` whose batch
    axis is a fixed number serves only that many frames per call (`max_batch`), which the
    node checks against its cameras at start-up. `max_batch` itself is accepted for the
    common backend signature.
    """

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32",
                 max_classes: int = MAX_CLASSES, onnx_path: Optional[str | Path] = None,
                 cache_dir: str | Path | None = None, max_batch: int = 1):
        if precision != "fp32":
            raise BackendError(f"the onnxruntime backend runs the fp32 graph, not {precision}; "
                               "for bf16 on CPU use backend 'torch' with precision 'bf16'")
        reason = onnxruntime_unavailable_reason(device)
        if reason:
            raise BackendError(f"backend 'onnxruntime' cannot run here: {reason}")
        import onnxruntime

        from zs3_core.export.onnx import cached_onnx

        self.max_classes = max_classes
        path = Path(onnx_path) if onnx_path else cached_onnx(model, cache_dir or default_onnx_cache(),
                                                                    max_classes=max_classes)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()   # same cores as the torch backends
        # ONNX Runtime's idle workers spin for a while after each run; on a robot's few cores that
        # steals the CPU from the node's other threads (measured: torch fp32 3x slower beside it).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        kind = torch.device(device).type
        providers = [PROVIDERS[kind]] + (["CPUExecutionProvider"] if kind == "cuda" else [])
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.path = path
        self.max_batch = fixed_batch(self.session)
        self.name = f"onnxruntime/fp32/{kind}"

    def __call__(self, image: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        self.check_class_count(class_embeddings.shape[0], "graph")
        feeds = {"image": np.ascontiguousarray(image.detach().cpu().float().numpy()),
                 "class_embeddings": np.ascontiguousarray(class_embeddings.detach().cpu().float().numpy())}
        (probs,) = self.session.run(["probabilities"], feeds)
        return torch.from_numpy(probs)
