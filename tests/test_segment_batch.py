"""`Segmenter.segment_batch`: several frames of any sizes through ONE model call, with the
same labels as segmenting each frame alone, on every backend this CPU runs; the batch axis
of the exported graphs (ONNX dynamic batch, the TensorRT profile and cache key); a backend
built for a fixed batch refused with the reason.

The shipped default model (LDVC trained on the synthetic world, checkpoints/synthetic) on
synthetic scenes: trained weights separate the classes, so label equality is meaningful.
"""
import numpy as np
import onnxruntime
import pytest
import torch

from zs3_core import Segmenter
from zs3_core.backends import BackendError, create_backend
from zs3_core.backends.auto import cpu_has_native_bf16
from zs3_core.config import REPO_ROOT
from zs3_core.export import example_inputs
from zs3_core.export.onnx import export_onnx
from zs3_core.models import build_model
from zs3_ros.synthetic_camera import moving_shapes, world_class_names

DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "synthetic" / "ldvc.yaml"
SIZES = [(96, 128), (128, 128), (61, 203), (240, 320)]      # mixed sizes and aspect ratios, one batch


@pytest.fixture(scope="module")
def frames():
    return [next(iter(moving_shapes(1, size=size, seed=i))) for i, size in enumerate(SIZES)]


@pytest.fixture(scope="module")
def fp32():
    return Segmenter.from_config(DEFAULT_MODEL, backend="torch")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("ZS3_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
    yield
    mp.undo()


def _backend(fp32, name, onnx_cache):
    if name == "torch/fp32":
        return fp32
    if name == "torch/bf16":
        if not cpu_has_native_bf16():
            pytest.skip("this CPU has no native bf16 (torch bf16 would be emulated; `auto` never picks it here)")
        return Segmenter(fp32.model, fp32.config, backend="torch", precision="bf16")
    return Segmenter(fp32.model, fp32.config, backend="onnxruntime")


@pytest.mark.parametrize("backend", ["torch/fp32", "torch/bf16", "onnxruntime/fp32"])
def test_a_batch_labels_like_each_frame_alone(fp32, frames, onnx_cache, backend):
    segmenter = _backend(fp32, backend, onnx_cache)
    vocab = segmenter.encode_vocabulary(world_class_names() + ["background"])
    batched = segmenter.segment_batch(frames, vocabulary=vocab)
    assert len(batched) == len(frames)
    for rgb, result in zip(frames, batched):
        alone = segmenter.segment(rgb, vocabulary=vocab)
        assert result.labels.shape == rgb.shape[:2], "each frame at its own resolution"
        np.testing.assert_array_equal(result.labels, alone.labels)
        np.testing.assert_allclose(result.confidence, alone.confidence, atol=1e-5, rtol=0)
        np.testing.assert_allclose(result.class_fraction, alone.class_fraction, atol=1e-6)
        assert result.vocabulary_version == vocab.vocabulary_version
        assert result.timings["batch_size"] == len(frames) and alone.timings["batch_size"] == 1
    assert len(set(np.unique(batched[3].labels).tolist()) - {255}) >= 2, "the scene is segmented, not blank"


def test_bad_frames_in_a_batch_are_named_and_nothing_is_segmented(fp32, frames):
    from zs3_core.preprocess import ImageInputError

    with pytest.raises(ImageInputError, match="HxWx3"):
        fp32.segment_batch([frames[0], frames[1][:, :, 0]], vocabulary=fp32.encode_vocabulary(["red circle"]))
    assert fp32.segment_batch([], vocabulary=fp32.encode_vocabulary(["red circle"])) == []


@pytest.mark.parametrize("name", ["ldvc", "deop"])
def test_onnx_graph_has_a_dynamic_batch_beside_the_dynamic_class_count(tmp_path, name):
    from zs3_core.config import load_model_config

    model = build_model(load_model_config(REPO_ROOT / "checkpoints" / "synthetic" / f"{name}.yaml")).eval()
    path = export_onnx(model, tmp_path / "m.onnx", max_classes=64)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape[0] for i in session.get_inputs()] == ["B", "C"]
    for batch, classes in ((1, 3), (3, 7), (5, 1)):
        image, embeddings = example_inputs(model, classes, seed=batch, batch=batch)
        (probs,) = session.run(None, {"image": image.numpy(), "class_embeddings": embeddings.numpy()})
        with torch.no_grad():
            expected = model.predict(image, embeddings).numpy()
        assert probs.shape == expected.shape and probs.shape[:2] == (batch, classes)
        assert np.abs(probs - expected).max() <= 1e-4


def test_a_graph_fixed_to_one_frame_is_refused_for_a_batch(fp32, tmp_path, frames):
    """A foreign ONNX file whose batch axis is the number 1 (exported without a dynamic batch)."""
    from zs3_core.export.image_path import ImagePath

    path = tmp_path / "batch1.onnx"
    image, embeddings = example_inputs(fp32.model, 7)
    torch.onnx.export(ImagePath(fp32.model).eval(), (image, embeddings), str(path), dynamo=False,
                      input_names=["image", "class_embeddings"], output_names=["probabilities"],
                      dynamic_axes={"class_embeddings": {0: "C"}, "probabilities": {1: "C"}}, opset_version=17)
    backend = create_backend("onnxruntime", fp32.model, onnx_path=path)
    assert backend.max_batch == 1
    segmenter = Segmenter(fp32.model, fp32.config, backend=backend)
    vocab = segmenter.encode_vocabulary(["red circle", "green square"])
    assert segmenter.segment(frames[0], vocabulary=vocab).labels.shape == frames[0].shape[:2]
    with pytest.raises(BackendError, match="2 frames in one batch.*at most 1"):
        segmenter.segment_batch(frames[:2], vocabulary=vocab)
