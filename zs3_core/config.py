"""Model configuration read from YAML.

A config file has one section per concern: `model` (this module: what to build and how to
feed it), and for training `data`, `train`, `eval` (read by the training package). Each
section becomes a dataclass; unknown keys are errors so a typo never silently falls back
to a default.

A file may start from others (mmsegmentation's `_base_`): `_base_: sibling.yaml` (or a list,
merged in order; paths relative to the file) loads the base first, then the file's own keys
override it, mappings merged key by key, everything else (lists included) replaced whole.
A variant is thus only what differs; the merged mapping is checked as strictly as any file.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

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


def resolve_path(path: Optional[str], base: Optional[Path] = None, *, roots: Sequence[Path] = (),
                 what: Optional[str] = None) -> Optional[str]:
    """The one path resolver: a relative path is looked up against `base` (the folder of the
    config file that names it), then each of `roots` (e.g. the ROS package share dir, which
    `zs3_ros.params` adds), then the repository, then the working directory.

    With `what` (e.g. "checkpoint"), a path found nowhere is a ConfigError naming `what` and
    every place looked in; without, it comes back as given and opening it reports the error.
    """
    if not path:
        return path
    p = Path(path).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [root / p for root in [*([base] if base else []), *roots, REPO_ROOT, Path.cwd()]]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve()) if what or not p.is_absolute() else str(p)
    if what is None:
        return str(p)
    raise ConfigError(f"{what} {path!r} not found (looked in: {', '.join(str(c) for c in dict.fromkeys(candidates))})")


BASE_KEY = "_base_"


def load_yaml(path: Union[str, Path]) -> dict:
    """The raw sections of a config file with its `_base_` files merged in (module doc), with
    a clear error for missing or broken files and for bases that include themselves."""
    return _load_with_bases(Path(path), ())


def _load_with_bases(path: Path, including: tuple[Path, ...]) -> dict:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist"
                          + (f" (a {BASE_KEY} of {including[-1]})" if including else ""))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping with a 'model' section")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names, got {bases!r}")
    merged: dict = {}
    for name in bases:
        base = (path.parent / name).resolve()
        if base in including or base == path.resolve():
            raise ConfigError(f"{path}: {BASE_KEY} {name!r} includes itself")
        merged = merge_config(merged, _load_with_bases(base, (*including, path.resolve())))
    return merge_config(merged, data)


def merge_config(base: dict, override: dict) -> dict:
    """`override` over `base`: mappings merged recursively, any other value replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


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
