"""The training loop: schedule, global batch, grad accumulation, DDP (2 gloo processes)
against one process, kill-and-resume, dry run, and the real LDVC config from the CLI.

TinySegmenter is a real ZeroShotSegmentationModel — a frozen 'backbone', a trainable head
and fixed per-name class embeddings — small enough to train for a few steps in a test.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from test_datasets import write_voc_root
from training.config import build_run_config, load_run_config
from training.train import TrainingStep, TrainResult, latest_checkpoint_step, lr_factor, per_process_batch, train
from zs3_core.config import REPO_ROOT, ConfigError, ModelConfig
from zs3_core.models.base import ZeroShotSegmentationModel

TESTS_DIR = Path(__file__).resolve().parent
LDVC_VOC_CONFIG = REPO_ROOT / "config" / "models" / "ldvc_vitb16_voc.yaml"


class TinySegmenter(ZeroShotSegmentationModel):
    """Frozen 1×1 conv 'backbone' + trainable 3×3 head; logits = features · class embeddings
    at half resolution. The loss is normalised per pixel of the batch (ignored pixels count
    in the denominator), so it is the same whichever process computes which images."""

    def __init__(self, name: str = "tiny", dim: int = 8, head_channels: int = 8):
        super().__init__()
        self.config = ModelConfig(name=name, clip="tiny", input_size=32)
        generator = torch.Generator().manual_seed(1)
        self.backbone = nn.Conv2d(3, dim, 1)
        self.head = nn.Conv2d(dim, head_channels, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        self.backbone.requires_grad_(False)

    def encode_classes(self, names, template):
        dim = self.head.out_channels
        return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(
            zlib.crc32(template.format(n).encode()))) for n in names])

    def forward(self, image, class_embeddings):
        features = self.head(torch.relu(self.backbone(image)))
        return torch.einsum("bdhw,cd->bchw", F.avg_pool2d(features, 2), class_embeddings)

    def compute_loss(self, outputs, targets):
        logits = F.interpolate(outputs, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, targets, ignore_index=255, reduction="sum") / targets.numel()
        return {"loss": loss, "loss_ce": loss.detach()}


def tiny_config(data_root: Path, out_dir: Path, **train) -> dict:
    return {
        "model": {"name": "tiny", "clip": "tiny", "input_size": 32},
        "data": {"dataset": "voc", "root": str(data_root), "crop_size": 32, "num_workers": 0,
                 "eval_mode": "whole", "slide_stride": 32},
        "train": {"iterations": 50, "batch_size": 4, "lr": 0.01, "warmup_iters": 2,
                  "log_every": 1, "checkpoint_every": 0, "amp": False, "seed": 3,
                  "out_dir": str(out_dir), **train},
    }


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_voc_root(tmp_path_factory.mktemp("voc"), train_ids=8, val_ids=2)


def run_tiny(config: dict, **kwargs) -> TrainResult:
    return train(build_run_config(config), model=TinySegmenter(), **kwargs)


def subprocess_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR), env.get("PYTHONPATH", "")])
    return env


LAUNCHER = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from test_training import TinySegmenter
    from training.config import load_run_config
    from training.train import end_distributed, train

    config, max_iters, resume, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
    result = train(load_run_config(config), model=TinySegmenter(), max_iters=max_iters, resume=resume)
    if not dist.is_initialized() or dist.get_rank() == 0:
        json.dump({"steps": result.steps, "losses": result.losses}, open(out, "w"))
    end_distributed(wait_for_peers=True)
""")


def write_launcher(tmp_path: Path, config: dict) -> tuple[Path, Path]:
    (tmp_path / "launch.py").write_text(LAUNCHER)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "launch.py", tmp_path / "run.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lr_warms_up_linearly_then_decays_polynomially():
    assert lr_factor(0, 10, 100, 0.9) == pytest.approx(0.1 * (1 - 0 / 100) ** 0.9)
    assert lr_factor(9, 10, 100, 0.9) == pytest.approx((1 - 9 / 100) ** 0.9)
    assert lr_factor(50, 10, 100, 1.0) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, 0.9) == 0.0


def test_global_batch_is_split_over_processes_and_accumulation_steps(tmp_path):
    cfg = build_run_config(tiny_config(tmp_path, tmp_path, batch_size=16, grad_accum=2)).train
    assert per_process_batch(cfg, world_size=4) == 2
    with pytest.raises(ConfigError, match="not divisible"):
        per_process_batch(cfg, world_size=3)


def test_loss_stride_scores_the_subsampled_labels(tmp_path):
    model, names = TinySegmenter(), ["a", "b", "c"]
    images, targets = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    targets[:, :8] = 255
    strided = TrainingStep(model, names, "{}", loss_stride=4)(images, targets)["loss"]
    logits = model(images, model.encode_classes(names, "{}"))
    assert torch.equal(strided, model.compute_loss(logits, targets[:, 2::4, 2::4])["loss"])
    assert not torch.equal(strided, model.compute_loss(logits, targets)["loss"])
    with pytest.raises(ConfigError, match="train.loss_stride"):
        build_run_config(tiny_config(tmp_path, tmp_path, loss_stride=0))


def test_training_lowers_the_loss_and_logs_csv(voc_root, tmp_path):
    result = run_tiny(tiny_config(voc_root, tmp_path, lr=0.05), max_iters=25)
    assert result.steps == list(range(1, 26))
    assert sum(result.losses[-5:]) < 0.8 * sum(result.losses[:5])
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["step", "loss", "loss_ce"] and len(rows) == 26
    assert latest_checkpoint_step(tmp_path) == 25      # the last step is always saved
    assert (tmp_path / "config.yaml").is_file()


def test_gradient_accumulation_matches_the_full_batch(voc_root, tmp_path):
    full = run_tiny(tiny_config(voc_root, tmp_path / "a", grad_accum=1), max_iters=4)
    accumulated = run_tiny(tiny_config(voc_root, tmp_path / "b", grad_accum=2), max_iters=4)
    assert accumulated.losses == pytest.approx(full.losses, rel=1e-5)


def test_dry_run_writes_nothing(voc_root, tmp_path):
    result = run_tiny(tiny_config(voc_root, tmp_path / "out"), dry_run=True)
    assert len(result.losses) == 1 and result.losses[0] > 0
    assert not (tmp_path / "out").exists()


def test_two_process_gloo_ddp_matches_one_process(voc_root, tmp_path):
    """torchrun with 2 CPU processes × 2 images == 1 process × 4 images, step by step;
    validation at step 5 is sharded over the 2 processes and must give the same metrics."""
    config = tiny_config(voc_root, tmp_path / "ddp", eval_every=5)
    launcher, config_path = write_launcher(tmp_path, config)
    out = tmp_path / "ddp_losses.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(launcher),
           str(config_path), "5", "0", str(out)]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    single = run_tiny(tiny_config(voc_root, tmp_path / "single", eval_every=5), max_iters=5)
    print("DDP 2x2 losses:", ddp["losses"], "\n1x4 losses:   ", single.losses)
    assert ddp["steps"] == single.steps == [1, 2, 3, 4, 5]
    assert ddp["losses"] == pytest.approx(single.losses, rel=1e-5, abs=1e-6)

    def validation(out_dir):
        rows = list(csv.DictReader(open(out_dir / "log.csv")))
        return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/")}
    assert validation(tmp_path / "ddp").keys() >= {"val/mIoU_seen", "val/hIoU", "val/pAcc"}
    assert validation(tmp_path / "ddp") == pytest.approx(validation(tmp_path / "single"), rel=1e-4)


def test_killed_run_resumes_with_the_losses_of_an_uninterrupted_run(voc_root, tmp_path):
    config = tiny_config(voc_root, tmp_path / "killed", iterations=5000, checkpoint_every=2)
    launcher, config_path = write_launcher(tmp_path, config)
    proc = subprocess.Popen([sys.executable, str(launcher), str(config_path), "5000", "0",
                             str(tmp_path / "never.json")], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint_step(tmp_path / "killed") < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "training died before step 4"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed_from = latest_checkpoint_step(tmp_path / "killed")
    stop = resumed_from + 3
    resumed = train(load_run_config(config_path), model=TinySegmenter(), max_iters=stop, resume=True)
    assert resumed.start_step == resumed_from and resumed.steps == [stop - 2, stop - 1, stop]
    reference = run_tiny(tiny_config(voc_root, tmp_path / "straight", iterations=5000), max_iters=stop)
    assert resumed.losses == pytest.approx(reference.losses[-3:], rel=1e-5)
    logged = [int(line.split(",")[0]) for line in (tmp_path / "killed/log.csv").read_text().splitlines()[1:]]
    assert logged == list(range(1, stop + 1))   # rows the killed run wrote past its checkpoint are gone


def test_a_model_with_nothing_to_train_is_refused(voc_root, tmp_path):
    model = TinySegmenter().requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        train(build_run_config(tiny_config(voc_root, tmp_path)), model=model, max_iters=1)


@pytest.mark.skipif(not LDVC_VOC_CONFIG.is_file(),
                    reason="config/models/ldvc_vitb16_voc.yaml is missing")
def test_ldvc_vitb16_voc_config_trains_two_iterations_from_the_command_line(tmp_path):
    """The real paper config, random CLIP weights, fixture data, batch 1, 2 steps on CPU."""
    root = write_voc_root(tmp_path / "voc", train_ids=2, val_ids=1, size=(96, 128))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "zs3.cli", "train", str(LDVC_VOC_CONFIG), "--max-iters", "2",
           "--data-root", str(root), "--out", str(out), "--set", "train.batch_size=1",
           "--set", "data.num_workers=0", "--set", "train.log_every=1"]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (out / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert latest_checkpoint_step(out) == 2
