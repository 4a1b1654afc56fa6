"""Trained-model checkpoints: safetensors holding only the trainable tensors, with the full
run config embedded, written atomically; optimizer state for --resume kept apart.

Only trainable tensors are stored because CLIP stays frozen and comes from its own weights
file (11M of ~150M parameters for LDVC). Safetensors and `torch.load(weights_only=True)`
never unpickle, so a checkpoint from the internet cannot run code. The embedded config
lets `zs3 eval` and the Segmenter rebuild the exact model and lets a mismatch be named
("checkpoint was trained for ldvc, config builds deop") instead of failing on key soup.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
import yaml
from torch import nn

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FORMAT = "zs3_ros.model_checkpoint"
FORMAT_VERSION = "1"
PathLike = Union[str, Path]


class CheckpointError(Exception):
    """A checkpoint cannot be used; the message says which file and why."""


class CorruptCheckpointError(CheckpointError):
    """The file is not a readable checkpoint of this format (truncated, pickled, foreign)."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the model the config builds."""


def write_atomically(path: Path, write) -> None:
    """Run write(tmp_path), fsync, then rename over `path`: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_model_checkpoint(path: PathLike, model: nn.Module, config_dict: dict, step: int,
                          extra: Optional[dict] = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write the model's trainable tensors (stored as `dtype`; loading casts them back to the
    model's) + config (YAML) + step + `extra` (JSON) to `path`."""
    from safetensors.torch import save_file

    params = model.trainable_parameters() if hasattr(model, "trainable_parameters") else {
        n: p for n, p in model.named_parameters() if p.requires_grad}
    tensors = {name: p.detach().to("cpu", dtype).contiguous().clone()
               for name, p in params.items()}
    model_name = str((config_dict.get("model") or {}).get("name", ""))
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "step": str(int(step)),
        "config_yaml": yaml.safe_dump(config_dict, sort_keys=False),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def _read_header(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises several types for a bad header
        raise CorruptCheckpointError(f"{path} is not a readable safetensors checkpoint ({err}); "
                                     "pickled .pt/.pth files are refused on purpose") from None
    if metadata.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is a safetensors file but not a zs3 model checkpoint "
                                     f"(metadata format {metadata.get('format')!r})")
    return metadata


def read_checkpoint_config(path: PathLike) -> dict:
    """The full run config (model/data/train/eval sections) the checkpoint was trained with."""
    metadata = _read_header(Path(path))
    return yaml.safe_load(metadata["config_yaml"]) or {}


def read_checkpoint_info(path: PathLike) -> dict[str, Any]:
    """Model name, step, extra and config of a checkpoint, without loading its tensors."""
    metadata = _read_header(Path(path))
    return {"model_name": metadata.get("model_name", ""), "step": int(metadata.get("step", 0)),
            "extra": json.loads(metadata.get("extra", "{}")),
            "config": yaml.safe_load(metadata["config_yaml"]) or {}}


def update_checkpoint_extra(path: PathLike, key: str, value: Any) -> Path:
    """Set `extra[key] = value` in a checkpoint's metadata (e.g. a rule calibrated after
    training); tensors, config and step stay as they are. Rewritten atomically."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(path)
    metadata = dict(_read_header(path))
    with safe_open(str(path), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    extra = json.loads(metadata.get("extra", "{}"))
    extra[key] = value
    metadata["extra"] = json.dumps(extra)
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def _describe_mismatch(path: Path, checkpoint_name: str, model_name: str,
                       stored: dict[str, tuple], wanted: dict[str, tuple], limit: int = 8) -> str:
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(set(stored) - set(wanted))
    shapes = sorted(k for k in set(stored) & set(wanted) if stored[k] != wanted[k])
    lines = []
    if checkpoint_name and model_name and checkpoint_name != model_name:
        lines.append(f"checkpoint was trained for {checkpoint_name}, config builds {model_name}")
    else:
        lines.append(f"checkpoint {path.name} does not fit the {model_name or 'configured'} model")

    def listing(title, keys, fmt):
        if keys:
            shown = ", ".join(fmt(k) for k in keys[:limit])
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            lines.append(f"{title} ({len(keys)}): {shown}{more}")

    listing("missing from checkpoint", missing, lambda k: f"{k} {list(wanted[k])}")
    listing("not in model", unexpected, lambda k: f"{k} {list(stored[k])}")
    listing("shape mismatch", shapes, lambda k: f"{k}: checkpoint {list(stored[k])} vs model {list(wanted[k])}")
    return "; ".join(lines)


def load_model_checkpoint(path: PathLike, model: nn.Module) -> dict[str, Any]:
    """Copy the checkpoint's tensors into the model's trainable parameters, strictly.

    Every trainable parameter must be present with its exact shape and nothing else may be
    stored; otherwise CheckpointMismatchError names the keys. Returns `read_checkpoint_info`.
    """
    from safetensors import safe_open

    path = Path(path)
    info = read_checkpoint_info(path)
    params = model.trainable_parameters() if hasattr(model, "trainable_parameters") else {
        n: p for n, p in model.named_parameters() if p.requires_grad}
    try:
        with safe_open(str(path), framework="pt") as f:
            stored_shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            wanted = {k: tuple(p.shape) for k, p in params.items()}
            model_name = getattr(getattr(model, "config", None), "name", "")
            other_model = bool(info["model_name"] and model_name and info["model_name"] != model_name)
            if stored_shapes != wanted or other_model:
                raise CheckpointMismatchError(_describe_mismatch(
                    path, info["model_name"], model_name, stored_shapes, wanted))
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(f.get_tensor(name).to(param.device, param.dtype))
    except CheckpointError:
        raise
    except Exception as err:
        raise CorruptCheckpointError(f"{path}: cannot read tensors ({err})") from None
    return info


def save_training_state(path: PathLike, state: dict) -> Path:
    """Optimizer/scheduler/RNG state for --resume (tensors and plain containers only)."""
    path = Path(path)
    write_atomically(path, lambda tmp: torch.save(state, tmp))
    return path


def load_training_state(path: PathLike) -> dict:
    """Read a training state with `weights_only=True`: no arbitrary object is unpickled."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"training state {path} does not exist") from None
    except Exception as err:
        raise CorruptCheckpointError(f"{path} is not a loadable training state ({err})") from None
