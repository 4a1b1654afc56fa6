"""Reading CLIP weights from OpenAI and open_clip checkpoints, safely.

Formats: OpenAI TorchScript archives (``ViT-B-16.pt``), plain state dicts written with
``torch.save`` (read with ``weights_only=True`` only: no arbitrary unpickling), open_clip
training checkpoints (``{"state_dict": ...}`` with ``module.`` DDP prefixes), and
``.safetensors``. Conversion is explicit functions, as open_clip's
``build_model_from_openai_state_dict`` and ``resize_pos_embed``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import torch

from .config import ClipConfig, TextConfig, VisionConfig
from .model import CLIP
from .vision import resize_pos_embed

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, Path]

# Scalars OpenAI's JIT archives carry next to the weights; not parameters of the model.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile
_MAX_LISTED = 8


class ClipCheckpointError(RuntimeError):
    """A checkpoint file cannot be read as CLIP weights (corrupt, truncated, unsafe, or not CLIP)."""


class ClipStateDictMismatch(ClipCheckpointError):
    """A state dict does not fit the requested CLIP architecture."""


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript zips carry compiled code (``<name>/code/``); ``torch.save`` zips do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _read(path: Path) -> Mapping:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ClipCheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if _is_torchscript_archive(path):
        try:
            with warnings.catch_warnings():  # deprecated, yet the only reader of OpenAI's archives
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError as exc:
            raise ClipCheckpointError(f"{path}: TorchScript archive could not be loaded ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise ClipCheckpointError(
                f"{path} holds Python objects other than tensors and plain containers; it is not "
                "unpickled for safety. Re-save only the weights, e.g. "
                "torch.save(model.state_dict(), path) or safetensors.torch.save_file(...)"
            ) from None
        raise ClipCheckpointError(f"{path}: corrupt checkpoint ({exc})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ClipCheckpointError(
            f"{path} is truncated or not a PyTorch, TorchScript or safetensors checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def normalize_state_dict(raw: Mapping) -> StateDict:
    """Unwrap open_clip/trainer wrappers, strip ``module.``/``_orig_mod.`` prefixes, map a
    CustomTextCLIP ``text.`` tower to OpenAI names, and drop OpenAI's scalar extras."""
    for key in _WRAPPER_KEYS:
        if key in raw and isinstance(raw[key], Mapping):
            raw = raw[key]
            break
    sd = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor) and k not in OPENAI_EXTRA_KEYS}
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    if "text.token_embedding.weight" in sd and "token_embedding.weight" not in sd:
        sd = {(k[len("text."):] if k.startswith("text.") else k): v for k, v in sd.items()}
    return sd


def load_clip_state_dict(path: PathLike) -> StateDict:
    """Read CLIP weights from ``path`` into a CPU state dict at OpenAI names (dtypes as stored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP checkpoint not found: {path}")
    raw = _read(path)
    if not isinstance(raw, Mapping):
        raise ClipCheckpointError(f"{path} holds a {type(raw).__name__}, not a state dict")
    sd = normalize_state_dict(raw)
    if not sd:
        raise ClipCheckpointError(f"{path} contains no tensors")
    return sd


def _count_blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.attn\.in_proj_weight$")
    return len({m.group(1) for k in sd if (m := pattern.match(k))})


def _require(sd: Mapping[str, torch.Tensor], keys: List[str]) -> None:
    """Each key, or each ``a|b`` alternative, must be present."""
    missing = [k for k in keys if not any(option in sd for option in k.split("|"))]
    if missing:
        hint = " (ResNet CLIP models are not supported)" if "visual.layer1.0.conv1.weight" in sd else ""
        raise ClipStateDictMismatch(f"not a CLIP ViT state dict: missing {missing}{hint}")


def _patch_embedding(sd: Mapping[str, torch.Tensor]) -> tuple:
    """(stem, width, patch size) from the patch-embedding weights: CLIP's patchify conv, or a
    convolutional stem whose stride-2 convolutions each halve the resolution."""
    if "visual.conv1.weight" in sd:
        width, _, patch, _ = sd["visual.conv1.weight"].shape
        return "patch", width, patch
    convs = [k for k, v in sd.items() if k.startswith("visual.stem.convs.") and v.dim() == 4]
    return "conv", sd["visual.stem.proj.weight"].shape[0], 2 ** len(convs)


def config_from_state_dict(sd: Mapping[str, torch.Tensor], activation: str = "quick_gelu") -> ClipConfig:
    """Infer the architecture from weight shapes, as open_clip's
    ``build_model_from_openai_state_dict``. Heads are not stored in weights: width // 64, the
    head size of every OpenAI and open_clip ViT. The activation is not stored either: pass
    ``"gelu"`` for open_clip models trained without QuickGELU.
    """
    _require(sd, ["visual.conv1.weight|visual.stem.proj.weight", "visual.positional_embedding", "visual.proj",
                  "visual.transformer.resblocks.0.mlp.c_fc.weight", "token_embedding.weight",
                  "positional_embedding", "ln_final.weight", "text_projection",
                  "transformer.resblocks.0.mlp.c_fc.weight"])
    stem, v_width, patch = _patch_embedding(sd)
    n_patches = sd["visual.positional_embedding"].shape[0] - 1
    grid = math.isqrt(n_patches)
    if grid * grid != n_patches:
        raise ClipStateDictMismatch(f"visual.positional_embedding has {n_patches} patch entries: not a square grid")
    t_width = sd["ln_final.weight"].shape[0]
    vision = VisionConfig(
        image_size=patch * grid, patch_size=patch, width=v_width,
        layers=_count_blocks(sd, "visual.transformer.resblocks."), heads=max(v_width // 64, 1),
        output_dim=sd["visual.proj"].shape[1],
        mlp_ratio=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / v_width,
        activation=activation, stem=stem,
    )
    text = TextConfig(
        context_length=sd["positional_embedding"].shape[0], vocab_size=sd["token_embedding.weight"].shape[0],
        width=t_width, layers=_count_blocks(sd, "transformer.resblocks."), heads=max(t_width // 64, 1),
        output_dim=sd["text_projection"].shape[1],
        mlp_ratio=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / t_width,
        activation=activation,
    )
    return ClipConfig(vision=vision, text=text)


def header_clip_config(path: PathLike, inferred: ClipConfig) -> ClipConfig:
    """The config a safetensors header records (``clip_config``, as `zs3 pretrain` writes it),
    else `inferred`. Why: weights cannot show the activation (QuickGELU or GELU), so a tiny
    CLIP pre-trained with GELU would otherwise load as QuickGELU and compute something else.
    A header that contradicts the weights' shapes is refused, not trusted."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return inferred
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        recorded = (f.metadata() or {}).get("clip_config")
    if recorded is None:
        return inferred
    try:
        config = ClipConfig.from_dict(json.loads(recorded))
    except (ValueError, TypeError) as exc:   # ConfigError is a ValueError
        raise ClipCheckpointError(f"{path}: unreadable clip_config in the safetensors header ({exc})") from None
    differences = _architecture_differences(inferred, config)
    if differences:
        raise ClipStateDictMismatch(f"{path}: the header's clip_config contradicts the weights: "
                                    + "; ".join(d.replace("config asks for", "header says") for d in differences))
    return config


def _architecture_differences(found: ClipConfig, wanted: ClipConfig) -> List[str]:
    """Human-readable differences in what the weights fix (not heads/activation/image size)."""
    checks = [
        ("vision layers", found.vision.layers, wanted.vision.layers),
        ("vision width", found.vision.width, wanted.vision.width),
        ("vision patch size", found.vision.patch_size, wanted.vision.patch_size),
        ("vision stem", found.vision.stem, wanted.vision.stem),
        ("vision output dim", found.vision.output_dim, wanted.vision.output_dim),
        ("vision mlp ratio", found.vision.mlp_ratio, wanted.vision.mlp_ratio),
        ("text layers", found.text.layers, wanted.text.layers),
        ("text width", found.text.width, wanted.text.width),
        ("text output dim", found.text.output_dim, wanted.text.output_dim),
        ("text mlp ratio", found.text.mlp_ratio, wanted.text.mlp_ratio),
        ("text context length", found.text.context_length, wanted.text.context_length),
        ("text vocabulary size", found.text.vocab_size, wanted.text.vocab_size),
    ]
    return [f"checkpoint has {a} {what}, config asks for {b}" for what, a, b in checks if a != b]


def _listed(keys: List[str]) -> str:
    more = f" … and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_clip_into(model: CLIP, sd: Mapping[str, torch.Tensor], source: str = "state dict") -> CLIP:
    """Strictly load ``sd`` into ``model``: the positional-embedding grid is resized to the
    model's image size (``resize_pos_embed``); anything else that does not fit raises
    ``ClipStateDictMismatch`` naming missing/unexpected keys and shape mismatches."""
    sd = dict(sd)
    pos = sd.get("visual.positional_embedding")
    grid = model.config.vision.grid_size
    if pos is not None and pos.dim() == 2 and pos.shape[0] != grid * grid + 1:
        sd["visual.positional_embedding"] = resize_pos_embed(pos.float(), (grid, grid))
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)}"
              for k in sorted(set(sd) & set(own)) if sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = []
        try:
            problems += _architecture_differences(config_from_state_dict(sd), model.config)
        except (ClipCheckpointError, ValueError):
            pass  # not CLIP-shaped enough to infer an architecture; the key lists say what is wrong
        if missing:
            problems.append(f"missing keys: {_listed(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_listed(unexpected)}")
        if shapes:
            problems.append(f"shape mismatches: {_listed(shapes)}")
        raise ClipStateDictMismatch(f"{source} does not fit the CLIP config: " + "; ".join(problems))
    model.load_state_dict(sd, strict=True)
    return model


def load_clip(
    path: PathLike,
    config: Optional[ClipConfig] = None,
    *,
    image_size: Optional[int] = None,
    activation: str = "quick_gelu",
) -> CLIP:
    """Build a CLIP from a checkpoint file, in fp32 on CPU, in eval mode.

    config: the architecture to load into; ``None`` takes the one a safetensors header records,
    else infers it (``config_from_state_dict``, with ``activation``). image_size: with an
    inferred config, the native input size to resize the positional grid to at load (e.g. 512
    for the 32×32 grid of the segmentation papers), so no interpolation runs per frame. With an
    explicit config its ``vision.image_size`` decides.
    """
    sd = load_clip_state_dict(path)
    if config is None:
        config = header_clip_config(path, config_from_state_dict(sd, activation=activation))
        if image_size is not None:
            config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, image_size=image_size))
    return load_clip_into(CLIP(config), sd, source=str(path)).eval()
