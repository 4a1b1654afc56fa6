"""Test-time augmentation (zs3_core/datasets/test_time_augmentation.py): which views the model
sees, that mirrored predictions are mirrored back, and that the defaults change nothing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_datasets import pointwise_model
from training.config import build_run_config
from zs3_core.config import ConfigError
from zs3_core.datasets.sliding import slide_predict, whole_predict
from zs3_core.datasets.test_time_augmentation import augmented_predict


class RecordingModel:
    """`pointwise_model` plus a left-to-right ramp on class 0 (so a mirror image scores
    differently), recording the size of every input it is given."""

    def __init__(self, ramp: float = 0.0):
        self.ramp = ramp
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(images.shape[-2:]))
        weight = torch.arange(12, dtype=torch.float32).view(4, 3, 1, 1) / 10
        logits = F.conv2d(images, weight)
        logits[:, 0] += self.ramp * torch.linspace(-1, 1, images.shape[-1])
        return logits.softmax(dim=1)


def test_the_defaults_are_exactly_one_plain_prediction():
    image = torch.randn(1, 3, 40, 56)
    assert torch.equal(augmented_predict(pointwise_model, image, "whole", 32, 32), whole_predict(pointwise_model, image, 32))
    assert torch.equal(augmented_predict(pointwise_model, image, "slide", 32, 20), slide_predict(pointwise_model, image, 32, 20))


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_mirrored_predictions_are_mirrored_back(mode):
    # a per-pixel model is mirror-equivariant: the flipped view, flipped back, is the plain one
    image = torch.randn(1, 3, 40, 56)
    plain = augmented_predict(pointwise_model, image, mode, 32, 20)
    assert torch.allclose(augmented_predict(pointwise_model, image, mode, 32, 20, flip=True), plain, atol=1e-6)


def test_flip_averages_the_view_and_its_mirror_image():
    image = torch.randn(1, 3, 32, 32)
    model = RecordingModel(ramp=3.0)
    expected = (model(image) + model(image.flip(-1)).flip(-1)) / 2
    averaged = augmented_predict(model, image, "whole", 32, 32, flip=True)
    assert torch.allclose(averaged, expected, atol=1e-6)
    assert not torch.allclose(averaged, model(image), atol=1e-2)       # the ramp made the views differ
    assert torch.allclose(averaged.sum(1), torch.ones(1, 32, 32), atol=1e-5)   # still a distribution


def test_scales_set_the_whole_window_or_rescale_the_image_for_sliding():
    image = torch.randn(1, 3, 40, 50)
    model = RecordingModel()
    whole = augmented_predict(model, image, "whole", 32, 32, scales=(1.0, 1.5), flip=True)
    assert whole.shape == (1, 4, 40, 50) and whole.dtype == torch.float32
    assert model.sizes == [(32, 32), (32, 32), (48, 48), (48, 48)]
    model.sizes.clear()
    slide = augmented_predict(model, image, "slide", 32, 32, scales=(2.0,))
    assert slide.shape == (1, 4, 40, 50)
    assert model.sizes == [(32, 32)] * 12           # the 80 × 100 image: 3 × 4 windows of 32
    # a per-pixel model barely depends on the scale: the average stays near the plain prediction
    assert (slide - pointwise_model(image)).abs().mean() < 0.05


def test_bad_scales_are_refused_by_the_function_and_the_config():
    with pytest.raises(ValueError, match="test-time scales"):
        augmented_predict(pointwise_model, torch.randn(1, 3, 8, 8), "whole", 8, 8, scales=())
    for scales in ([], [1.0, 0.0]):
        with pytest.raises(ConfigError, match="eval.test_time_scales"):
            build_run_config({"model": {"name": "clip_baseline", "clip": "tiny"},
                              "eval": {"test_time_scales": scales}})
