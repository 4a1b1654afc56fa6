"""DeOP's training stages (training/deop_stages.py, training/prompt_init.py): the prompt stage
sees seen-class crops only, the proposal stage trains the proposals alone, the full stage
leaves them untouched; and the real ViT-B/16 VOC config runs all stages from the command line."""
from __future__ import annotations

import subprocess
import sys

import torch

from test_datasets import write_voc_root
from test_deop import tiny_deop
from test_training import subprocess_env
from training.config import TrainConfig
from training.deop_stages import ProposalStage
from training.prompt_init import PromptLearningStage, seen_class_crops
from training.train import build_optimizer, latest_checkpoint_step
from zs3_core.config import REPO_ROOT

DEOP_VOC_CONFIG = REPO_ROOT / "config" / "models" / "deop_vitb16_voc.yaml"
NAMES = ["cat", "dog", "bird"]


def scene(batch: int = 2, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    images = torch.randn(batch, 3, size, size)
    labels = torch.full((batch, size, size), 255)
    labels[:, 10:50, 20:70] = 0
    labels[1, 70:120, 60:110] = 2
    return images, labels


def test_prompt_stage_crops_only_labelled_seen_pixels():
    """Unseen objects and background are 255 in GZS3 training labels; make them NaN in the image:
    any of their pixels reaching a crop, even blended by the resize, would show up as NaN."""
    images, labels = scene()
    images = images.masked_fill((labels == 255).unsqueeze(1), float("nan"))
    crops, crop_labels = seen_class_crops(images, labels, 64)
    assert crop_labels.tolist() == [0, 0, 2] and crops.shape == (3, 3, 64, 64)
    assert torch.isfinite(crops).all()

    model = tiny_deop()
    stage = PromptLearningStage(model, crop_size=64)
    seen_by_clip = []
    hook = model.clip.visual.register_forward_pre_hook(lambda _m, args: seen_by_clip.append(args[0]))
    embeddings = stage.encode_classes(NAMES, "{}.")
    losses = stage.compute_loss(stage.training_outputs(images, embeddings), labels)
    hook.remove()
    assert len(seen_by_clip) == 1 and torch.isfinite(seen_by_clip[0]).all()
    assert torch.isfinite(losses["loss"]) and losses["crops"] == 3
    losses["loss"].backward()
    assert set(stage.trainable_parameters()) == {"text_prompts.prompt_tokens"}
    assert model.text_prompts.prompt_tokens.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("text_prompts."))


def test_proposal_stage_trains_only_the_proposals_with_the_mask_loss():
    model = tiny_deop(proposal_aux_losses=True)
    stage = ProposalStage(model).train()
    images, labels = scene()
    losses = stage.compute_loss(stage.training_outputs(images, stage.encode_classes(NAMES, "{}.")), labels)
    assert set(losses) == {"loss", "loss_mask", "loss_dice"}
    losses["loss"].backward()
    assert all(name.startswith("proposals.") for name in stage.trainable_parameters())
    assert all(p.grad is not None for p in model.proposals.parameters())
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("proposals."))


def test_frozen_proposals_get_no_gradient_and_keep_their_outputs_through_a_step():
    model = tiny_deop()
    model.freeze_proposals()
    model.train()
    images, labels = scene()
    with torch.no_grad():
        before = model.proposals(images).clone()
        others = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1))
    embeddings = model.encode_classes(NAMES, "{}.")
    losses = model.compute_loss(model.training_outputs(images, embeddings), labels)
    assert "loss_mask_proposals" not in losses                      # stage two: no mask loss
    losses["loss"].backward()
    assert all(p.grad is None for p in model.proposals.parameters())
    optimizer.step()
    assert not model.proposals.training
    with torch.no_grad():
        torch.testing.assert_close(model.proposals(images), before, rtol=0, atol=0)
    assert any(not torch.equal(p, others[n]) for n, p in model.named_parameters() if n in others)
    stored = model.trainable_parameters()                           # checkpoints still hold the proposals
    assert {n for n, _ in model.proposals.named_parameters(prefix="proposals")} <= set(stored)


def test_deop_vitb16_voc_config_runs_all_stages_from_the_command_line(tmp_path):
    """The real config and its stages (ResNet-101c, 6-layer decoders, ViT-B/16 with random weights);
    only sizes shrink for a CPU: 64-pixel crops and inputs, batch 1, 2 steps per stage."""
    root = write_voc_root(tmp_path / "voc", train_ids=2, val_ids=1, size=(80, 96), class_sets=[(0, 16), (2, 3)])
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "zs3.cli", "train", str(DEOP_VOC_CONFIG), "--max-iters", "2",
           "--data-root", str(root), "--out", str(out), "--set", "train.batch_size=1",
           "--set", "data.num_workers=0", "--set", "train.log_every=1", "--set", "model.input_size=64",
           "--set", "data.crop_size=64", "--set", "data.slide_stride=64", "--set", "train.prompt_crop_size=32", "--set", "train.amp=false"]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage_dir in (out / "stage_prompts", out / "stage_proposals", out):
        rows = (stage_dir / "log.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"], stage_dir
        assert latest_checkpoint_step(stage_dir) == 2
    header = (out / "stage_proposals" / "log.csv").read_text().splitlines()[0]
    assert "loss_mask" in header and "loss_focal" not in header
    assert "loss_mask_proposals" not in (out / "log.csv").read_text().splitlines()[0]
