"""The node serves through every CPU backend its `backend`/`precision` parameters select."""
from pathlib import Path

import pytest

from zs3_core.bags.conversions import image_to_numpy
from zs3_ros.synthetic_camera import moving_shapes, running_segmenter

PARAMS_FILE = Path(__file__).resolve().parent.parent / "config" / "segment.yaml"


@pytest.mark.parametrize("backend, precision", [("onnxruntime", "fp32"), ("torch", "bf16")])
def test_node_runs_with_the_selected_backend(tmp_path, monkeypatch, backend, precision):
    monkeypatch.setenv("ZS3_ONNX_CACHE", str(tmp_path / "onnx"))
    parameters = {"backend": backend, "precision": precision, "qos_reliability": "reliable"}
    with running_segmenter(params_file=PARAMS_FILE, parameters=parameters) as (node, client):
        frame = next(iter(moving_shapes(1, size=(48, 64))))
        outputs = client.wait_outputs(client.publish(frame), timeout=120)
        assert outputs is not None, f"no labels from the node on {backend}/{precision}"
        labels = image_to_numpy(outputs.labels)
        named = labels < len(node.vocabulary.names)   # or unlabeled: background, or below the open-set threshold
        assert labels.shape == (48, 64) and (named | (labels == node.vocabulary.unlabeled_value)).all()
        assert outputs.info.backend.startswith(f"{backend}/{precision}")
