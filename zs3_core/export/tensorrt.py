"""Torch-TensorRT (dynamo path) engines for the image path: fp16 with norms kept in fp32.

Build: the model is copied to fp16 except its normalisation layers, which keep fp32 weights
and compute in fp32 (fp16 LayerNorm overflows in CLIP ViTs: NVIDIA/TensorRT #2564, #2709,
#3101); `torch.export` captures `predict` with C dynamic, traced at the profile's `opt` class
count (Torch-TensorRT takes a symbol's `opt` from its traced value); Torch-TensorRT compiles
that graph **strongly typed**, so TensorRT keeps exactly the dtypes of the graph instead of
picking fp16 norms for speed (`build_options`: how each release asks for that).

Save/load with C dynamic (docs/deployment.md, "Torch-TensorRT versions"): the compiled
module is re-exported with `torch.export.export(trt_gm, args, dynamic_shapes=…, strict=False)`
and saved with `torch.export.save`; `torch_tensorrt.load(path).module()` reads it back. This
is the path upstream tests from 2.6 on (tests/py/dynamo/models/test_reexport.py,
`test_resnet18_dynamic_manual_retrace`); `torch_tensorrt.save` keeps C dynamic only from 2.10
and only when given `dynamic_shapes`, so it is not used. Releases before 2.6 are refused.

Every stage (build, save, load, cache) fails with an `EngineStageError` naming the stage, so
`backend: auto` can fall back to the next backend and say why. Engines are cached on disk by
`cache.EngineCache`; the first start on a device builds and logs how long; `zs3 export
--format tensorrt` prebuilds exactly the engine the node loads (same key).

torch_tensorrt is imported lazily: this module imports, and its CPU-side parts (precision
preparation, keying) run and are tested, on machines without CUDA.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import inspect
import logging
import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from zs3_core.clip.attention import LayerNorm as ClipLayerNorm
from zs3_core.export.cache import CacheResult, EngineCache, EngineCacheError, EngineKey, model_hash
from zs3_core.export.exported_program import class_dynamic_shapes, export_image_path
from zs3_core.export.image_path import (DEFAULT_MAX_CLASSES, ExportError, check_max_batch, check_max_classes,
                                        embedding_dim)

log = logging.getLogger(__name__)

TENSORRT_PRECISIONS = {"fp16": torch.float16, "fp32": torch.float32}
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
OPT_CLASSES = 32                 # vocabulary size the engine is tuned for (docs/deployment.md)
MIN_TORCH_TENSORRT = (2, 6)      # first release whose compiled modules re-export with C dynamic
STRONGLY_TYPED_ONLY = (2, 13)    # from here builds are always strongly typed (no flag to pass)
ENGINE_STAGES = ("build", "save", "load", "cache")


class EngineStageError(ExportError):
    """One stage of getting a TensorRT engine failed; `stage` is one of ENGINE_STAGES."""

    def __init__(self, stage: str, error: BaseException):
        self.stage = stage
        super().__init__(f"TensorRT engine {stage} failed: {type(error).__name__}: {error}")


@contextlib.contextmanager
def engine_stage(stage: str):
    """Re-raise any error inside as EngineStageError(stage): TensorRT, torch.export and the
    file system raise many unrelated types, and the caller only needs the stage and message."""
    try:
        yield
    except EngineStageError:
        raise
    except Exception as err:
        raise EngineStageError(stage, err) from err


def opt_classes(max_classes: int) -> int:
    return min(OPT_CLASSES, check_max_classes(max_classes))


def release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "2.8.0", "2.8.0+cu126" or "2.10.0a0"."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise ExportError(f"cannot read the Torch-TensorRT version {version!r}")
    return int(match.group(1)), int(match.group(2))


def unsupported_release_reason(version: str) -> Optional[str]:
    """Why this Torch-TensorRT cannot serve the image path (None when it can)."""
    if release(version) < MIN_TORCH_TENSORRT:
        return (f"Torch-TensorRT {version} cannot save and reload an engine whose class count stays "
                f"dynamic (needs {MIN_TORCH_TENSORRT[0]}.{MIN_TORCH_TENSORRT[1]} or newer)")
    return None


def build_options(version: str, parameters, dtype: torch.dtype = torch.float16) -> dict:
    """Strong-typing options for `torch_tensorrt.dynamo.compile` of this release, whose
    keyword names are `parameters`: `use_explicit_typing=True` where the flag exists (it is
    off by default before 2.10, and must not be combined with enabled_precisions from 2.8);
    nothing from the release where strong typing is the only mode; enabled_precisions
    {dtype, fp32} (weakly typed, with a warning) only for a build that has neither."""
    if "use_explicit_typing" in parameters:
        return {"use_explicit_typing": True}
    if release(version) >= STRONGLY_TYPED_ONLY:
        return {}
    log.warning("Torch-TensorRT %s has no strongly typed builds; using enabled_precisions {%s, fp32}: "
                "TensorRT may run some norms in reduced precision (check with zs3 export --verify)", version, dtype)
    return {"enabled_precisions": {dtype, torch.float32}}


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


def engine_key(model: nn.Module, precision: str, max_classes: int, environment: dict,
               max_batch: int = 1) -> EngineKey:
    """The cache key of `model`'s engine: what the engine computes (weights, image-path graph
    and config fields, precision, class and batch ranges) and what runs it (`environment`).
    The batch is tuned for its maximum (`opt_batch`): a multi-camera node runs full batches."""
    max_batch = check_max_batch(max_batch)
    return EngineKey(model_hash=model_hash(model), input_size=int(model.config.input_size), min_classes=1,
                     opt_classes=opt_classes(max_classes), max_classes=check_max_classes(max_classes),
                     precision=precision, min_batch=1, opt_batch=max_batch, max_batch=max_batch, **environment)


def image_input(size: int, max_batch: int):
    """The Torch-TensorRT Input of the image: a fixed (1, 3, S, S), or the profile
    min (1, 3, S, S) / opt = max (max_batch, 3, S, S) for a batch of several cameras
    (`torch_tensorrt.Input(min_shape=, opt_shape=, max_shape=)`, Torch-TensorRT's dynamic
    shapes guide)."""
    import torch_tensorrt

    if max_batch == 1:
        return torch_tensorrt.Input(shape=(1, 3, size, size), dtype=torch.float32)
    return torch_tensorrt.Input(min_shape=(1, 3, size, size), opt_shape=(max_batch, 3, size, size),
                                max_shape=(max_batch, 3, size, size), dtype=torch.float32)


def build_engine(model: nn.Module, path: Path, precision: str = "fp16",
                 max_classes: int = DEFAULT_MAX_CLASSES, device: str | torch.device = "cuda",
                 max_batch: int = 1) -> None:
    """Compile `model.predict` for 1..max_batch images with Torch-TensorRT and save the compiled
    program to `path`."""
    import torch_tensorrt

    dtype = TENSORRT_PRECISIONS[precision]
    size, dim, opt = int(model.config.input_size), embedding_dim(model), opt_classes(max_classes)
    with engine_stage("build"):
        prepared = with_fp32_norms(model, dtype).to(device).eval()
        program = export_image_path(prepared, max_classes, device=device, trace_classes=opt, max_batch=max_batch,
                                    compute_dtype=None if dtype == torch.float32 else dtype)
        inputs = [image_input(size, max_batch),
                  torch_tensorrt.Input(min_shape=(1, dim), opt_shape=(opt, dim), max_shape=(max_classes, dim),
                                       dtype=torch.float32)]
        compile_fn = torch_tensorrt.dynamo.compile
        parameters = inspect.signature(compile_fn).parameters
        kwargs = {"device": torch.device(device), "min_block_size": 1,
                  "arg_inputs" if "arg_inputs" in parameters else "inputs": inputs,
                  **build_options(torch_tensorrt.__version__, parameters, dtype)}
        compiled = compile_fn(program, **kwargs)
    examples = (torch.zeros(max_batch, 3, size, size, device=device), torch.zeros(opt, dim, device=device))
    with engine_stage("save"):
        save_engine(compiled, path, examples, max_classes, max_batch)


def save_engine(compiled: nn.Module, path: Path, examples: tuple, max_classes: int, max_batch: int = 1) -> None:
    """Re-export the compiled module with C (and B) dynamic and write it as an ExportedProgram."""
    shapes = tuple(class_dynamic_shapes(max_classes, max_batch).values())   # positional: (image, class_embeddings)
    program = torch.export.export(compiled, examples, dynamic_shapes=shapes, strict=False)
    torch.export.save(program, str(path))


def load_engine(path: Path) -> nn.Module:
    """The compiled program saved by `build_engine`, as a callable module. Through
    `torch_tensorrt.load`, which registers the TensorRT engine ops before reading."""
    import torch_tensorrt

    with engine_stage("load"):
        loaded = torch_tensorrt.load(str(path))
        return loaded.module() if hasattr(loaded, "module") else loaded


def compile_tensorrt(model: nn.Module, precision: str = "fp16", max_classes: int = DEFAULT_MAX_CLASSES,
                     device: str | torch.device = "cuda",
                     cache_dir: str | Path | None = None, max_batch: int = 1) -> tuple[nn.Module, CacheResult]:
    """The TensorRT engine for `model` serving 1..max_batch images per call, from the cache when
    valid, else built (and cached).

    Raises ExportError when TensorRT cannot run here, EngineStageError when a stage fails."""
    if precision not in TENSORRT_PRECISIONS:
        raise ExportError(f"TensorRT precision {precision!r} is not supported; choose one of "
                          f"{tuple(TENSORRT_PRECISIONS)}")
    reason = tensorrt_unavailable_reason(device)
    if reason:
        raise ExportError(f"cannot build a TensorRT engine: {reason}")
    with engine_stage("build"):   # a broken TensorRT or CUDA install fails here, before any build
        environment = environment_fields(device)
    reason = unsupported_release_reason(environment["torch_tensorrt_version"])
    if reason:
        raise ExportError(reason)
    key = engine_key(model, precision, max_classes, environment, max_batch)
    try:
        result = EngineCache(cache_dir).get_or_build(
            key, lambda path: build_engine(model, path, precision, max_classes, device, max_batch))
    except (EngineCacheError, OSError) as err:
        raise EngineStageError("cache", err) from err
    return load_engine(result.path), result
