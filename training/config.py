"""The `data`, `train` and `eval` sections of a run config, next to the `model` section
that zs3_core reads. Same reader as ModelConfig: unknown keys and wrong types are errors
that name the field, so a typo never silently trains with a default.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import yaml

from zs3_core.config import (ConfigError, ModelConfig, dataclass_from_dict, load_yaml,
                             resolve_path, with_resolved_paths)
from zs3_core.model_checkpoint import STORAGE_DTYPES

DATASETS = ("voc", "cocostuff", "synthetic")


def require_at_least(section_obj, section: str, names: Sequence[str], minimum: int) -> None:
    """ConfigError naming the first of `names` below `minimum` (e.g. train.batch_size >= 1)."""
    for name in names:
        if getattr(section_obj, name) < minimum:
            raise ConfigError(f"{section}.{name} must be >= {minimum}, got {getattr(section_obj, name)}")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where, and how crops are made (defaults: the papers' mmseg pipeline)."""

    dataset: str = "voc"
    root: Optional[str] = None
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    photometric_distortion: bool = True       # off when colour is the class (synthetic world)
    ignore_index: int = 255
    background: str = "ignore"               # ignore: background pixels are ignore_index (the papers'
                                              # VOC setting); class: a seen class "background" (synthetic)
    drop_images_without_seen: bool = False   # zsseg/DeOP: true; ZegCLIP/LDVC: false
    eval_mode: str = "slide"                  # slide | whole
    slide_stride: int = 426                   # ZegCLIP: 512 windows, stride 426
    num_workers: int = 4
    synthetic: dict = field(default_factory=dict)   # world / train_scenes / val_scenes / cache_scenes

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.eval_mode not in ("slide", "whole"):
            raise ConfigError(f"data.eval_mode must be 'slide' or 'whole', got {self.eval_mode!r}")
        if self.crop_size < 32 or self.crop_size % 16:
            raise ConfigError(f"data.crop_size must be a multiple of 16 and >= 32, got {self.crop_size}")
        if not 0 < self.slide_stride <= self.crop_size:
            raise ConfigError(f"data.slide_stride must be in 1..crop_size ({self.crop_size}), got {self.slide_stride}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ConfigError(f"data.scale_range must be [min, max] with 0 < min <= max, got {list(self.scale_range)}")
        if self.background not in ("ignore", "class"):
            raise ConfigError(f"data.background must be 'ignore' or 'class', got {self.background!r}")
        if self.background == "class" and self.dataset != "synthetic":
            raise ConfigError(f"data.background: class labels the background of the synthetic world only; "
                              f"{self.dataset} follows its papers, whose readers ignore it")
        if not 0 <= self.ignore_index <= 255:
            raise ConfigError(f"data.ignore_index must be in 0..255, got {self.ignore_index}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule. `batch_size` is the global batch per optimizer step (16 in the
    papers); each of N processes loads batch_size / (N · grad_accum) images per micro-step."""

    iterations: int = 20000
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_iters: int = 1500
    poly_power: float = 0.9
    grad_accum: int = 1
    amp: bool = True            # mixed precision where the hardware has it (training/precision.py)
    loss_stride: int = 1        # the loss sees every k-th label pixel per axis; 1 = all (the papers)
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0         # 0: evaluate only at the end of `zs3 eval`
    checkpoint_every: int = 2000
    checkpoint_dtype: str = "float32"   # stored weights; float16 halves the files, and --resume then
                                        # continues from the rounded weights (not bit-exact)
    out_dir: str = "runs/default"
    grad_clip_norm: float = 0.0         # clip the global gradient norm to this (0: off; MaskFormer 0.01)
    prompt_stage_iters: int = 0         # DeOP: learn the text prompts on seen-class ground-truth crops
                                        # first (training/prompt_init.py); 0: no such stage
    prompt_crop_size: int = 224         # side of those crops (CLIP's pre-training resolution)
    proposal_stage_iters: int = 0       # DeOP: train the proposal network alone (mask loss) first,
                                        # then the rest with it frozen (training/deop_stages.py); 0: jointly

    def __post_init__(self):
        require_at_least(self, "train", ("iterations", "batch_size", "grad_accum", "log_every", "loss_stride"), 1)
        require_at_least(self, "train", ("warmup_iters", "eval_every", "checkpoint_every", "prompt_stage_iters",
                                         "proposal_stage_iters"), 0)
        require_at_least(self, "train", ("prompt_crop_size",), 16)
        if self.grad_clip_norm < 0:
            raise ConfigError(f"train.grad_clip_norm must be >= 0, got {self.grad_clip_norm}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.checkpoint_dtype not in STORAGE_DTYPES:
            raise ConfigError(f"train.checkpoint_dtype must be one of {sorted(STORAGE_DTYPES)}, "
                              f"got {self.checkpoint_dtype!r}")


@dataclass(frozen=True)
class EvalConfig:
    """GZS3 evaluation: one prediction over all classes, on the `val` split."""

    split: str = "val"
    max_images: int = 0               # 0: the whole split
    seen_score_offset: float = 0.0    # ZegCLIP subtracts 0.1 from seen-class sigmoid scores
    test_time_scales: tuple[float, ...] = (1.0,)   # image scale factors whose probabilities are averaged
    test_time_flip: bool = False      # also average each scale's mirror image (datasets/test_time_augmentation.py)
    out_dir: Optional[str] = None     # default: <train.out_dir>/eval

    def __post_init__(self):
        if not self.test_time_scales or any(scale <= 0 for scale in self.test_time_scales):
            raise ConfigError(f"eval.test_time_scales must be a non-empty list of factors > 0, "
                              f"got {list(self.test_time_scales)}")


@dataclass
class RunConfig:
    """All four sections plus the raw mapping (embedded verbatim in checkpoints)."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig
    raw: dict

    def to_dict(self) -> dict:
        return copy.deepcopy(self.raw)


def build_run_config(raw: dict, base: Optional[Path] = None) -> RunConfig:
    """RunConfig from a full config mapping; relative paths resolve against `base`."""
    unknown = sorted(set(raw) - {"model", "data", "train", "eval"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; expected model, data, train, eval")
    raw = copy.deepcopy(raw)
    model = dataclass_from_dict(ModelConfig, raw.get("model"), "model")
    model = with_resolved_paths(model, base)
    data = dataclass_from_dict(DataConfig, raw.get("data"), "data")
    if data.root is not None:
        data = dataclasses.replace(data, root=resolve_path(data.root, base))
    train = dataclass_from_dict(TrainConfig, raw.get("train"), "train")
    evaluation = dataclass_from_dict(EvalConfig, raw.get("eval"), "eval")
    raw["model"] = {**(raw.get("model") or {}), "clip_weights": model.clip_weights,
                    **({"checkpoint": model.checkpoint} if model.checkpoint else {})}
    raw["data"] = {**(raw.get("data") or {}), "root": data.root}
    return RunConfig(model, data, train, evaluation, raw)


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """`section.key=value` strings (value parsed as YAML) set into the raw config, e.g.
    train.batch_size=4 or model.options.route_top_k=8."""
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.batch_size=4")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_run_config(path: Union[str, Path], data_root: Optional[str] = None,
                    out_dir: Optional[str] = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run config; --data-root / --out override data.root / train.out_dir and
    --set section.key=value any other field."""
    raw = apply_overrides(load_yaml(path), overrides)
    if data_root is not None:
        raw.setdefault("data", {})["root"] = str(Path(data_root).resolve())
    if out_dir is not None:
        raw.setdefault("train", {})["out_dir"] = str(out_dir)
    return build_run_config(raw, Path(path).resolve().parent)
