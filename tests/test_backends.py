"""Backends behind the Segmenter contract: names, the `auto` policy, bf16 agreement, TensorRT.

About bf16 agreement: with random weights and random text embeddings most pixels have
near-tied classes (median top-2 logit margin ≈ 0.08 here), so bf16 rounding flips ~1.5% of
labels that a trained model would separate clearly; that measures ties, not bf16. The test
therefore uses a vocabulary with the structure a trained model has: one embedding per object
of a synthetic scene (the mean of its patch features), giving labels that follow the objects.
"""
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from zs3_core import Segmenter
from zs3_core.backends import BACKEND_NAMES, BackendError, available_backends, create_backend
from zs3_core.backends import auto
from zs3_core.config import REPO_ROOT
from zs3_core.export.tensorrt import tensorrt_unavailable_reason
from zs3_core.export.verify import class_names, compare, object_vocabulary, synthetic_images
from zs3_core.synthetic import SyntheticWorld, WorldConfig

BASELINE_CONFIG = REPO_ROOT / "config" / "models" / "clip_baseline_tiny.yaml"   # random-weight tiny baseline: fast


@pytest.fixture(scope="module")
def bf16_segmenter():
    """`backend: torch` + `precision: bf16` as the node passes them."""
    torch.manual_seed(0)
    return Segmenter.from_config(BASELINE_CONFIG, backend="torch", precision="bf16")


def test_bf16_labels_agree_with_fp32_on_structured_vocabularies(bf16_segmenter):
    assert bf16_segmenter.backend_name == "torch/bf16/cpu"
    reference = Segmenter(bf16_segmenter.model, bf16_segmenter.config, backend="torch", precision="fp32")
    world = SyntheticWorld(WorldConfig(seed=0, image_size=(224, 224)))
    same = total = 0
    for i in range(6):
        scene = world.scene(i)
        vocab = object_vocabulary(reference, scene)
        report = compare(reference, bf16_segmenter, [scene.image], vocab)
        same += report.label_agreement * scene.labels.size
        total += scene.labels.size
    # measured: >= 99 % on CPUs with native bf16, 98.96 % where it is emulated (AVX2 only);
    # a broken bf16 path agrees on a few per cent
    assert same / total >= 0.985


def test_bf16_on_random_vocabularies_stays_close(bf16_segmenter):
    """Tie-prone case (see module docstring): a looser floor, still catching a broken bf16 path."""
    reference = Segmenter(bf16_segmenter.model, bf16_segmenter.config, backend="torch")
    report = compare(reference, bf16_segmenter, synthetic_images(2, 224),
                     reference.encode_vocabulary(class_names(20)))
    assert report.label_agreement >= 0.95, report.row()


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendError, match="onnxruntime"):
        create_backend("openvino", torch.nn.Identity())


def test_onnxruntime_refuses_reduced_precision_with_a_pointer_to_bf16():
    with pytest.raises(BackendError, match="precision 'bf16'"):
        create_backend("onnxruntime", torch.nn.Identity(), precision="bf16")


def test_cpu_backends_available_here():
    names = available_backends("cpu")
    assert "torch" in names and "onnxruntime" in names and "tensorrt" not in names
    assert set(names) <= set(BACKEND_NAMES)


@pytest.mark.parametrize("bf16, has_ort, expected", [
    (True, True, ("torch", "bf16")), (False, True, ("onnxruntime", "fp32")), (False, False, ("torch", "fp32"))])
def test_auto_on_cpu_prefers_native_bf16_then_onnxruntime(monkeypatch, bf16, has_ort, expected):
    real = importlib.util.find_spec
    monkeypatch.setattr(auto, "cpu_has_native_bf16", lambda: bf16)
    monkeypatch.setattr(auto.importlib.util, "find_spec",
                        lambda name: None if name == "onnxruntime" and not has_ort else real(name))
    choice = auto.choose_backend("cpu")
    assert (choice.name, choice.precision) == expected and choice.reason


@pytest.mark.parametrize("has_trt, expected", [(True, ("tensorrt", "fp16")), (False, ("torch", "fp16"))])
def test_auto_on_cuda_prefers_tensorrt(monkeypatch, has_trt, expected):
    real = importlib.util.find_spec
    monkeypatch.setattr(auto.importlib.util, "find_spec",
                        lambda name: (object() if has_trt else None) if name == "torch_tensorrt" else real(name))
    choice = auto.choose_backend("cuda")
    assert (choice.name, choice.precision) == expected


def test_auto_logs_its_choice_and_reason(caplog, monkeypatch):
    monkeypatch.setattr(auto, "cpu_has_native_bf16", lambda: True)
    torch.manual_seed(0)
    with caplog.at_level("INFO", logger="zs3_core.backends.factory"):
        seg = Segmenter.from_config(BASELINE_CONFIG, backend="auto")
    assert seg.backend_name == "torch/bf16/cpu"
    assert "backend auto -> torch/bf16/cpu" in caplog.text and "AMX" in caplog.text


def test_tensorrt_backend_explains_why_it_cannot_run_here():
    reason = tensorrt_unavailable_reason("cuda")
    if reason is None:
        pytest.skip("CUDA and torch_tensorrt are present; the GPU test below covers this")
    with pytest.raises(BackendError, match="tensorrt"):
        create_backend("tensorrt", torch.nn.Identity(), device="cuda", precision="fp16")


@pytest.mark.skipif(tensorrt_unavailable_reason("cuda") is not None,
                    reason=f"TensorRT test needs CUDA + torch_tensorrt: {tensorrt_unavailable_reason('cuda')}")
def test_tensorrt_fp16_engine_matches_eager_and_is_cached(tmp_path):
    torch.manual_seed(0)
    seg = Segmenter.from_config(BASELINE_CONFIG, backend="torch", device="cuda")
    engine = create_backend("tensorrt", seg.model, device="cuda", precision="fp16", cache_dir=tmp_path)
    assert engine.cache_result.built
    candidate = Segmenter(seg.model, seg.config, backend=engine, device="cuda")
    world = SyntheticWorld(WorldConfig(seed=0, image_size=(224, 224)))
    scene = world.scene(0)
    report = compare(seg, candidate, [scene.image], object_vocabulary(seg, scene))
    assert report.label_agreement >= 0.99, report.row()
    again = create_backend("tensorrt", seg.model, device="cuda", precision="fp16", cache_dir=tmp_path)
    assert not again.cache_result.built
    x = torch.zeros(1, 3, 224, 224)
    for c in (1, 20, 171):   # one engine serves every vocabulary size
        assert again(x, F.normalize(torch.randn(c, 128), dim=-1)).shape[1] == c
