"""The Segmenter contract the node, the CLI and bag evaluation rely on (tiny CLIP, random weights)."""
import dataclasses
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from zs3_core import Segmenter, VocabularyError
from zs3_core.config import REPO_ROOT, load_model_config
from zs3_core.preprocess import ImageInputError
from zs3_core.segmenter import postprocess

BASELINE_CONFIG = REPO_ROOT / "config" / "models" / "clip_baseline_tiny.yaml"   # random-weight tiny baseline: fast


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return Segmenter.from_config(BASELINE_CONFIG)


def test_labels_cover_the_input_frame(segmenter):
    vocab = segmenter.set_vocabulary(["person", "forklift", "pallet"])
    rgb = np.random.default_rng(0).integers(0, 255, (97, 131, 3), dtype=np.uint8)
    out = segmenter.segment(rgb)
    assert out.labels.shape == (97, 131) and out.labels.dtype == np.uint8
    assert out.labels.max() < 3
    assert out.confidence.shape == (97, 131) and out.confidence.dtype == np.float32
    assert 0.0 <= out.confidence.min() and out.confidence.max() <= 1.0
    assert out.class_confidence.shape == (3,) and out.class_fraction.shape == (3,)
    assert out.class_fraction.sum() == pytest.approx(1.0, abs=1e-5)
    assert out.vocabulary_version == vocab.vocabulary_version and out.unlabeled_value == 255
    assert set(out.timings) >= {"preprocess", "model", "postprocess", "total"}


def test_encoding_a_vocabulary_leaves_the_current_one_in_force(segmenter):
    current = segmenter.set_vocabulary(["cat", "dog"])
    other = segmenter.encode_vocabulary(["car", "road", "tree"])
    assert segmenter.vocabulary is current and other.vocabulary_version > current.vocabulary_version
    rgb = np.zeros((32, 32, 3), np.uint8)
    assert segmenter.segment(rgb).vocabulary_version == current.vocabulary_version
    assert segmenter.segment(rgb, vocabulary=other).vocabulary_version == other.vocabulary_version


def test_refused_vocabulary_keeps_the_old_one(segmenter):
    current = segmenter.set_vocabulary(["cat", "dog"])
    with pytest.raises(VocabularyError):
        segmenter.set_vocabulary(["cat", "cat"])
    assert segmenter.vocabulary is current


def test_cached_embeddings_equal_fresh_ones(segmenter):
    a = segmenter.encode_vocabulary(["cat", "dog"]).embeddings
    b = segmenter.encode_vocabulary(["dog", "cat", "bird"]).embeddings
    torch.testing.assert_close(a[0], b[1])
    fresh = segmenter.model.encode_classes(["bird"], segmenter.config.prompt_template)
    torch.testing.assert_close(b[2], fresh[0])


def test_more_than_255_classes_give_mono16_labels(segmenter):
    vocab = segmenter.encode_vocabulary([f"thing {i}" for i in range(300)])
    out = segmenter.segment(np.zeros((40, 40, 3), np.uint8), vocabulary=vocab)
    assert out.labels.dtype == np.uint16 and out.unlabeled_value == 65535
    assert out.labels.max() < 300


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8)])
def test_malformed_arrays_are_refused(segmenter, bad):
    segmenter.set_vocabulary(["cat"])
    with pytest.raises(ImageInputError):
        segmenter.segment(bad)


def test_no_vocabulary_is_an_error():
    seg = Segmenter.from_config(BASELINE_CONFIG)
    with pytest.raises(VocabularyError, match="no vocabulary"):
        seg.segment(np.zeros((8, 8, 3), np.uint8))


def test_postprocess_thresholds_unlabeled_pixels():
    probs = torch.tensor([[0.9, 0.4], [0.1, 0.6]]).view(1, 2, 1, 2)     # 2 classes, 1x2 image
    labels, conf, class_conf, class_frac, unlabeled = postprocess(probs, 1, 2, threshold=0.5)
    assert labels.tolist() == [[0, 1]]
    labels, conf, class_conf, class_frac, unlabeled = postprocess(probs, 1, 2, threshold=0.7)
    assert labels.tolist() == [[0, unlabeled]]
    assert class_frac.tolist() == pytest.approx([0.5, 0.0]) and class_conf[0] == pytest.approx(0.9)


def test_unlabeled_threshold_from_config_applies():
    config = dataclasses.replace(load_model_config(BASELINE_CONFIG), unlabeled_threshold=0.99)
    seg = Segmenter.from_config(config)
    seg.set_vocabulary([f"class {i}" for i in range(10)])
    out = seg.segment(np.zeros((16, 16, 3), np.uint8))
    assert (out.labels == out.unlabeled_value).all()       # random weights are never 99% sure of 1 in 10


def test_cli_segment_writes_labels_and_overlay(tmp_path):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    labels, over = tmp_path / "labels.png", tmp_path / "overlay.png"
    subprocess.run([sys.executable, "-m", "zs3.cli", "segment", str(image), "--classes", "red ball, blue box",
                    "--out", str(labels), "--overlay", str(over)], check=True, capture_output=True)
    written = cv2.imread(str(labels), cv2.IMREAD_UNCHANGED)
    # a class, or unlabeled where the default model's calibrated open-set threshold finds nothing (noise)
    assert written.shape == (60, 80) and set(np.unique(written).tolist()) <= {0, 1, 255}
    assert cv2.imread(str(over)).shape == (60, 80, 3)


def test_cli_segment_refuses_a_bad_vocabulary(tmp_path):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    proc = subprocess.run([sys.executable, "-m", "zs3.cli", "segment", str(image), "--classes", "a,,b",
                           "--out", str(tmp_path / "l.png")], capture_output=True, text=True)
    assert proc.returncode == 2 and "empty" in proc.stderr


def test_a_vocabulary_larger_than_the_backend_serves_is_refused_when_set(tmp_path):
    """An exported graph serves 1..max_classes; more must be refused at set time, with the
    old vocabulary kept, not fail on every frame afterwards."""
    from zs3_core.backends import BackendError
    from zs3_core.backends.onnxruntime_backend import OnnxRuntimeBackend

    plain = Segmenter.from_config(BASELINE_CONFIG, backend="torch")
    backend = OnnxRuntimeBackend(plain.model, max_classes=8, cache_dir=tmp_path)
    seg = Segmenter(plain.model, plain.config, backend=backend)
    kept = seg.set_vocabulary(["cat", "dog", "road"])
    with pytest.raises(VocabularyError, match="9 classes; the onnxruntime/fp32/cpu backend serves at most 8"):
        seg.set_vocabulary([f"thing {i}" for i in range(9)])
    assert seg.vocabulary is kept
    assert seg.segment(np.zeros((40, 40, 3), np.uint8)).labels.max() < 3
    with pytest.raises(BackendError, match="9 classes; this graph serves 1..8"):   # a direct call past it
        backend(torch.zeros(1, 3, 128, 128), torch.zeros(9, kept.embeddings.shape[1]))
