"""The shipped synthetic-world models (checkpoints/synthetic/), which are the embedded default.

`Segmenter.from_config()`, `zs3 segment`, the node and `make demo` run them when given no
model. These tests check that the bundle loads, that it is the default, and that it fits its
size budget. Re-evaluated here, LDVC must still reach the validation metrics recorded in its
model card: a change in preprocessing, the text side or the decoder that silently degrades
the model fails CI.
"""
from __future__ import annotations

import json
import time

import pytest

from training.config import load_run_config
from training.evaluate import evaluate_model
from zs3_core import Segmenter
from zs3_core.config import DEFAULT_MODEL_CONFIG, REPO_ROOT
from zs3_core.models import build_model
from zs3_core.synthetic import SyntheticWorld

SHIPPED = REPO_ROOT / "checkpoints" / "synthetic"
SUMMARY = ("mIoU_seen", "mIoU_unseen", "hIoU")


def test_the_shipped_weights_fit_the_30_mb_budget():
    files = sorted(SHIPPED.glob("*.safetensors"))
    assert [f.name for f in files] == ["deop.safetensors", "ldvc.safetensors", "tiny_clip.safetensors"]
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20


def test_the_default_segmenter_is_the_shipped_ldvc_and_names_unseen_classes():
    seg = Segmenter.from_config()
    assert DEFAULT_MODEL_CONFIG == SHIPPED / "ldvc.yaml"
    assert seg.config.name == "ldvc"
    assert seg.config.checkpoint == str((SHIPPED / "ldvc.safetensors").resolve())
    world = SyntheticWorld()
    vocab = seg.encode_vocabulary(world.class_names)
    result = seg.segment(world.scene(0).image, vocab)
    assert result.labels.shape == world.scene(0).labels.shape


@pytest.mark.parametrize("name", ["ldvc"])
def test_the_shipped_model_reproduces_its_recorded_validation_metrics(name):
    recorded = json.loads((SHIPPED / f"metrics_{name}.json").read_text())
    run = load_run_config(SHIPPED / f"{name}.yaml")
    assert recorded["num_images"] == run.data.synthetic["val_scenes"] >= 500
    started = time.perf_counter()
    result = evaluate_model(build_model(run.model), run, progress=False)
    minutes = (time.perf_counter() - started) / 60
    for key in SUMMARY:
        assert abs(100 * result.summary[key] - 100 * recorded["summary"][key]) <= 2.0, key
    assert minutes < 3, f"evaluation took {minutes:.1f} min"
    if "whole_frame" in recorded:   # a bundle trained with "background": what the node publishes
        whole = result.whole_frame
        assert whole["threshold_source"].startswith("calibrated"), "the threshold comes from the checkpoint"
        for key in ("background_unlabeled", "mIoU_unseen"):
            assert abs(100 * whole[key] - 100 * recorded["whole_frame"][key]) <= 2.0, key
