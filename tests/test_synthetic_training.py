"""A short LDVC run on the synthetic world must learn: seen mIoU and pixel accuracy well above
the untrained model's and chance. A broken loss, label mapping or class-embedding path leaves
them at chance, and then CI fails, although every unit test of the parts may still pass.

Starts from the shipped tiny CLIP (checkpoints/synthetic/) and trains with the same config as
the shipped LDVC. The schedule is shortened to a few hundred steps so that it completes.
"""
from __future__ import annotations

from training.config import load_run_config
from training.evaluate import evaluate_model
from training.train import train
from zs3_core.config import REPO_ROOT
from zs3_core.models import build_model

CONFIG = REPO_ROOT / "config" / "models" / "ldvc_synthetic.yaml"
CLIP = REPO_ROOT / "checkpoints" / "synthetic" / "tiny_clip.safetensors"
STEPS = 300
VAL_SCENES = 120


def test_a_few_hundred_ldvc_steps_lift_seen_miou_well_above_chance(tmp_path):
    run = load_run_config(CONFIG, out_dir=str(tmp_path), overrides=[
        f"model.clip_weights={CLIP}", f"train.iterations={STEPS}", "train.warmup_iters=30",
        "train.checkpoint_every=0", "train.log_every=50", f"data.synthetic.val_scenes={VAL_SCENES}",
        "data.num_workers=0"])   # no forked loader: earlier tests leave DDS/OpenMP threads in this process
    model = build_model(run.model)
    before = evaluate_model(model, run, progress=False).summary
    result = train(run, model=model)
    after = evaluate_model(model, run, progress=False).summary

    assert result.steps[-1] == STEPS
    # Measured (2-core CPU, the 800-step tiny CLIP at temperature 0.02, loss_stride 8, CLIP frozen,
    # about 80 s): pAcc 3.8 % → 28.1 %, mIoU(seen) 1.6 % → 14.1 %. With the last 3 CLIP blocks
    # fine-tuned as the config now does, it passes in 195 s of training on a slower AVX-512 CPU.
    # A scrambled label mapping or a dead loss stays near chance.
    chance = 1 / 36                                  # 36 classes, argmax over all of them
    assert after["pAcc"] >= max(4 * chance, before["pAcc"] + 0.08), (before, after)
    assert after["mIoU_seen"] >= max(0.04, 5 * before["mIoU_seen"]), (before, after)
