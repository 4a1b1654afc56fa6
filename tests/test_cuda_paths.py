"""The CUDA paths on a real GPU: the shipped model served at fp32 / bf16 / fp16, batched
frames, the postprocess where the probabilities are, mixed-precision training (bf16, and fp16
with gradient scaling) and evaluation. Each is compared with the CPU fp32 path it must agree
with. CI has no GPU, so the module is skipped there; on a GPU machine run
``python -m pytest tests/test_cuda_paths.py`` (results: docs/benchmarks.md, "CUDA")."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from training.config import load_run_config
from training.evaluate import evaluate_model
from training.train import checkpoint_paths, train
from zs3_core import Segmenter
from zs3_core.config import REPO_ROOT
from zs3_core.models import build_model
from zs3_core.model_checkpoint import load_model_checkpoint
from zs3_core.synthetic import SyntheticWorld
from zs3_core.synthetic.vocabularies import sized_vocabulary

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SHIPPED = REPO_ROOT / "checkpoints" / "synthetic"
LDVC_TRAINING = REPO_ROOT / "config" / "models" / "ldvc_synthetic.yaml"


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld()


@pytest.fixture(scope="module")
def vocabulary(world):
    return list(world.class_names) + ["background"]


@pytest.fixture(scope="module")
def cpu_fp32(vocabulary):
    seg = Segmenter.from_config(backend="torch", device="cpu", precision="fp32")
    seg.set_vocabulary(vocabulary)
    return seg


def camera_frame(world, index: int, size=(640, 480)) -> np.ndarray:
    """Scene `index` as a camera frame of `size` (width, height)."""
    return cv2.resize(world.scene(index).image, size, interpolation=cv2.INTER_LINEAR)


def label_agreement(a, b) -> float:
    return float(np.mean([np.mean(x.labels == y.labels) for x, y in zip(a, b)]))


@pytest.mark.parametrize("precision,least", [("fp32", 0.999), ("bf16", 0.99), ("fp16", 0.99)])
def test_the_shipped_model_on_cuda_labels_like_cpu_fp32(world, vocabulary, cpu_fp32, precision, least):
    """CPU bf16 agrees with CPU fp32 on 99.85 % of pixels here; a GPU precision must do as well
    as the backends' target (>= 99 %), and fp32 on CUDA differs only by TF32 convolutions."""
    gpu = Segmenter.from_config(backend="torch", device="cuda", precision=precision)
    gpu.set_vocabulary(vocabulary)
    frames = [camera_frame(world, i) for i in range(4)]
    on_gpu = [gpu.segment(f) for f in frames]
    on_cpu = [cpu_fp32.segment(f) for f in frames]
    agreement = label_agreement(on_gpu, on_cpu)
    print(f"torch/{precision}/cuda vs torch/fp32/cpu: {100 * agreement:.3f} % of pixels")
    assert agreement >= least
    assert gpu.backend_name == f"torch/{precision}/cuda"
    for g, c in zip(on_gpu, on_cpu):
        assert isinstance(g.labels, np.ndarray) and isinstance(g.confidence, np.ndarray)   # back on the host
        assert g.labels.dtype == c.labels.dtype and g.labels.shape == c.labels.shape
        assert float(np.abs(g.confidence - c.confidence).mean()) < 0.01
        np.testing.assert_allclose(g.class_fraction.sum(), c.class_fraction.sum(), atol=0.01)


def test_a_batch_on_cuda_labels_like_frame_by_frame(world, vocabulary):
    gpu = Segmenter.from_config(backend="torch", device="cuda", precision="fp16", max_batch=3)
    gpu.set_vocabulary(vocabulary)
    frames = [camera_frame(world, 0, (640, 480)), camera_frame(world, 1, (1280, 720)),
              camera_frame(world, 2, (320, 240))]
    batched = gpu.segment_batch(frames)
    single = [gpu.segment(f) for f in frames]
    assert [r.labels.shape for r in batched] == [f.shape[:2] for f in frames]
    assert label_agreement(batched, single) >= 0.999
    assert all(r.timings["batch_size"] == 3.0 for r in batched)


def test_a_large_vocabulary_at_1080p_postprocesses_on_the_gpu(world, cpu_fp32):
    """171 classes at 1920x1080: the candidate postprocess runs on the device (its (C, H, W)
    literal twin would be 1.4 GB) and returns host arrays that match the CPU's labels."""
    names = sized_vocabulary(171, world.class_names)
    gpu = Segmenter.from_config(backend="torch", device="cuda", precision="fp32")
    frame = camera_frame(world, 0, (1920, 1080))
    on_gpu = gpu.segment(frame, gpu.encode_vocabulary(names))
    on_cpu = cpu_fp32.segment(frame, cpu_fp32.encode_vocabulary(names))
    assert on_gpu.labels.shape == (1080, 1920) and isinstance(on_gpu.labels, np.ndarray)
    agreement = float(np.mean(on_gpu.labels == on_cpu.labels))
    print(f"171 classes at 1080p, cuda fp32 vs cpu fp32: {100 * agreement:.3f} % of pixels")
    assert agreement >= 0.99


def short_ldvc_run(tmp_path, steps: int):
    return load_run_config(LDVC_TRAINING, out_dir=str(tmp_path), overrides=[
        f"model.clip_weights={SHIPPED / 'tiny_clip.safetensors'}", f"train.iterations={steps}",
        "train.warmup_iters=30", "train.checkpoint_every=0", "train.log_every=25",
        "data.synthetic.val_scenes=120", "data.num_workers=0"])


def test_ldvc_learns_on_cuda_with_bf16_autocast_and_its_checkpoint_serves_on_the_cpu(tmp_path, caplog):
    """The CPU test of the same run (tests/test_synthetic_training.py) takes minutes; here the
    GPU trains it under `amp: true`, which picks bf16 on a GPU that has it."""
    run = short_ldvc_run(tmp_path, 300)
    model = build_model(run.model).to("cuda")
    before = evaluate_model(model, run, device="cuda", progress=False).summary
    with caplog.at_level("INFO"):
        result = train(run, model=model)
    after = evaluate_model(model, run, device="cuda", progress=False).summary
    assert next(p for p in model.parameters()).device.type == "cuda"
    assert "amp: bf16 autocast on CUDA" in caplog.text
    chance = 1 / 36
    assert result.steps[-1] == 300 and all(np.isfinite(result.losses))
    assert after["pAcc"] >= max(4 * chance, before["pAcc"] + 0.08), (before, after)
    assert after["mIoU_seen"] >= max(0.04, 5 * before["mIoU_seen"]), (before, after)

    checkpoint = checkpoint_paths(tmp_path, 300)[0]
    on_cpu = build_model(run.model)
    load_model_checkpoint(checkpoint, on_cpu)
    cpu_summary = evaluate_model(on_cpu, run, device="cpu", progress=False, images=range(30)).summary
    gpu_summary = evaluate_model(model, run, device="cuda", progress=False, images=range(30)).summary
    assert abs(cpu_summary["mIoU_seen"] - gpu_summary["mIoU_seen"]) < 0.01, (cpu_summary, gpu_summary)


def test_fp16_autocast_with_gradient_scaling_trains_on_a_gpu_without_bf16(tmp_path, caplog, monkeypatch):
    """Pascal/Volta/Turing GPUs and Jetson Xavier have no bf16: `amp` then picks fp16 with a
    GradScaler. This GPU has bf16, so its capability query is overridden (named stand-in for
    such a GPU); the arithmetic is real fp16 on the device."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    run = short_ldvc_run(tmp_path, 100)
    with caplog.at_level("INFO"):
        result = train(run, model=build_model(run.model))
    assert "amp: fp16 autocast with gradient scaling on CUDA" in caplog.text
    assert all(np.isfinite(result.losses)) and result.losses[-1] < result.losses[0], result.losses


def test_the_shipped_ldvc_scores_the_same_on_cuda_as_on_the_cpu():
    run = load_run_config(SHIPPED / "ldvc.yaml")
    model = build_model(run.model).to("cuda")
    on_gpu = evaluate_model(model, run, device="cuda", progress=False, images=range(40)).summary
    on_cpu = evaluate_model(model.cpu(), run, device="cpu", progress=False, images=range(40)).summary
    for key in ("mIoU_seen", "mIoU_unseen", "hIoU"):
        assert abs(on_gpu[key] - on_cpu[key]) < 0.01, (key, on_gpu, on_cpu)
