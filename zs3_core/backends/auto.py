"""The `auto` policy: the fastest backend and precision this machine can run, and why.

Order, fastest first (each measured side by side by bench/backends.py):
1. CUDA + torch_tensorrt → `tensorrt` fp16 (fused kernels, fp16 tensor cores, fp32 norms).
2. CUDA without it → `torch` fp16 autocast. ONNX Runtime's CUDA provider runs the fp32
   graph, which loses to fp16 tensor cores, so `auto` never picks it; name it explicitly
   where ONNX Runtime is the runtime you ship.
3. CPU with native bf16 (x86 AVX-512 BF16 / AMX, Arm bf16) → `torch` bf16 autocast: 2.3×
   eager fp32 at 99.5% identical labels (ViT-B/16, 512², 2 cores; bench/backends.py).
4. CPU without it → `onnxruntime` fp32 when installed: 1.9× eager fp32 on the same run
   (it fuses QuickGELU and the attention epilogues that eager runs op by op), identical
   labels; the graph is exported once per model and cached. Else `torch` fp32.

`auto` chooses the precision too; ask for a backend by name to pin one. When the chosen
backend fails to start (e.g. the TensorRT engine cannot be built, saved, loaded or cached),
the next one in this order runs instead, and the backend records why (`fallback`).
"""
from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class BackendChoice:
    name: str
    precision: str
    reason: str


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU feature flags of /proc/cpuinfo; empty where there is none (macOS, Windows)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 matmuls natively (AMX / AVX-512 BF16 on x86, the bf16
    extension on Arm); without it bf16 autocast is emulated and slower than fp32."""
    if not cpu_flags():
        return platform.system() == "Darwin" and platform.machine() == "arm64"
    return bool({"amx_bf16", "avx512_bf16", "bf16"} & cpu_flags())


def describe_cpu() -> str:
    """Cores and widest matmul path, e.g. "2 cores, AVX-512, no bf16": what training minutes
    depend on, recorded beside them (scripts/train_synthetic_models.sh)."""
    if cpu_has_native_bf16():
        path = "native bf16"
    elif "avx512f" in cpu_flags():
        path = "AVX-512, no bf16"
    elif "avx2" in cpu_flags():
        path = "AVX2, no bf16"
    else:
        path = "no native bf16"
    return f"{os.cpu_count()} cores, {path}"


def backend_candidates(device: str = "cpu") -> list[BackendChoice]:
    """The backends `auto` tries on `device`, fastest first; the last always exists (torch)."""
    kind = torch.device(device).type
    if kind == "cuda":
        candidates = []
        if importlib.util.find_spec("torch_tensorrt") is not None:
            candidates.append(BackendChoice("tensorrt", "fp16", "CUDA with torch_tensorrt: TensorRT fp16 engine is fastest"))
        candidates.append(BackendChoice("torch", "fp16", "CUDA: torch fp16 autocast" + (
            "" if candidates else " (install torch-tensorrt for a faster engine)")))
        return candidates
    candidates = []
    if cpu_has_native_bf16():
        candidates.append(BackendChoice("torch", "bf16", "CPU with native bf16 (AVX-512 BF16/AMX): torch bf16 "
                                                         "autocast, about 2x+ fp32 at >=99% identical labels"))
    if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None:
        candidates.append(BackendChoice("onnxruntime", "fp32", "CPU: onnxruntime fp32 (fused graph, about 1.9x "
                                                               "eager fp32)"))
    candidates.append(BackendChoice("torch", "fp32", "CPU: torch fp32"))
    return candidates


def choose_backend(device: str = "cpu") -> BackendChoice:
    """The first choice of `auto` on `device`."""
    return backend_candidates(device)[0]
