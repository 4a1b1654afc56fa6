"""GZS3 evaluation: the shared ConfusionMatrix gives the same numbers as a from-scratch
count on the same predictions; reports are written as JSON, Markdown and a PNG chart."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from test_datasets import write_voc_root
from test_training import TinySegmenter, tiny_config
from training.config import build_run_config
from training.data import evaluation_set
from training.evaluate import evaluate_model, write_report
from zs3.cli import main as zs3_main
from zs3_core.config import REPO_ROOT
from zs3_core.datasets.splits import VOC_SPLIT


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    # 32×32 images at crop 32: no resize, so predictions are the model's own per-pixel argmax
    return write_voc_root(tmp_path_factory.mktemp("voc"), train_ids=1, val_ids=4, size=(32, 32),
                          class_sets=[(0, 16), (3, 18), (15, 7), (19, 2), (5, 12)])


def independent_gzs3(preds, targets, seen, unseen, num_classes=20):
    """IoU per class from explicit pixel sets, no confusion matrix."""
    valid = [t != 255 for t in targets]
    iou = []
    for c in range(num_classes):
        tp = sum(int(((p == c) & (t == c) & v).sum()) for p, t, v in zip(preds, targets, valid))
        fp = sum(int(((p == c) & (t != c) & v).sum()) for p, t, v in zip(preds, targets, valid))
        fn = sum(int(((p != c) & (t == c)).sum()) for p, t in zip(preds, targets))
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    iou = np.array(iou)
    s, u = np.nanmean(iou[list(seen)]), np.nanmean(iou[list(unseen)])
    correct = sum(int(((p == t) & v).sum()) for p, t, v in zip(preds, targets, valid))
    return iou, {"mIoU_seen": s, "mIoU_unseen": u, "hIoU": 2 * s * u / (s + u),
                 "pAcc": correct / sum(int(v.sum()) for v in valid)}


def test_metrics_agree_with_an_independent_count(voc_root, tmp_path):
    run = build_run_config(tiny_config(voc_root, tmp_path))
    model = TinySegmenter()
    result = evaluate_model(model, run, progress=False)
    ev = evaluation_set(run)
    embeddings = model.encode_classes(VOC_SPLIT.class_names, run.model.prompt_template)
    preds, targets = [], []
    with torch.no_grad():
        for i in range(len(ev)):
            image, target = ev[i]
            probs = model.predict(image[None], embeddings)
            probs = torch.nn.functional.interpolate(probs, size=target.shape, mode="bilinear")
            preds.append(probs.argmax(1)[0].numpy())
            targets.append(target.numpy())
    iou, summary = independent_gzs3(preds, targets, VOC_SPLIT.seen_ids, VOC_SPLIT.unseen_ids)
    assert result.num_images == 4
    np.testing.assert_allclose(result.iou, iou, equal_nan=True)
    for key, value in summary.items():
        assert result.summary[key] == pytest.approx(value)


def test_test_time_augmentation_scores_the_averaged_views(voc_root, tmp_path):
    config = tiny_config(voc_root, tmp_path)
    config["eval"] = {"test_time_scales": [1.0, 1.5], "test_time_flip": True}
    run = build_run_config(config)
    model = TinySegmenter()
    result = evaluate_model(model, run, progress=False)
    ev = evaluation_set(run)
    embeddings = model.encode_classes(VOC_SPLIT.class_names, run.model.prompt_template)
    preds, targets = [], []
    with torch.no_grad():
        for i in range(len(ev)):
            image, target = ev[i]
            views = []
            for size in (32, 48):          # crop 32 at scales 1.0 and 1.5, each also mirrored
                for flip in (False, True):
                    x = torch.nn.functional.interpolate(image[None], size=(size, size), mode="bilinear")
                    probs = model.predict(x.flip(-1) if flip else x, embeddings)
                    probs = torch.nn.functional.interpolate(probs, size=image.shape[-2:], mode="bilinear")
                    views.append(probs.flip(-1) if flip else probs)
            probs = torch.nn.functional.interpolate(sum(views) / 4, size=target.shape, mode="bilinear")
            preds.append(probs.argmax(1)[0].numpy())
            targets.append(target.numpy())
    _, summary = independent_gzs3(preds, targets, VOC_SPLIT.seen_ids, VOC_SPLIT.unseen_ids)
    for key, value in summary.items():
        assert result.summary[key] == pytest.approx(value)
    plain = evaluate_model(model, build_run_config(tiny_config(voc_root, tmp_path)), progress=False)
    assert plain.summary != result.summary          # the views changed some predictions


def test_seen_score_offset_moves_predictions_to_unseen_classes(voc_root, tmp_path):
    config = tiny_config(voc_root, tmp_path)
    config["eval"] = {"seen_score_offset": 1.0}   # softmax scores ≤ 1: seen classes never win
    result = evaluate_model(TinySegmenter(), build_run_config(config), progress=False)
    assert result.summary["mIoU_seen"] == 0.0


def test_report_is_json_markdown_and_a_bar_chart(voc_root, tmp_path):
    result = evaluate_model(TinySegmenter(), build_run_config(tiny_config(voc_root, tmp_path)), progress=False)
    paths = write_report(result, tmp_path / "eval")
    data = json.loads(paths["json"].read_text())
    assert set(data["summary"]) == {"mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc"}
    assert len(data["per_class_iou"]) == 20 and data["unseen_classes"][0] == "pottedplant"
    markdown = paths["markdown"].read_text()
    assert "| mIoU_seen | mIoU_unseen | hIoU | mIoU | pAcc |" in markdown and "| sheep | unseen |" in markdown
    assert cv2.imread(str(paths["plot"])).shape[2] == 3


def test_zs3_eval_runs_the_training_free_baseline_on_a_dataset(voc_root, tmp_path, capsys):
    """`zs3 eval CONFIG` end to end (no checkpoint: the baseline needs none)."""
    config = yaml.safe_load((REPO_ROOT / "config/models/clip_baseline_tiny.yaml").read_text())
    size = config["model"]["input_size"]
    config["data"] = {"dataset": "voc", "crop_size": size, "slide_stride": size, "num_workers": 0}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    code = zs3_main(["eval", str(tmp_path / "run.yaml"), "--data-root", str(voc_root),
                     "--out", str(tmp_path / "report"), "--max-images", "2"])
    assert code == 0
    assert "| mIoU_seen |" in capsys.readouterr().out
    assert json.loads((tmp_path / "report/metrics.json").read_text())["num_images"] == 2


def test_whole_mode_feeds_the_model_at_its_serving_size_and_images_selects_scenes(voc_root, tmp_path):
    """A model served at another size than its training crop (model.input_size 48, crop 32) is
    scored as the Segmenter feeds it; `images` scores those images alone."""
    config = tiny_config(voc_root, tmp_path)
    config["model"]["input_size"] = 48
    run = build_run_config(config)
    model = TinySegmenter()
    result = evaluate_model(model, run, progress=False, images=range(1, 3))
    ev = evaluation_set(run)
    embeddings = model.encode_classes(VOC_SPLIT.class_names, run.model.prompt_template)
    preds, targets = [], []
    with torch.no_grad():
        for i in (1, 2):
            image, target = ev[i]
            x = torch.nn.functional.interpolate(image[None], size=(48, 48), mode="bilinear")
            probs = torch.nn.functional.interpolate(model.predict(x, embeddings), size=image.shape[-2:],
                                                    mode="bilinear")
            probs = torch.nn.functional.interpolate(probs, size=target.shape, mode="bilinear")
            preds.append(probs.argmax(1)[0].numpy())
            targets.append(target.numpy())
    _, summary = independent_gzs3(preds, targets, VOC_SPLIT.seen_ids, VOC_SPLIT.unseen_ids)
    assert result.num_images == 2
    for key, value in summary.items():
        assert result.summary[key] == pytest.approx(value)
    at_crop = evaluate_model(model, build_run_config(tiny_config(voc_root, tmp_path)), progress=False,
                             images=range(1, 3))
    assert at_crop.summary != result.summary      # 32 and 48 are different views


def test_a_shipped_config_states_its_serving_size(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("ship_config", REPO_ROOT / "scripts" / "ship_config.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    source = (REPO_ROOT / "config" / "models" / "ldvc_synthetic.yaml").read_text()
    shipped = yaml.safe_load(ship.ship_config(source, "clip.safetensors", "ldvc.safetensors", input_size=192))
    assert shipped["model"]["input_size"] == 192 and shipped["data"]["crop_size"] == 128
    assert shipped["model"]["checkpoint"] == "ldvc.safetensors"
    plain = yaml.safe_load(ship.ship_config(source, "clip.safetensors", "ldvc.safetensors"))
    assert plain["model"]["input_size"] == 128
