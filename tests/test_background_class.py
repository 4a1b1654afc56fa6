"""The synthetic world's background as a seen class: labelled in the data, trained on, and
left out of the GZS3 metrics, which report the whole-frame view beside them."""
import numpy as np
import pytest

from training.config import load_run_config
from training.data import evaluation_set, training_set
from zs3_core.config import ConfigError
from zs3_core.datasets.synthetic import SyntheticScenes
from zs3_core.synthetic import BACKGROUND_NAME, IGNORE_INDEX

SMALL = ["data.synthetic.train_scenes=8", "data.synthetic.val_scenes=4", "data.synthetic.cache_scenes=false"]


def test_the_background_becomes_the_class_after_the_objects():
    ignored = SyntheticScenes(split="val", num_scenes=2)
    labelled = SyntheticScenes(split="val", num_scenes=2, background="class")
    _, before = ignored.load(0)
    _, after = labelled.load(0)
    background = before == IGNORE_INDEX
    assert background.any() and (after[background] == 36).all()
    np.testing.assert_array_equal(after[~background], before[~background])
    split = labelled.gzs3
    assert split.class_names[-1] == BACKGROUND_NAME and split.background_ids == (36,)
    assert 36 in split.seen_ids and 36 not in split.object_ids and 36 not in split.seen_object_ids
    assert ignored.gzs3.background_ids == () and len(ignored.gzs3.class_names) == 36


def test_models_train_on_it_as_a_seen_class():
    run = load_run_config("config/models/ldvc_synthetic.yaml", overrides=SMALL)
    data = training_set(run)
    assert data.class_names[-1] == BACKGROUND_NAME and len(data.class_names) == 31
    evaluation = evaluation_set(run)
    assert evaluation.source.gzs3.background_ids == (36,)


def test_a_background_class_is_refused_for_datasets_whose_readers_ignore_it():
    with pytest.raises(ConfigError, match="synthetic world only"):
        load_run_config("config/models/ldvc_vitb16_voc.yaml", overrides=["data.background=class"])
    with pytest.raises(ConfigError, match="'ignore' or 'class'"):
        load_run_config("config/models/ldvc_synthetic.yaml", overrides=["data.background=other"])


def test_evaluation_scores_objects_only_and_reports_the_whole_frame():
    from training.evaluate import evaluate_model
    from zs3_core.models import build_model

    run = load_run_config("config/models/ldvc_synthetic.yaml", overrides=SMALL + [
        "model.clip_weights=checkpoints/synthetic/tiny_clip.safetensors",
        "model.checkpoint=checkpoints/synthetic/ldvc.safetensors", "model.unlabeled_threshold=0.0"])
    result = evaluate_model(build_model(run.model), run, progress=False)
    assert BACKGROUND_NAME not in result.class_names and len(result.class_names) == 36
    assert len(result.seen_ids) == 30 and len(result.unseen_ids) == 6
    whole = result.whole_frame
    assert whole["threshold"] == 0.0 and whole["threshold_source"] == "model.unlabeled_threshold"
    assert 0 <= whole["background_unlabeled"] <= 1 and 0 <= whole["object_pixels_on_background"] <= 1
    assert BACKGROUND_NAME not in whole["per_class_iou"]
    # with no threshold the two views differ only by the predictions on background pixels,
    # which the whole frame counts: an object's IoU there can only be lower
    compared = [(iou, result.iou[result.class_names.index(name)]) for name, iou in whole["per_class_iou"].items()
                if iou is not None]
    assert compared and all(frame <= ignored + 1e-9 for frame, ignored in compared if not np.isnan(ignored))
    assert "Whole frame" in result.markdown() and "whole_frame" in result.to_dict()
