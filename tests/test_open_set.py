"""Background classes and the open-set rule: published as unlabeled, left out of per-class
summaries, the calibrated threshold stored in and read from the checkpoint, and vocabularies
without a background class served as before. Real Segmenter (tiny CLIP), real checkpoints,
real node over DDS."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from zs3_core import Segmenter
from zs3_core import open_set
from zs3_core.config import load_model_config
from zs3_core.metrics import ConfusionMatrix
from zs3_core.model_checkpoint import read_checkpoint_info, save_model_checkpoint
from zs3_core.models import build_model
from zs3_core.bags.conversions import image_to_numpy
from zs3_ros.synthetic_camera import moving_shapes, running_segmenter

VOCABULARY = ["red circle", "green square", "background"]
BACKGROUND = 2


def save_tiny_clip(folder: Path) -> Path:
    """Seeded random tiny-CLIP weights in a file, so every process builds the same model."""
    from zs3_core.clip import CLIP, ClipConfig

    torch.manual_seed(0)
    path = folder / "tiny_clip.pt"
    torch.save(CLIP(ClipConfig.tiny(image_size=128)).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def baseline_config(tmp_path_factory):
    """The training-free baseline on saved tiny-CLIP weights (the model the node loads too)."""
    folder = tmp_path_factory.mktemp("baseline")
    config = {"model": {"name": "clip_baseline", "clip": "tiny", "clip_weights": str(save_tiny_clip(folder)),
                        "input_size": 128, "prompt_template": "a photo of a {}."}}
    path = folder / "baseline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def frame():
    return next(iter(moving_shapes(1, size=(96, 128))))


def raw_segmenter(config) -> Segmenter:
    """The argmax labels with nothing unlabeled: the reference the rule is checked against."""
    seg = Segmenter.from_config(config, backend="torch")
    seg.background_classes = ()
    seg.set_unlabeled_threshold(0.0)
    return seg


@pytest.fixture(scope="module")
def raw(frame, baseline_config):
    seg = raw_segmenter(baseline_config)
    result = seg.segment(frame, seg.encode_vocabulary(VOCABULARY))
    counts = np.bincount(result.labels.ravel(), minlength=3)
    assert counts[BACKGROUND] > 0 and counts[:BACKGROUND].sum() > 0, "the frame must hold both kinds of pixel"
    return result


def test_background_pixels_are_unlabeled_and_left_out_of_the_summaries(frame, raw, baseline_config):
    seg = Segmenter.from_config(baseline_config, backend="torch")      # default background_classes
    result = seg.segment(frame, seg.encode_vocabulary(VOCABULARY))
    background = raw.labels == BACKGROUND
    assert (result.labels[background] == result.unlabeled_value).all()
    np.testing.assert_array_equal(result.labels[~background], raw.labels[~background])
    assert result.class_fraction[BACKGROUND] == 0 and result.class_confidence[BACKGROUND] == 0
    np.testing.assert_array_equal(result.class_fraction[:BACKGROUND], raw.class_fraction[:BACKGROUND])
    np.testing.assert_array_equal(result.class_confidence[:BACKGROUND], raw.class_confidence[:BACKGROUND])


def test_a_vocabulary_without_a_background_class_works_as_before(frame, baseline_config):
    seg = Segmenter.from_config(baseline_config, backend="torch")
    names = VOCABULARY[:BACKGROUND]
    result = seg.segment(frame, seg.encode_vocabulary(names))
    reference = raw_segmenter(baseline_config)
    expected = reference.segment(frame, reference.encode_vocabulary(names))
    np.testing.assert_array_equal(result.labels, expected.labels)
    assert (result.labels != result.unlabeled_value).all()
    assert result.class_fraction.sum() == pytest.approx(1.0)


def test_background_names_match_regardless_of_case_and_spacing():
    assert open_set.background_ids(["Background ", "cat", "sky"], ["background", "sky"]) == [0, 2]
    assert open_set.background_ids(["cat"], ["background"]) == []


def test_node_publishes_background_as_unlabeled_and_leaves_it_out_of_the_info(frame, raw, baseline_config):
    parameters = {"model_config": str(baseline_config), "classes": VOCABULARY, "backend": "torch",
                  "qos_reliability": "reliable"}
    with running_segmenter(parameters=parameters) as (node, client):
        outputs = client.wait_outputs(client.publish(frame), timeout=60)
        assert outputs is not None and outputs.info is not None, "the node published nothing"
        labels = image_to_numpy(outputs.labels)
    background = raw.labels == BACKGROUND
    assert (labels[background] == 255).all()
    np.testing.assert_array_equal(labels[~background], raw.labels[~background])
    info = outputs.info
    assert list(info.class_names) == VOCABULARY
    assert info.pixel_fraction[BACKGROUND] == 0 and info.class_confidence[BACKGROUND] == 0
    assert info.unlabeled_fraction == pytest.approx(background.mean(), abs=1e-6)


def write_checkpoint(tmp_path):
    """A real LDVC checkpoint (tiny random CLIP) and the config naming it."""
    config = {"model": {"name": "ldvc", "clip": "tiny", "clip_weights": str(save_tiny_clip(tmp_path)), "input_size": 128,
                        "prompt_template": "{}.",
                        "options": {"tap_layers": [3, 5], "windows_per_side": 4, "route_top_k": 4}}}
    config_path = tmp_path / "ldvc.yaml"
    config_path.write_text(yaml.safe_dump(config))
    model = build_model(load_model_config(config_path))
    return config_path, save_model_checkpoint(tmp_path / "ldvc.safetensors", model, config, step=7,
                                              extra={"note": "kept"})


def test_the_calibrated_threshold_is_stored_in_and_read_from_the_checkpoint(tmp_path):
    config_path, checkpoint = write_checkpoint(tmp_path)
    before = read_checkpoint_info(checkpoint)
    assert open_set.read_rule(checkpoint) is None
    assert Segmenter.from_config(config_path, checkpoint=str(checkpoint)).unlabeled_threshold == 0.0

    rule = open_set.OpenSetRule(0.4321, calibration={"auroc": 0.9})
    open_set.write_rule(checkpoint, rule)
    assert open_set.read_rule(checkpoint) == rule
    after = read_checkpoint_info(checkpoint)
    assert after["step"] == before["step"] and after["config"] == before["config"]
    assert after["extra"]["note"] == "kept"
    seg = Segmenter.from_config(config_path, checkpoint=str(checkpoint))
    assert seg.unlabeled_threshold == pytest.approx(0.4321) and "calibrated" in seg.threshold_source

    fixed = dataclasses.replace(load_model_config(config_path), checkpoint=str(checkpoint), unlabeled_threshold=0.1)
    assert Segmenter.from_config(fixed).unlabeled_threshold == 0.1            # the fixed value overrides
    assert seg.set_unlabeled_threshold(None) == pytest.approx(0.4321)        # and back to the calibrated one


def test_the_rule_leaves_low_scoring_pixels_unlabeled():
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    confidence = np.array([[0.9, 0.2], [0.95, 0.6]], np.float32)
    out = open_set.unlabel(labels, confidence, [2], 0.5, 255)
    np.testing.assert_array_equal(out, [[0, 255], [255, 1]])
    np.testing.assert_array_equal(labels, [[0, 1], [2, 1]])     # the input is left as it was


def test_auroc_counts_pairs_and_ties():
    rng = np.random.default_rng(0)
    named, unnamed = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)
    pairs = (named[:, None] > unnamed[None, :]).mean() + 0.5 * (named[:, None] == unnamed[None, :]).mean()
    assert open_set.auroc(named, unnamed) == pytest.approx(pairs)
    assert open_set.auroc(np.array([0.9]), np.array([0.1])) == 1.0


def test_the_calibrated_threshold_keeps_the_named_share():
    rng = np.random.default_rng(1)
    named = np.concatenate([rng.uniform(0, 1, 1000), -np.ones(200)])   # some already called background
    t = open_set.threshold_keeping(named, 0.95)
    left = named[named >= 0]                                            # what the background class leaves
    assert (left >= t).mean() >= 0.95
    assert (left >= np.nextafter(t, 2)).mean() < 0.95                   # and it is the largest such
    assert open_set.threshold_keeping(-np.ones(10), 0.95) == 0.0
    curve = open_set.roc(named, rng.uniform(0, 0.5, 500), [0.0, t])
    assert curve[0]["named_kept"] == pytest.approx(1000 / 1200)
    assert curve[1]["named_kept"] == pytest.approx((left >= t).mean() * 1000 / 1200)


def test_leaving_a_class_out_of_a_confusion_matrix_makes_its_predictions_misses():
    full = ConfusionMatrix(3, class_names=["a", "b", "background"])
    target = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 2, 1, 0, 2, 1])
    full.update(pred, target)
    objects = full.without([2])
    ignored = ConfusionMatrix(2)
    ignored.update(np.where(pred == 2, 255, pred), np.where(target == 2, 255, target))
    np.testing.assert_array_equal(objects.counts, ignored.counts)
    assert objects.class_names == ["a", "b"]
