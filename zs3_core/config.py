"""Model configuration read from YAML.

A config file has one section per concern: `model` (this module: what to build and how to
feed it), and for training `data`, `train`, `eval` (read by the training package). Each
section becomes a dataclass; unknown keys are errors so a typo never silently falls back
to a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = (122.771, 116.746, 104.094)
CLIP_STD = (68.501, 66.632, 70.323)

REPO_ROOT = Path(__file__).resolve().parent.parent
# The embedded default: LDVC trained on the synthetic world (checkpoints/synthetic/MODEL_CARD.md).
DEFAULT_MODEL_CONFIG = REPO_ROOT / "checkpoints" / "synthetic" / "ldvc.yaml"


class ConfigError(ValueError):
    """A configuration file or section is malformed; the message names the field."""


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    """Accept `value` for a field annotated with a simple type, converting ints to floats
    and lists to tuples where the annotation asks for it."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(name, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if annotation is Any:
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_check_type(f"{name}[{i}]", v, item_type) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        return dataclass_from_dict(annotation, value, name)
    return value


def dataclass_from_dict(cls: type, data: Optional[dict], section: str = ""):
    """Build dataclass `cls` from a mapping, checking names and simple types.

    Raises ConfigError naming the offending key ("model.input_size: expected an integer").
    """
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{section or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{section or cls.__name__}: unknown key(s) {unknown}; "
                          f"known keys are {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _check_type(f"{section}.{key}" if section else key, value, hints[key])
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{section or cls.__name__}: {err}") from None


def dataclass_to_dict(obj) -> dict:
    """Plain-YAML form of a config dataclass (tuples become lists)."""
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}


@dataclass(frozen=True)
class ModelConfig:
    """What to build (`name`) on which CLIP (`clip`), and how images and text are fed.

    `clip` is a preset name ("vitb16", "tiny") or a mapping with `vision` / `text` sections.
    `options` holds the model's own section (LDVC / DeOP hyper-parameters), parsed by the
    model's builder into its own dataclass.
    """
    name: str = "clip_baseline"
    clip: Any = "vitb16"
    clip_weights: Optional[str] = None
    checkpoint: Optional[str] = None     # trained tensors (`zs3 train` output) loaded over the built model
    input_size: int = 512
    pixel_mean: tuple[float, ...] = IMAGENET_MEAN
    pixel_std: tuple[float, ...] = IMAGENET_STD
    prompt_template: str = "a photo of a {}."
    unlabeled_threshold: Optional[float] = None   # None: the open-set threshold calibrated with the
                                                  # checkpoint (zs3_core/open_set.py); a number overrides it
    background_classes: tuple[str, ...] = ("background",)   # vocabulary classes published as unlabeled
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.input_size < 32 or self.input_size % 16:
            raise ConfigError(f"model.input_size must be a multiple of 16 and >= 32, got {self.input_size}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ConfigError("model.pixel_mean and model.pixel_std need 3 values (R, G, B)")
        if "{}" not in self.prompt_template:
            raise ConfigError(f"model.prompt_template must contain '{{}}', got {self.prompt_template!r}")
        if self.unlabeled_threshold is not None and not 0.0 <= self.unlabeled_threshold < 1.0:
            raise ConfigError(f"model.unlabeled_threshold must be in [0, 1), got {self.unlabeled_threshold}")


def resolve_path(path: Optional[str], base: Optional[Path]) -> Optional[str]:
    """Relative paths in a config file are relative to that file, then to the repository."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    for root in ([base] if base else []) + [REPO_ROOT, Path.cwd()]:
        if (root / p).exists():
            return str((root / p).resolve())
    return str(p)


def load_yaml(path: Union[str, Path]) -> dict:
    """The raw sections of a config file, with a clear error for missing or broken files."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping with a 'model' section")
    return data


def load_model_config(source: Union[str, Path, dict, ModelConfig]) -> ModelConfig:
    """ModelConfig from a YAML path, a full config mapping, or a `model` mapping."""
    if isinstance(source, ModelConfig):
        return source
    base = None
    if isinstance(source, (str, Path)):
        base = Path(source).resolve().parent
        source = load_yaml(source)
    section = source.get("model", source) if isinstance(source, dict) else source
    return with_resolved_paths(dataclass_from_dict(ModelConfig, section, "model"), base)


def with_resolved_paths(config: ModelConfig, base: Optional[Path]) -> ModelConfig:
    """`config` with its weight files (clip_weights, checkpoint) resolved as `resolve_path` does."""
    return dataclasses.replace(config, clip_weights=resolve_path(config.clip_weights, base),
                               checkpoint=resolve_path(config.checkpoint, base))
