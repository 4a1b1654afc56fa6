"""Write MODEL_CARD.md for a shipped synthetic-world bundle from the files the run left there.

Usage: python scripts/write_model_card.py [checkpoints/synthetic]

Every number comes from the bundle: metrics_{baseline,ldvc,deop}[_tta].json (`zs3 eval`, single-scale
and with test-time augmentation), open_set_{baseline,ldvc,deop}.json (training/open_set_calibration.py),
metrics_pretrain.json (`zs3 pretrain`), timings.tsv (scripts/train_synthetic_models.sh) and
the shipped configs (seeds, iterations). Regenerating the bundle therefore regenerates the card.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml

TARGETS = {"ldvc": "hIoU ≥ 70, mIoU(unseen) ≥ 60", "deop": "hIoU ≥ 60", "baseline": "reported beside them"}
METHODS = (("baseline", "clip_baseline.yaml", "training-free CLIP baseline"),
           ("deop", "deop.yaml", "DeOP"), ("ldvc", "ldvc.yaml", "LDVC"))
STAGES = {"pretrain": "tiny CLIP pre-training", "train_ldvc": "LDVC training",
          "train_deop": "DeOP training", "calibrate": "open-set calibration of all three (200 scenes each)",
          "eval": "evaluation of all three (500 scenes each)",
          "eval_tta": "the same with test-time augmentation"}


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def views_clause(protocol: dict) -> str:
    """", mirrored, scales 1.0 and 1.5" for test-time augmentation; "" for one plain view."""
    scales = protocol.get("test_time_scales") or [1.0]
    parts = (["both mirror images"] if protocol.get("test_time_flip") else []) + \
        ([f"scales {' and '.join(f'{v:g}' for v in scales)}"] if list(scales) != [1.0] else [])
    return f", test-time augmentation: {', '.join(parts)}" if parts else ""


def finetuning_sentence(bundle: Path) -> str:
    """Which shipped models also trained CLIP's last image blocks (models/vision_finetuning.py)."""
    parts = []
    for _, config_name, title in METHODS[1:]:
        options = yaml.safe_load((bundle / config_name).read_text())["model"].get("options") or {}
        if options.get("finetune_vision_blocks", 0):
            parts.append(f"{title} fine-tunes CLIP's last {options['finetune_vision_blocks']} image blocks "
                         f"at {options.get('finetune_lr_scale', 0.1)} × its learning rate")
    return ("; ".join(parts) + " (stored in its own file; the tiny CLIP file stays as pre-trained).") if parts \
        else "CLIP stays frozen in both models, as in the papers."


def dense_alignment_clause(pretrain_config: dict) -> str:
    """The pre-training loss beyond CLIP's, if any (training/pretrain.py `severed_patch_embedding`)."""
    weight = (pretrain_config.get("train") or {}).get("dense_alignment_weight", 0)
    return (f" (CLIP's contrastive loss plus {weight} × the same loss on the mean severed patch feature, "
            "which aligns the patch features DeOP and the baseline classify)") if weight else ""


def precision_sentence(stage_configs: dict[str, dict], pretrain_metrics: dict) -> str:
    """Which stages train in bf16 where they can (`train.amp`, training/precision.py) and which in fp32."""
    def amp(config):
        return (config.get("train") or {}).get("amp", True)

    mixed = [name for name, config in stage_configs.items() if amp(config)]
    fp32 = [name for name, config in stage_configs.items() if not amp(config)]
    parts = []
    if fp32:
        parts.append(f"{' and '.join(fp32)} {'runs' if len(fp32) == 1 else 'run'} in fp32 on every CPU "
                     "(`train.amp: false`; the config says why)")
    if mixed:
        parts.append(f"{' and '.join(mixed)} {'uses' if len(mixed) == 1 else 'use'} `train.amp: true`: bf16 "
                     "autocast on a CPU with native bf16, fp32 on any other (training/precision.py), "
                     "as the machine column says")
    recorded = pretrain_metrics.get("precision") if amp(stage_configs["pre-training"]) else None
    sentence = "; ".join(parts) + (f". Pre-training ran in {recorded}." if recorded else ".")
    return sentence[0].upper() + sentence[1:]


def whole_frame_lines(bundle: Path) -> list[str]:
    """What a user sees through the segmenter: background and low-scoring pixels unlabeled."""
    rows = []
    for key, _, title in METHODS:
        path = bundle / f"metrics_{key}.json"
        whole = json.loads(path.read_text()).get("whole_frame") if path.exists() else None
        if whole:
            rows.append(f"| {title} | {whole['threshold']:.3f} | {pct(whole['background_unlabeled'])} | "
                        f"{pct(whole['mIoU_seen'])} | {pct(whole['mIoU_unseen'])} | "
                        f"{pct(whole['object_pixels_on_background'])} |")
    if not rows:
        return []
    return ["", "Whole frame, as the node publishes it (all 36 classes and \"background\" in the vocabulary; "
            "\"background\" and pixels below the open-set threshold unlabeled; an object's IoU counts every "
            "pixel predicted as it, background included):", "",
            "| method | open-set threshold | background unlabeled (%) | mIoU(seen) | mIoU(unseen) | "
            "object predictions on background (%) |", "|---|---|---|---|---|---|", *rows]


def open_set_lines(bundle: Path) -> list[str]:
    """The calibrated open-set rule of each method (docs/open_set.md)."""
    rows = []
    for key, _, title in METHODS:
        path = bundle / f"open_set_{key}.json"
        if path.exists():
            rule = json.loads(path.read_text())
            c = rule["calibration"]
            rows.append(f"| {title} | {rule['threshold']:.3f} | {c['auroc']:.3f} | {pct(c['named_kept'])} | "
                        f"{pct(c['unnamed_unlabeled'])} |")
    if not rows:
        return []
    return ["", "## Open set (docs/open_set.md)", "",
            "Calibrated on validation scenes 300-499 with half of the object classes present left out of the "
            "vocabulary: the threshold keeps 95 % of the named-object pixels that \"background\" leaves; AUROC of "
            "named vs unnamed "
            "object pixels under the top-probability score.", "",
            "| method | threshold | AUROC | named-object pixels kept (%) | unnamed-object pixels unlabeled (%) |",
            "|---|---|---|---|---|", *rows]


def serving_sizes_sentence(bundle: Path) -> str:
    """Which input size each model is evaluated (and served) at: its shipped `model.input_size`,
    beside the training crop where they differ."""
    parts = []
    for key, config_name, title in METHODS:
        config = yaml.safe_load((bundle / config_name).read_text())
        size, crop = config["model"]["input_size"], config["data"]["crop_size"]
        trained = f" (trained on {crop}×{crop} crops)" if size != crop and key != "baseline" else ""
        parts.append(f"{title} {size}×{size}{trained}")
    return ("Each model sees a scene at the input size it is served at (`model.input_size` of its "
            "config): " + ", ".join(parts) + " (docs/synthetic_world.md#why-the-shipped-ldvc-is-served-at-192-pixels).")


def model_card(bundle: Path) -> str:
    pretrain = json.loads((bundle / "metrics_pretrain.json").read_text())
    timings = [line.split("\t") for line in (bundle / "timings.tsv").read_text().splitlines() if line]
    minutes = {fields[0]: int(fields[1]) / 60 for fields in timings}
    machines = {fields[0]: fields[2] if len(fields) > 2 else "not recorded" for fields in timings}
    ldvc = yaml.safe_load((bundle / "ldvc.yaml").read_text())
    deop = yaml.safe_load((bundle / "deop.yaml").read_text())
    pretrain_config = yaml.safe_load((bundle / "pretrain.yaml").read_text())
    lines = [
        "# Model card: the synthetic-world models (embedded default)",
        "",
        "A tiny CLIP pre-trained from scratch on captioned synthetic scenes. LDVC and DeOP were then "
        "trained on top of it, on the 30 **seen** colour-shape classes only, plus \"background\" "
        "(so they can say \"none of these objects\"). All of it runs on a "
        "2-core CPU with no downloads. `Segmenter.from_config()`, `zs3 segment`, the ROS node and "
        "`make demo` use `ldvc.yaml` by default.",
        "",
        "**Intended use:** proof that the whole pipeline learns and transfers to unseen classes, "
        "and a reference for tests. These models know only the 36 synthetic classes; they are "
        "not for real camera images.",
        "",
        "## Results (GZS3, 500 fixed validation scenes, world seed 0, unseen = "
        + ", ".join(json.loads((bundle / "metrics_ldvc.json").read_text())["unseen_classes"]) + ")",
        "",
        "The GZS3 metrics keep the papers' convention: background pixels are ignored, and a "
        "\"background\" prediction on an object is a miss. " + serving_sizes_sentence(bundle),
        "",
        "| method | mIoU(seen) | mIoU(unseen) | hIoU | pAcc | target |",
        "|---|---|---|---|---|---|",
    ]
    for key, _, title in METHODS:
        for suffix in ("", "_tta"):
            path = bundle / f"metrics_{key}{suffix}.json"
            if not path.exists():
                continue
            metrics = json.loads(path.read_text())
            s = metrics["summary"]
            lines.append(f"| {title}{views_clause(metrics.get('protocol') or {})} | {pct(s['mIoU_seen'])} | "
                         f"{pct(s['mIoU_unseen'])} | {pct(s['hIoU'])} | {pct(s['pAcc'])} | {TARGETS[key]} |")
    lines += whole_frame_lines(bundle) + open_set_lines(bundle)
    lines += [
        "",
        f"Tiny CLIP zero-shot probe (single-object scenes, top-1 among 36 names): seen "
        f"{pct(pretrain['zero_shot_acc_seen'])} %, unseen {pct(pretrain['zero_shot_acc_unseen'])} % "
        f"(chance 2.8 %).",
        "",
        "## How they were made (reproduce with one command)",
        "",
        "```bash",
        "source scripts/env.sh",
        "scripts/train_synthetic_models.sh runs/synthetic --ship   # pretrain → LDVC → DeOP → calibrate → eval → this folder",
        "```",
        "",
        "The script runs these commands in order:",
        "",
        "```bash",
        "zs3 pretrain config/pretrain/tiny_clip_synthetic.yaml --out runs/synthetic/pretrain",
        "zs3 train config/models/ldvc_synthetic.yaml --out runs/synthetic/ldvc --set model.clip_weights=runs/synthetic/pretrain/clip.safetensors",
        "zs3 train config/models/deop_synthetic.yaml --out runs/synthetic/deop --set model.clip_weights=runs/synthetic/pretrain/clip.safetensors",
        "python -m training.open_set_calibration config/models/ldvc_synthetic.yaml --checkpoint runs/synthetic/ldvc/checkpoints/step_0003000.safetensors --set model.clip_weights=runs/synthetic/pretrain/clip.safetensors --write",
        "zs3 eval checkpoints/synthetic/ldvc.yaml    # likewise deop.yaml, clip_baseline.yaml",
        "zs3 eval checkpoints/synthetic/ldvc.yaml --set 'eval.test_time_scales=[1.0, 1.5]' --set eval.test_time_flip=true",
        "```",
        "",
        f"Seeds: pre-training world {pretrain_config['data']['world']['seed']} (training seed "
        f"{pretrain_config['train']['seed']}), segmentation world {ldvc['data']['synthetic']['world']['seed']} "
        f"(train scenes 0…{ldvc['data']['synthetic']['train_scenes'] - 1}, val scenes from index 1,000,000), "
        f"training seed {ldvc['train']['seed']}. Pre-training: {pretrain['steps']} steps"
        + dense_alignment_clause(pretrain_config) + f"; LDVC: {ldvc['train']['iterations']} iterations × batch "
        f"{ldvc['train']['batch_size']}; DeOP: {deop['train']['iterations']} × {deop['train']['batch_size']}. "
        + precision_sentence({"pre-training": pretrain_config, "LDVC": ldvc, "DeOP": deop}, pretrain) + " "
        + finetuning_sentence(bundle),
        "",
        "| stage | minutes | machine |",
        "|---|---|---|",
    ]
    for name, value in minutes.items():
        lines.append(f"| {STAGES.get(name, name)} | {value:.1f} | {machines[name]} |")
    lines.append(f"| **total** | **{sum(minutes.values()):.1f}** | |")
    if len(set(machines.values())) > 1:
        lines += ["", "The stages ran on different machines (a resumed chain, see "
                  "scripts/train_synthetic_models.sh); the total mixes their speeds."]
    lines += ["", "## Files", "", "| file | MiB | sha256 (first 16) |", "|---|---|---|"]
    for path in sorted(bundle.glob("*.safetensors")):
        lines.append(f"| {path.name} | {path.stat().st_size / 2**20:.1f} | {sha256(path)} |")
    lines += ["", "Each `*.yaml` is a complete run config. Its `model.clip_weights` and `model.checkpoint` "
              "are relative to this folder, so `zs3 eval` and `Segmenter.from_config` take it as is.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/synthetic")
    (folder / "MODEL_CARD.md").write_text(model_card(folder))
    print(f"wrote {folder / 'MODEL_CARD.md'}")
