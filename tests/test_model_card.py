"""scripts/write_model_card.py: the card is regenerated from the bundle's own files, so its
numbers, machines and fine-tuning sentence must follow those files, never stale text."""
from __future__ import annotations

import importlib.util
import json
import shutil

import yaml

from zs3_core.config import REPO_ROOT

SHIPPED = REPO_ROOT / "checkpoints" / "synthetic"


def write_model_card():
    spec = importlib.util.spec_from_file_location("write_model_card", REPO_ROOT / "scripts" / "write_model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model_card


def bundle_without_weights(tmp_path):
    """The shipped bundle's configs and metrics, with a 1-byte stand-in for each weight file."""
    for path in SHIPPED.iterdir():
        if path.suffix in (".yaml", ".json"):
            shutil.copy(path, tmp_path / path.name)
    for name in ("tiny_clip", "ldvc", "deop"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"x")
    return tmp_path


def test_the_card_reports_each_stage_machine_and_flags_a_mixed_chain(tmp_path):
    bundle = bundle_without_weights(tmp_path)
    (bundle / "timings.tsv").write_text("pretrain\t1200\n"
                                        "train_ldvc\t600\t2 cores, AVX-512, no bf16\n"
                                        "eval\t30\t2 cores, AVX-512, no bf16\n")
    card = write_model_card()(bundle)
    assert "| tiny CLIP pre-training | 20.0 | not recorded |" in card
    assert "| LDVC training | 10.0 | 2 cores, AVX-512, no bf16 |" in card
    assert "**30.5**" in card and "ran on different machines" in card

    (bundle / "timings.tsv").write_text("pretrain\t60\t2 cores, AVX2, no bf16\neval\t60\t2 cores, AVX2, no bf16\n")
    assert "ran on different machines" not in write_model_card()(bundle)


def test_the_card_says_which_models_fine_tune_clip_and_takes_metrics_from_the_files(tmp_path):
    bundle = bundle_without_weights(tmp_path)
    (bundle / "timings.tsv").write_text("pretrain\t60\n")
    config = yaml.safe_load((bundle / "deop.yaml").read_text())
    config["model"].setdefault("options", {}).update(finetune_vision_blocks=2, finetune_lr_scale=0.5)
    (bundle / "deop.yaml").write_text(yaml.safe_dump(config))
    metrics = json.loads((bundle / "metrics_deop.json").read_text())
    metrics["summary"]["hIoU"] = 0.4321
    (bundle / "metrics_deop.json").write_text(json.dumps(metrics))

    card = write_model_card()(bundle)
    assert "DeOP fine-tunes CLIP's last 2 image blocks at 0.5 × its learning rate" in card
    deop_row = next(line for line in card.splitlines() if line.startswith("| DeOP |"))
    assert "| 43.2 |" in deop_row


def test_the_card_names_the_stages_that_train_in_fp32_from_their_configs(tmp_path):
    bundle = bundle_without_weights(tmp_path)
    (bundle / "timings.tsv").write_text("pretrain\t60\n")
    for name, amp in (("pretrain.yaml", False), ("ldvc.yaml", True), ("deop.yaml", False)):
        config = yaml.safe_load((bundle / name).read_text())
        config.setdefault("train", {})["amp"] = amp
        (bundle / name).write_text(yaml.safe_dump(config))

    card = write_model_card()(bundle)
    assert "pre-training and DeOP run in fp32 on every CPU" in card.replace("Pre-training", "pre-training")
    assert "LDVC uses `train.amp: true`" in card


def test_test_time_augmentation_rows_follow_their_metrics_files(tmp_path):
    bundle = bundle_without_weights(tmp_path)
    (bundle / "timings.tsv").write_text("pretrain\t60\n")
    for name in ("baseline", "deop", "ldvc"):
        (bundle / f"metrics_{name}_tta.json").unlink(missing_ok=True)
    assert "test-time augmentation:" not in write_model_card()(bundle)

    metrics = json.loads((bundle / "metrics_ldvc.json").read_text())
    metrics["protocol"] = {"eval_mode": "whole", "test_time_scales": [1.0, 1.5], "test_time_flip": True}
    metrics["summary"]["hIoU"] = 0.7189
    (bundle / "metrics_ldvc_tta.json").write_text(json.dumps(metrics))
    card = write_model_card()(bundle)
    row = next(line for line in card.splitlines() if "test-time augmentation" in line)
    assert row.startswith("| LDVC, test-time augmentation: both mirror images, scales 1 and 1.5 |")
    assert "| 71.9 |" in row
