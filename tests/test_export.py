"""Export of the image path (torch.export, ONNX) and the TensorRT engine cache, on CPU.

Models are the tiny CLIP configs with random weights: parity is a property of the graph,
not of the weights. Label agreement is measured through the Segmenter, as users run it.
"""
import dataclasses
import json

import numpy as np
import onnxruntime
import pytest
import torch

from zs3_core import Segmenter
from zs3_core.clip import ClipConfig, VisionTransformer
from zs3_core.config import REPO_ROOT, ModelConfig, load_model_config
from zs3_core.export import ExportError, example_inputs
from zs3_core.export.cache import MANIFEST_FILE, EngineCache, EngineKey, model_hash
from zs3_core.export.exported_program import export_image_path
from zs3_core.export.onnx import export_onnx, read_metadata
from zs3_core.export.tensorrt import Fp32Norm, with_fp32_norms
from zs3_core.export.verify import compare, synthetic_images
from zs3_core.models import build_model

BASELINE_CONFIG = REPO_ROOT / "config" / "models" / "clip_baseline_tiny.yaml"   # random-weight tiny baseline: fast

CLASS_COUNTS = (1, 20, 171)

TINY_CONFIGS = {
    "baseline": lambda: load_model_config(BASELINE_CONFIG),
    # LDVC and DeOP scaled down to the tiny CLIP (128 px = 8x8 patch grid) with their real code paths:
    # deep prompts, route attention with top-k/gather, proposals + anchor heatmaps.
    "ldvc": lambda: ModelConfig(name="ldvc", clip="tiny", input_size=128, options=dict(
        visual_prompt_tokens=4, text_prompt_tokens=2, tap_layers=[2, 4], windows_per_side=4,
        route_top_k=4, decoder_heads=4)),
    "deop": lambda: ModelConfig(name="deop", clip="tiny", input_size=128, options=dict(
        proposal_queries=8, proposal_channels=[8, 16, 32, 64], proposal_hidden_dim=32,
        proposal_mask_dim=32, proposal_decoder_layers=1, proposal_heads=2, proposal_ffn_dim=64,
        anchor_heads=2, anchor_ffn_dim=64, text_prompt_tokens=2)),
}


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def model(request):
    torch.manual_seed(0)
    return build_model(TINY_CONFIGS[request.param]()).eval()


def test_torch_export_has_one_graph_with_dynamic_class_count(model):
    program = export_image_path(model, max_classes=256)
    run = program.module()
    for c in CLASS_COUNTS:
        image, classes = example_inputs(model, c, seed=c)
        with torch.no_grad():
            torch.testing.assert_close(run(image, classes), model.predict(image, classes), atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="C|class"):   # outside Dim('C', max=256)
        run(*example_inputs(model, 257))
    # torch.export yields a single graph or fails; dynamo confirms the eager code has no breaks.
    image, classes = example_inputs(model, 20)
    explained = torch._dynamo.explain(model.predict)(image, classes)
    assert explained.graph_break_count == 0, explained.break_reasons


def test_onnx_matches_eager_logits_and_probabilities(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx", max_classes=256, with_logits=True)
    assert read_metadata(path)["zs3.max_classes"] == "256"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[1].shape[0] == "C"
    for c in CLASS_COUNTS:
        image, classes = example_inputs(model, c, seed=c)
        logits, probs = session.run(None, {"image": image.numpy(), "class_embeddings": classes.numpy()})
        with torch.no_grad():
            ref_logits = model(image, classes)
            ref_probs = model.probabilities(ref_logits)
        assert np.abs(logits - ref_logits.numpy()).max() <= 1e-3
        assert np.abs(probs - ref_probs.numpy()).max() <= 1e-3
        assert (probs.argmax(1) == ref_probs.numpy().argmax(1)).mean() >= 0.995


def test_onnx_opset_below_17_is_refused(model, tmp_path):
    with pytest.raises(ExportError, match="LayerNormalization"):
        export_onnx(model, tmp_path / "m.onnx", opset=16)


def test_large_weights_go_to_an_external_data_file(tmp_path):
    torch.manual_seed(0)
    model = build_model(load_model_config(BASELINE_CONFIG)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", external_data=True)
    assert (tmp_path / "m.onnx.data").stat().st_size > path.stat().st_size
    image, classes = example_inputs(model, 3)
    (probs,) = onnxruntime.InferenceSession(str(path)).run(None, {"image": image.numpy(),
                                                                   "class_embeddings": classes.numpy()})
    assert np.abs(probs - model.predict(image, classes).detach().numpy()).max() <= 1e-3


@pytest.fixture(scope="module")
def onnx_segmenter(tmp_path_factory):
    """`backend: onnxruntime` as the node passes it: Segmenter.from_config exports on first use."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ZS3_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
    torch.manual_seed(0)
    yield Segmenter.from_config(BASELINE_CONFIG, backend="onnxruntime")
    mp.undo()


@pytest.mark.parametrize("num_classes", CLASS_COUNTS)
def test_onnxruntime_segmenter_labels_like_eager_fp32(onnx_segmenter, num_classes):
    assert onnx_segmenter.backend_name == "onnxruntime/fp32/cpu"
    reference = Segmenter(onnx_segmenter.model, onnx_segmenter.config, backend="torch")
    vocab = reference.encode_vocabulary([f"class {i}" for i in range(num_classes)])
    report = compare(reference, onnx_segmenter, synthetic_images(3, 224), vocab)
    assert report.max_abs_diff <= 1e-3 and report.label_agreement >= 0.995, report.row()


def test_onnx_graph_is_exported_once_per_model(onnx_segmenter):
    again = Segmenter(onnx_segmenter.model, onnx_segmenter.config, backend="onnxruntime")
    assert again.backend.path == onnx_segmenter.backend.path


def test_fp16_engine_preparation_keeps_norms_in_fp32():
    torch.manual_seed(0)
    model = build_model(TINY_CONFIGS["ldvc"]()).eval()
    half = with_fp32_norms(model, torch.float16)
    norms = [m for m in half.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    assert any(isinstance(m, Fp32Norm) for m in half.modules())   # LDVC's own (non-CLIP) norms wrapped
    assert half.clip.visual.conv1.weight.dtype == torch.float16
    assert next(model.parameters()).dtype == torch.float32          # the original is untouched
    conv_stem = with_fp32_norms(VisionTransformer(ClipConfig.tiny(stem="conv").vision), torch.float16).stem
    assert all(isinstance(conv_stem.convs[i], Fp32Norm) for i in range(1, len(conv_stem.convs), 3))


# ---- engine cache -------------------------------------------------------------------------

def _key(**changes) -> EngineKey:
    base = EngineKey(model_hash="ab" * 32, input_size=512, min_classes=1, opt_classes=32, max_classes=256,
                     precision="fp16",
                     tensorrt_version="10.3.0", torch_tensorrt_version="2.5.0", torch_version="2.5.0",
                     gpu_name="Orin", compute_capability="8.7")
    return dataclasses.replace(base, **changes)


CHANGED_FIELDS = {"model_hash": "cd" * 32, "input_size": 640, "min_classes": 2, "opt_classes": 16, "max_classes": 128,
                  "precision": "fp32", "tensorrt_version": "10.7.0", "torch_tensorrt_version": "2.6.0",
                  "torch_version": "2.6.0", "gpu_name": "NVIDIA H100", "compute_capability": "9.0",
                  "min_batch": 2, "opt_batch": 4, "max_batch": 4, "cache_format": 99}


class CountingBuilder:
    def __init__(self):
        self.builds = 0

    def __call__(self, path):
        self.builds += 1
        path.write_bytes(f"engine #{self.builds}".encode())


def test_every_key_field_is_covered_by_the_change_table():
    assert set(CHANGED_FIELDS) == {f.name for f in dataclasses.fields(EngineKey)}


def test_a_valid_entry_is_reused(tmp_path):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    first = cache.get_or_build(_key(), build)
    second = cache.get_or_build(_key(), build)
    assert first.built and not second.built and build.builds == 1
    assert second.path.read_bytes() == b"engine #1"
    assert json.loads((second.path.parent / MANIFEST_FILE).read_text())["key"] == _key().to_dict()


@pytest.mark.parametrize("field", sorted(CHANGED_FIELDS))
def test_changing_any_key_field_rebuilds_the_engine(tmp_path, field):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    cache.get_or_build(_key(), build)
    changed = _key(**{field: CHANGED_FIELDS[field]})
    assert changed != _key()
    result = cache.get_or_build(changed, build)
    assert result.built and build.builds == 2
    assert result.path.read_bytes() == b"engine #2"


def test_a_mismatched_manifest_in_the_slot_is_rebuilt_not_reused(tmp_path):
    """Same slot (model, size, precision, classes), other environment: e.g. after a JetPack upgrade."""
    cache, build = EngineCache(tmp_path), CountingBuilder()
    cache.get_or_build(_key(tensorrt_version="8.6.2"), build)
    upgraded = _key(tensorrt_version="10.3.0")
    assert cache.slot_dir(upgraded) == cache.slot_dir(_key(tensorrt_version="8.6.2"))
    ok, reason = cache.validate(upgraded)
    assert not ok and "tensorrt_version" in reason and "8.6.2" in reason
    assert cache.get_or_build(upgraded, build).built
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1   # replaced, not piled up


def test_a_corrupted_engine_file_is_rebuilt(tmp_path):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    path = cache.get_or_build(_key(), build).path
    path.write_bytes(b"truncated")
    ok, reason = cache.validate(_key())
    assert not ok and "checksum" in reason
    assert cache.get_or_build(_key(), build).built


def test_a_failed_build_leaves_no_entry(tmp_path):
    cache = EngineCache(tmp_path)

    def failing(path):
        path.write_bytes(b"half")
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError, match="memory"):
        cache.get_or_build(_key(), failing)
    assert not cache.validate(_key())[0] and list(tmp_path.iterdir()) == []


def test_model_hash_follows_weights_and_config():
    torch.manual_seed(0)
    config = load_model_config(BASELINE_CONFIG)
    model = build_model(config)
    reference = model_hash(model)
    assert model_hash(model) == reference
    with torch.no_grad():
        model.clip.visual.proj[0, 0] += 1e-3
    assert model_hash(model) != reference
    model.config = dataclasses.replace(config, input_size=256)
    assert len({reference, model_hash(model)}) == 2


def test_model_hash_ignores_serving_only_fields():
    """Threshold, prompt template, pixel statistics and weight-file paths never reach the engine:
    changing them must not rebuild it (nor miss an engine prebuilt by `zs3 export`)."""
    torch.manual_seed(0)
    config = load_model_config(BASELINE_CONFIG)
    model = build_model(config)
    reference = model_hash(model)
    model.config = dataclasses.replace(config, unlabeled_threshold=0.3, prompt_template="a {}.",
                                       checkpoint="/elsewhere/ldvc.safetensors", pixel_mean=(0.5, 0.5, 0.5))
    assert model_hash(model) == reference
    model.config = dataclasses.replace(config, options={"changed": True})
    assert model_hash(model) != reference
