"""Torch-TensorRT (dynamo path) engines for the image path: fp16 with norms kept in fp32.

Build: the model is copied to fp16 except its normalisation layers, which keep fp32 weights
and compute in fp32 (fp16 LayerNorm overflows in CLIP ViTs: NVIDIA/TensorRT #2564, #2709,
#3101); `torch.export` captures `predict` with C dynamic; Torch-TensorRT compiles that graph
**strongly typed** (`use_explicit_typing`), so TensorRT keeps exactly the dtypes of the graph
instead of picking fp16 norms for speed. Torch-TensorRT releases without explicit typing
(older JetPack wheels) fall back to enabled_precisions {fp16, fp32}, logged as less accurate.

Engines are cached on disk by `cache.EngineCache` (key: model hash, TensorRT and
Torch-TensorRT versions, GPU, precision, input size, class range); the first start on a
device builds and logs how long; `zs3 export --format tensorrt` prebuilds offline.

torch_tensorrt is imported lazily: this module imports, and its CPU-side parts (precision
preparation, keying) run and are tested, on machines without CUDA.
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import logging
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from zs3_core.clip.attention import LayerNorm as ClipLayerNorm
from zs3_core.export.cache import CacheResult, EngineCache, EngineKey, model_hash
from zs3_core.export.exported_program import export_image_path
from zs3_core.export.image_path import DEFAULT_MAX_CLASSES, ExportError, check_max_classes, embedding_dim

log = logging.getLogger(__name__)

TENSORRT_PRECISIONS = {"fp16": torch.float16, "fp32": torch.float32}
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def tensorrt_unavailable_reason(device: str | torch.device = "cuda") -> Optional[str]:
    """None when Torch-TensorRT can build here, else why not (for logs and test skips)."""
    if torch.device(device).type != "cuda":
        return f"TensorRT needs a CUDA device, not {device!r}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU (CPU-only torch build or no driver)"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return "torch_tensorrt is not installed (pip install torch-tensorrt, or NVIDIA's Jetson wheel)"
    try:
        importlib.import_module("torch_tensorrt")
    except Exception as err:   # broken CUDA/TensorRT libraries surface as assorted errors
        return f"torch_tensorrt fails to import: {err}"
    return None


class Fp32Norm(nn.Module):
    """Runs a normalisation layer in fp32 on a lower-precision tensor and casts back."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


def with_fp32_norms(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` in `dtype` whose normalisation layers keep fp32 weights and math.

    CLIP's own LayerNorm already computes in fp32 and casts back, so it only gets its fp32
    weights back; any other norm is wrapped in `Fp32Norm`.
    """
    prepared = copy.deepcopy(model).to(dtype)
    if dtype == torch.float32:
        return prepared
    replace = []
    for parent in prepared.modules():
        for name, child in parent.named_children():
            if isinstance(child, ClipLayerNorm):
                child.float()
            elif isinstance(child, NORM_TYPES):
                replace.append((parent, name, child))
    for parent, name, child in replace:
        setattr(parent, name, Fp32Norm(child))
    return prepared


def environment_fields(device: str | torch.device) -> dict:
    """Versions and GPU identity that an engine is tied to."""
    import tensorrt
    import torch_tensorrt

    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return {"tensorrt_version": tensorrt.__version__, "torch_tensorrt_version": torch_tensorrt.__version__,
            "torch_version": torch.__version__, "gpu_name": torch.cuda.get_device_name(index),
            "compute_capability": f"{major}.{minor}"}


def engine_key(model: nn.Module, precision: str, max_classes: int, environment: dict) -> EngineKey:
    return EngineKey(model_hash=model_hash(model), input_size=int(model.config.input_size), min_classes=1,
                     max_classes=check_max_classes(max_classes), precision=precision, **environment)


def _supported(function, name: str) -> bool:
    return name in inspect.signature(function).parameters


def build_engine(model: nn.Module, path: Path, precision: str = "fp16",
                 max_classes: int = DEFAULT_MAX_CLASSES, device: str | torch.device = "cuda") -> None:
    """Compile `model.predict` with Torch-TensorRT and save the compiled program to `path`."""
    import torch_tensorrt

    dtype = TENSORRT_PRECISIONS[precision]
    prepared = with_fp32_norms(model, dtype).to(device).eval()
    program = export_image_path(prepared, max_classes, device=device,
                                compute_dtype=None if dtype == torch.float32 else dtype)
    size, dim = int(model.config.input_size), embedding_dim(model)
    inputs = [torch_tensorrt.Input(shape=(1, 3, size, size), dtype=torch.float32),
              torch_tensorrt.Input(min_shape=(1, dim), opt_shape=(min(32, max_classes), dim),
                                   max_shape=(max_classes, dim), dtype=torch.float32)]
    compile_fn = torch_tensorrt.dynamo.compile
    kwargs = {"device": torch.device(device), "min_block_size": 1}
    kwargs["arg_inputs" if _supported(compile_fn, "arg_inputs") else "inputs"] = inputs
    if _supported(compile_fn, "use_explicit_typing"):
        kwargs["use_explicit_typing"] = True
    else:
        log.warning("this Torch-TensorRT has no strongly typed builds; using enabled_precisions "
                    "{fp16, fp32}: TensorRT may run some norms in fp16 (check with zs3 export --verify)")
        kwargs["enabled_precisions"] = {dtype, torch.float32}
    try:
        compiled = compile_fn(program, **kwargs)
    except Exception as err:   # TensorRT converter errors have no common base class
        raise ExportError(f"Torch-TensorRT compilation failed: {err}") from err
    examples = [torch.zeros(1, 3, size, size, device=device), torch.zeros(min(32, max_classes), dim, device=device)]
    save_kwargs = {"output_format": "exported_program"}
    save_kwargs["arg_inputs" if _supported(torch_tensorrt.save, "arg_inputs") else "inputs"] = examples
    if _supported(torch_tensorrt.save, "dynamic_shapes"):
        from zs3_core.export.exported_program import class_dynamic_shapes
        save_kwargs["dynamic_shapes"] = class_dynamic_shapes(max_classes)
    torch_tensorrt.save(compiled, str(path), **save_kwargs)


def load_engine(path: Path) -> nn.Module:
    """The compiled program saved by `build_engine`, as a callable module."""
    import torch_tensorrt

    loaded = torch_tensorrt.load(str(path))
    return loaded.module() if hasattr(loaded, "module") else loaded


def compile_tensorrt(model: nn.Module, precision: str = "fp16", max_classes: int = DEFAULT_MAX_CLASSES,
                     device: str | torch.device = "cuda",
                     cache_dir: str | Path | None = None) -> tuple[nn.Module, CacheResult]:
    """The TensorRT engine for `model`, from the cache when valid, else built (and cached)."""
    if precision not in TENSORRT_PRECISIONS:
        raise ExportError(f"TensorRT precision {precision!r} is not supported; choose one of "
                          f"{tuple(TENSORRT_PRECISIONS)}")
    reason = tensorrt_unavailable_reason(device)
    if reason:
        raise ExportError(f"cannot build a TensorRT engine: {reason}")
    key = engine_key(model, precision, max_classes, environment_fields(device))
    result = EngineCache(cache_dir).get_or_build(
        key, lambda path: build_engine(model, path, precision, max_classes, device))
    return load_engine(result.path), result
