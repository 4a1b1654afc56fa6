"""ImageNet-pretrained ResNet-101 weights, in the formats users have, onto `ResNet101C`'s names.

DeOP's reference initialises its proposal backbone from detectron2's DeepLab ResNet-101
(`detectron2://DeepLab/R-103.pkl`: deep stem, "103" counting its three stem convs). The
same network also ships as mmcv's `resnet101_v1c`, and a plain ResNet-101 as torchvision's
`resnet101` (7×7 stem: it fits `ResNet101C(stem="standard")` only). Recognised names:

    torchvision      conv1, bn1, layer{1-4}.{i}.conv{1-3} / bn{1-3} / downsample.{0,1}, fc
    mmcv (v1c)       stem.{0,3,6} convs, stem.{1,4,7} norms, then torchvision's layer names
    detectron2       stem.conv{1-3}[.norm], res{2-5}.{i}.conv{1-3}[.norm], res{2-5}.{i}.shortcut[.norm]

Files are read without executing code: `.safetensors` with safetensors, `.pth`/`.pt` with
`torch.load(weights_only=True)`, and detectron2's `.pkl` (a pickle of numpy arrays) with an
unpickler that only builds numpy arrays, dtypes and dicts and refuses anything else.
"""
from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path
from typing import Mapping, Union

import numpy as np
import torch

from zs3_core.models.deop.resnet101c import ResNet101C

PathLike = Union[str, Path]
HEADS = ("fc.", "linear.", "fc1000.")
WRAPPER_KEYS = ("state_dict", "model")
PREFIXES = ("module.", "backbone.body.", "backbone.")   # stripped in this order
NORM_BUFFERS = ("weight", "bias", "running_mean", "running_var")


class BackboneWeightsError(ValueError):
    """A backbone checkpoint that cannot be read or does not fit ResNet-101(c)."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only (detectron2's `.pkl` checkpoints);
    any other global (the way a pickle runs code) is an error."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
               ("_codecs", "encode")}           # how protocol-2 pickles store the arrays' bytes

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise BackboneWeightsError(f"refusing to unpickle {module}.{name}: a weights .pkl holds only numpy arrays")
        if module.startswith("numpy.core"):      # numpy >= 2 moved numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core"):] if hasattr(np, "_core") else module
        return getattr(importlib.import_module(module), name)


def read_checkpoint(path: PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors`, `.pth`/`.pt` or detectron2 `.pkl` file, unwrapped from a
    {"model": ...} / {"state_dict": ...} container; read without running code from the file."""
    path = Path(path)
    if not path.is_file():
        raise BackboneWeightsError(f"backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        raw = load_file(str(path))
    elif path.suffix == ".pkl":
        with open(path, "rb") as f:
            raw = NumpyOnlyUnpickler(f, encoding="latin1").load()
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise BackboneWeightsError(f"{path}: not a weights-only torch checkpoint ({error})") from error
    for key in WRAPPER_KEYS:
        if isinstance(raw, Mapping) and isinstance(raw.get(key), Mapping):
            raw = raw[key]
    if not isinstance(raw, Mapping):
        raise BackboneWeightsError(f"{path}: expected a mapping of tensors, got {type(raw).__name__}")
    return {str(k): torch.as_tensor(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
            for k, v in raw.items() if isinstance(v, (torch.Tensor, np.ndarray))}


def _detectron2_name(name: str) -> str:
    """detectron2 names → torchvision-style names (stem convs keep detectron2's numbering)."""
    name = re.sub(r"^res(\d)\.", lambda m: f"layer{int(m.group(1)) - 1}.", name)
    name = re.sub(r"\.shortcut\.norm\.", ".downsample.1.", name)
    name = re.sub(r"\.shortcut\.weight$", ".downsample.0.weight", name)
    return re.sub(r"\.conv(\d)\.norm\.", lambda m: f".bn{m.group(1)}.", name)


MMCV_STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}


def to_resnet101c_names(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision / mmcv / detectron2 ResNet-101 state dict → `ResNet101C` names (heads dropped;
    detectron2's FrozenBN has no `num_batches_tracked`, which is filled with 0)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in raw.items():
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        if name.startswith(HEADS):
            continue
        if name.startswith("res") or ".norm." in name or ".shortcut." in name:
            name = _detectron2_name(name)
        stem = re.match(r"^stem\.(\d)\.(.+)$", name)
        if stem and stem.group(1) in MMCV_STEM:
            name = f"stem.{MMCV_STEM[stem.group(1)]}.{stem.group(2)}"
        out[name] = tensor
    if "stem.conv1.weight" in out and "stem.conv2.weight" not in out:     # detectron2's 7×7 BasicStem
        out = {re.sub(r"^stem\.(conv1|bn1)\.", r"\1.", k): v for k, v in out.items()}
    for name in [k for k in out if k.endswith(".running_var")]:
        out.setdefault(name[:-len("running_var")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    return out


def checkpoint_stem(state_dict: Mapping[str, torch.Tensor]) -> str:
    """"deep" when the converted weights have the three-conv stem, "standard" for a 7×7 one."""
    if "stem.conv3.weight" in state_dict:
        return "deep"
    if "conv1.weight" in state_dict:
        return "standard"
    raise BackboneWeightsError("no ResNet stem found (neither stem.conv3 nor conv1); first names: "
                               f"{sorted(state_dict)[:6]}")


def load_backbone_weights(backbone: ResNet101C, path: PathLike) -> str:
    """Load ImageNet weights into `backbone` strictly (every name and shape must match);
    returns the stem type found. A torchvision file needs `stem="standard"`."""
    return load_converted(backbone, to_resnet101c_names(read_checkpoint(path)), path)


def load_converted(backbone: ResNet101C, state: Mapping[str, torch.Tensor], path: PathLike) -> str:
    """`load_backbone_weights` on an already converted state dict (`path` names it in errors)."""
    stem = checkpoint_stem(state)
    if stem != backbone.stem_type:
        raise BackboneWeightsError(f"{path} has a {stem} stem but the backbone was built with "
                                   f"stem={backbone.stem_type!r}; torchvision's resnet101 has the standard "
                                   "7x7 stem, detectron2's R-103.pkl / mmcv's resnet101_v1c the deep one")
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise BackboneWeightsError(f"{path} does not fit ResNet-101 ({stem} stem): {error}") from error
    return stem


def backbone_from_checkpoint(path: PathLike, res5_multi_grid: tuple[int, ...] = (1, 2, 4)) -> ResNet101C:
    """A ResNet101C with the stem the checkpoint has, its weights loaded."""
    state = to_resnet101c_names(read_checkpoint(path))
    backbone = ResNet101C(checkpoint_stem(state), res5_multi_grid)
    load_converted(backbone, state, path)
    return backbone
