"""From a run config to the datasets training and evaluation iterate over."""
from __future__ import annotations

from zs3_core.config import ConfigError
from zs3_core.datasets import open_split
from zs3_core.datasets.gzs3 import GZS3EvaluationSet, GZS3TrainingSet
from zs3_core.datasets.transforms import TrainAugmentation

from training.config import DataConfig, RunConfig

SYNTHETIC_KEYS = ("world", "train_scenes", "val_scenes", "cache_scenes")


def open_source(data: DataConfig, split: str):
    """The reader of `data.dataset` for `split` ("train" | "val")."""
    if data.dataset == "synthetic":
        from zs3_core.datasets.synthetic import SyntheticScenes

        unknown = sorted(set(data.synthetic) - set(SYNTHETIC_KEYS))
        if unknown:
            raise ConfigError(f"data.synthetic: unknown key(s) {unknown}; known keys are {list(SYNTHETIC_KEYS)}")
        return SyntheticScenes(data.synthetic.get("world"), split, data.synthetic.get(f"{split}_scenes"),
                               cache=bool(data.synthetic.get("cache_scenes", False)), background=data.background)
    if not data.root:
        raise ConfigError(f"data.root is not set: give the {data.dataset} root in the config or "
                          "with --data-root")
    return open_split(data.dataset, data.root, split)


def training_set(run: RunConfig) -> GZS3TrainingSet:
    """Augmented seen-class crops of the train split (inductive GZS3)."""
    data = run.data
    mean = run.model.pixel_mean
    augmentation = TrainAugmentation(data.crop_size, tuple(data.scale_range), data.ignore_index,
                                     tuple(int(round(m)) for m in mean), data.photometric_distortion)
    return GZS3TrainingSet(open_source(data, "train"), augmentation, mean, run.model.pixel_std,
                           data.drop_images_without_seen, run.train.seed)


def evaluation_set(run: RunConfig, split: str | None = None) -> GZS3EvaluationSet:
    """Full images with all-class targets of the eval split."""
    data = run.data
    return GZS3EvaluationSet(open_source(data, split or run.eval.split), data.crop_size,
                             run.model.pixel_mean, run.model.pixel_std, data.ignore_index,
                             run.eval.max_images)
