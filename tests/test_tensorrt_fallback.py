"""The TensorRT engine path without a GPU: save/load keeping the class count dynamic, and
`backend: auto` falling back when any stage (build, save, load, cache) fails.

STAND-IN for the missing GPU and TensorRT: `StandInTorchTensorRT` is installed as the
`torch_tensorrt` module for these tests only. Its `dynamo.compile` returns the exported
graph as an eager CPU module instead of a TensorRT engine, and its `load` reads the archive
with `torch.export.load`; the engine's environment (versions, GPU) is a fixed stand-in dict.
Everything around it runs for real: torch.export with C dynamic, the re-export and
`torch.export.save` of the compiled module, the on-disk engine cache, `auto`'s fallback, and
the node over DDS. Failures are injected into one stage at a time and say "stand-in".
"""
import json
import sys
import types

import pytest
import torch

from zs3_core import Segmenter
from zs3_core.backends import auto, create_backend
from zs3_core.backends.auto import BackendChoice
from zs3_core.config import REPO_ROOT
from zs3_core.export import tensorrt as trt
from zs3_core.export.cache import MANIFEST_FILE
from zs3_core.export.image_path import example_inputs

BASELINE_CONFIG = REPO_ROOT / "config" / "models" / "clip_baseline_tiny.yaml"
STAND_IN_ENVIRONMENT = {"tensorrt_version": "10.3.0 (stand-in)", "torch_tensorrt_version": "2.8.0",
                        "torch_version": torch.__version__, "gpu_name": "stand-in Orin", "compute_capability": "8.7"}
STAGES = ("build", "save", "load", "cache")


class StandInTorchTensorRT(types.ModuleType):
    """The parts of torch_tensorrt 2.8 that zs3_core calls, running on the CPU (see module doc)."""

    __version__ = "2.8.0"

    def __init__(self):
        super().__init__("torch_tensorrt")
        self.compiled_inputs = []      # the Input specs each compile got
        self.fail = {}                 # stage -> exception to raise there
        stand_in = self

        class Input:
            def __init__(self, shape=None, min_shape=None, opt_shape=None, max_shape=None, dtype=None):
                self.shape, self.min_shape, self.opt_shape, self.max_shape = shape, min_shape, opt_shape, max_shape

        def compile(program, *, arg_inputs=None, device=None, min_block_size=3, use_explicit_typing=False):
            if "build" in stand_in.fail:
                raise stand_in.fail["build"]
            stand_in.compiled_inputs.append((program, arg_inputs, use_explicit_typing))
            return program.module()

        self.Input = Input
        self.dynamo = types.SimpleNamespace(compile=compile)

    def load(self, path):
        if "load" in self.fail:
            raise self.fail["load"]
        return torch.export.load(path)


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """Torch-TensorRT "available" on this CPU through the stand-in, engines cached in tmp_path,
    and `auto` ordered as on a CUDA machine with torch_tensorrt (fp32, so it runs on the CPU)."""
    module = StandInTorchTensorRT()
    monkeypatch.setitem(sys.modules, "torch_tensorrt", module)
    monkeypatch.setattr(trt, "tensorrt_unavailable_reason", lambda device="cuda": None)
    monkeypatch.setattr(trt, "environment_fields", lambda device: dict(STAND_IN_ENVIRONMENT))
    monkeypatch.setattr(auto, "backend_candidates", lambda device="cpu": [
        BackendChoice("tensorrt", "fp32", "stand-in: TensorRT engine first"),
        BackendChoice("torch", "fp32", "stand-in: torch next")])
    monkeypatch.setenv("ZS3_ENGINE_CACHE", str(tmp_path / "engines"))
    return module


def inject(stand_in, monkeypatch, tmp_path, stage: str) -> str:
    """Make `stage` fail; returns the stand-in's message to look for."""
    message = f"stand-in: injected {stage} failure"
    if stage in ("build", "load"):
        stand_in.fail[stage] = RuntimeError(message)
    elif stage == "save":
        def failing_save(*args, **kwargs):
            raise OSError(message)
        monkeypatch.setattr(trt, "save_engine", failing_save)
    else:   # the cache directory cannot be created: its path is a file
        blocker = tmp_path / "not-a-directory"
        blocker.write_text(message)
        monkeypatch.setenv("ZS3_ENGINE_CACHE", str(blocker / "engines"))
        message = "not-a-directory"
    return message


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Segmenter.from_config(BASELINE_CONFIG, backend="torch").model


def test_engine_keeps_the_class_count_dynamic_through_save_and_load(stand_in, model):
    engine, result = trt.compile_tensorrt(model, "fp32", max_classes=64, device="cpu")
    assert result.built and result.path.exists()
    (program, inputs, explicit_typing), = stand_in.compiled_inputs
    assert explicit_typing is True                                  # 2.8: the flag exists, so it is set
    assert inputs[1].opt_shape[0] == trt.OPT_CLASSES and inputs[1].max_shape[0] == 64
    traced = [n for n in program.graph.nodes if n.op == "placeholder"][-1].meta["val"].shape[0]
    assert traced.node.hint == trt.OPT_CLASSES                      # Torch-TensorRT's opt comes from here
    again, reused = trt.compile_tensorrt(model, "fp32", max_classes=64, device="cpu")
    assert not reused.built and len(stand_in.compiled_inputs) == 1   # loaded from the cache
    for classes in (3, 50):
        image, embeddings = example_inputs(model, classes, seed=classes)
        with torch.no_grad():
            expected = model.predict(image, embeddings)
            assert again(image, embeddings).shape == expected.shape == (1, classes, *expected.shape[2:])
            torch.testing.assert_close(again(image, embeddings), expected, atol=1e-5, rtol=1e-4)


def test_a_multi_camera_engine_has_a_batch_range_in_its_profile_and_its_cache_key(stand_in, model):
    engine, result = trt.compile_tensorrt(model, "fp32", max_classes=64, device="cpu", max_batch=4)
    (program, inputs, _), = stand_in.compiled_inputs
    assert (inputs[0].min_shape[0], inputs[0].opt_shape[0], inputs[0].max_shape[0]) == (1, 4, 4)
    assert inputs[0].shape is None and result.path.parent.name.endswith("-b1-4-4")
    key = json.loads((result.path.parent / MANIFEST_FILE).read_text())["key"]
    assert (key["min_batch"], key["opt_batch"], key["max_batch"]) == (1, 4, 4)
    for batch in (1, 3, 4):   # the saved and reloaded engine keeps B dynamic
        image, embeddings = example_inputs(model, 5, seed=batch, batch=batch)
        with torch.no_grad():
            torch.testing.assert_close(engine(image, embeddings), model.predict(image, embeddings),
                                       atol=1e-5, rtol=1e-4)
    single, single_result = trt.compile_tensorrt(model, "fp32", max_classes=64, device="cpu")
    assert single_result.built, "a one-frame engine is another cache entry, never the batched one"
    assert stand_in.compiled_inputs[1][1][0].shape == (1, 3, model.config.input_size, model.config.input_size)
    backend = create_backend("tensorrt", model, "cpu", "fp32", max_batch=4, max_classes=64)
    assert backend.max_batch == 4 and not backend.cache_result.built


@pytest.mark.parametrize("version, parameters, expected", [
    ("2.6.0", {"use_explicit_typing"}, {"use_explicit_typing": True}),
    ("2.10.0a0", {"use_explicit_typing", "enabled_precisions"}, {"use_explicit_typing": True}),
    ("2.13.0+cu130", {"enabled_precisions"}, {})])                  # strongly typed only: nothing to ask
def test_build_options_follow_the_release_without_false_warnings(caplog, version, parameters, expected):
    assert trt.build_options(version, parameters) == expected
    assert "strongly typed" not in caplog.text


def test_a_build_without_strong_typing_keeps_fp32_engines_fp32(caplog):
    assert trt.build_options("2.6.0", {"enabled_precisions"}, torch.float32) == {
        "enabled_precisions": {torch.float32}}
    assert "no strongly typed builds" in caplog.text                 # the one case that warns


def test_releases_that_lose_the_dynamic_class_count_are_refused():
    assert "2.6" in trt.unsupported_release_reason("2.5.0")
    assert trt.unsupported_release_reason("2.8.0+cu126") is None and trt.unsupported_release_reason("2.13.0") is None


@pytest.mark.parametrize("stage", STAGES)
def test_auto_falls_back_to_torch_when_a_stage_fails(stand_in, monkeypatch, tmp_path, model, stage):
    message = inject(stand_in, monkeypatch, tmp_path, stage)
    backend = create_backend("auto", model, "cpu", "fp32")
    assert backend.describe() == "torch/fp32/cpu"
    assert f"TensorRT engine {stage} failed" in backend.fallback and message in backend.fallback
    image, embeddings = example_inputs(model, 4)
    assert backend(image, embeddings).shape[1] == 4


def test_a_broken_tensorrt_install_falls_back_too(stand_in, monkeypatch, model):
    def broken(device):
        raise ImportError("stand-in: libnvinfer.so.10: cannot open shared object file")
    monkeypatch.setattr(trt, "environment_fields", broken)
    backend = create_backend("auto", model, "cpu", "fp32")
    assert backend.describe() == "torch/fp32/cpu" and "libnvinfer" in backend.fallback


def test_a_corrupt_manifest_is_rebuilt_not_a_fallback(stand_in, model, tmp_path):
    first = create_backend("auto", model, "cpu", "fp32")
    assert first.describe() == "tensorrt/fp32/cpu" and not first.fallback
    (first.cache_result.path.parent / MANIFEST_FILE).write_text("[not a manifest")
    second = create_backend("auto", model, "cpu", "fp32")
    assert second.describe() == "tensorrt/fp32/cpu" and second.cache_result.built and not second.fallback
    assert json.loads((second.cache_result.path.parent / MANIFEST_FILE).read_text())["key"]["opt_classes"] == 32


@pytest.mark.parametrize("stage", STAGES)
def test_node_stays_up_and_diagnostics_say_why_it_fell_back(stand_in, monkeypatch, tmp_path, stage):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    from zs3_ros.synthetic_camera import moving_shapes, running_segmenter, wait_until

    message = inject(stand_in, monkeypatch, tmp_path, stage)
    parameters = {"model_config": str(BASELINE_CONFIG), "backend": "auto", "qos_reliability": "reliable"}
    with running_segmenter(parameters=parameters) as (node, client):
        received = []
        client.node.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
        frame = next(iter(moving_shapes(1, size=(48, 64))))
        outputs = client.wait_outputs(client.publish(frame), timeout=60)
        assert outputs is not None and outputs.info.backend.startswith("torch/fp32")
        assert wait_until(lambda: any(a.status for a in received), timeout=10)
        status = received[-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        assert f"TensorRT engine {stage} failed" in values["backend_fallback"]
        assert message in values["backend_fallback"]
        assert status.level == DiagnosticStatus.WARN and "fell back" in status.message


def test_zs3_export_prebuilds_the_engine_the_node_loads(stand_in, tmp_path, capsys):
    """Same model and parameter file -> same cache key: the node reuses the prebuilt engine,
    although the file also sets serving-only fields (threshold, vocabulary) that the node
    writes into its model config."""
    import yaml

    from zs3.cli import main
    from zs3_ros.synthetic_camera import moving_shapes, running_segmenter

    document = yaml.safe_load((REPO_ROOT / "config" / "segment_jetson.yaml").read_text())
    params = document["/**"]["ros__parameters"]
    params.update(device="cpu", backend="tensorrt", precision="fp32", unlabeled_threshold=0.25,  # fp32 on CPU: the stand-in
                  model_config=str(REPO_ROOT / params["model_config"]), qos_reliability="reliable")
    params_file = tmp_path / "segment_stand_in.yaml"
    params_file.write_text(yaml.safe_dump(document))

    assert main(["export", "--params", str(params_file), "--format", "tensorrt", "--device", "cpu"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["built"]
    with running_segmenter(params_file=params_file) as (node, client):
        backend = node._segmenter.backend
        assert backend.describe() == "tensorrt/fp32/cpu" and not backend.fallback
        assert not backend.cache_result.built, backend.cache_result.reason      # found, not rebuilt
        assert str(backend.cache_result.path) == exported["engine"]
        outputs = client.wait_outputs(client.publish(next(iter(moving_shapes(1, size=(48, 64))))), timeout=60)
        assert outputs is not None and outputs.info.backend.startswith("tensorrt/fp32")
    assert len(stand_in.compiled_inputs) == 1
