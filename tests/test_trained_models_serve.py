"""Trained LDVC and DeOP checkpoints serve through the Segmenter and the live node unchanged.

Each test writes what a user has after training: pretrained CLIP weights (here a tiny CLIP
with random weights saved as a state dict), a model config naming them, and a safetensors
checkpoint of the trainable tensors. The node loaded from those files must label a frame
exactly as the Segmenter loaded from the same files does.
"""
import numpy as np
import pytest
import torch
import yaml

from zs3_core import Segmenter
from zs3_core.clip import CLIP, ClipConfig
from zs3_core.config import load_model_config
from zs3_core.model_checkpoint import CheckpointMismatchError, save_model_checkpoint
from zs3_core.models import build_model
from zs3_core.bags.conversions import image_to_numpy
from zs3_ros.synthetic_camera import moving_shapes, running_segmenter

OPTIONS = {
    "ldvc": {"tap_layers": [3, 5], "windows_per_side": 4, "route_top_k": 4, "visual_prompt_tokens": 4},
    "deop": {"proposal_queries": 10, "proposal_channels": [16, 32, 64, 128], "proposal_hidden_dim": 64,
             "proposal_mask_dim": 32, "proposal_decoder_layers": 1, "proposal_ffn_dim": 64, "anchor_ffn_dim": 64},
}
CLASSES = ["red circle", "green square", "blue triangle"]


def write_trained_model(tmp_path, name: str):
    """(config path, checkpoint path) of a `name` model whose trainable tensors moved off init."""
    torch.manual_seed(0)
    clip_path = tmp_path / "tiny_clip.pt"
    torch.save(CLIP(ClipConfig.tiny(image_size=128)).state_dict(), clip_path)
    config = {"model": {"name": name, "clip": "tiny", "clip_weights": str(clip_path), "input_size": 128,
                        "prompt_template": "{}.", "options": OPTIONS[name]}}
    config_path = tmp_path / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    model = build_model(load_model_config(config_path))
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(0.05 * torch.randn_like(p))          # "training" moved every trainable tensor
    checkpoint = save_model_checkpoint(tmp_path / f"{name}.safetensors", model, config, step=1)
    return config_path, checkpoint, model


@pytest.mark.parametrize("name", ["ldvc", "deop"])
def test_checkpoint_restores_the_trained_tensors(tmp_path, name):
    config_path, checkpoint, trained = write_trained_model(tmp_path, name)
    seg = Segmenter.from_config(config_path, checkpoint=str(checkpoint), backend="torch")
    loaded = seg.model.trainable_parameters()
    for key, tensor in trained.trainable_parameters().items():
        torch.testing.assert_close(loaded[key], tensor.detach(), msg=key)


def test_checkpoint_of_another_model_is_refused_with_the_reason(tmp_path):
    _, ldvc_checkpoint, _ = write_trained_model(tmp_path, "ldvc")
    deop_config, _, _ = write_trained_model(tmp_path, "deop")
    with pytest.raises(CheckpointMismatchError, match="ldvc"):
        Segmenter.from_config(deop_config, checkpoint=str(ldvc_checkpoint))


@pytest.mark.parametrize("name", ["ldvc", "deop"])
def test_node_serves_the_checkpoint_like_the_segmenter(tmp_path, name):
    config_path, checkpoint, _ = write_trained_model(tmp_path, name)
    frame = next(iter(moving_shapes(1, size=(96, 128))))
    reference = Segmenter.from_config(config_path, checkpoint=str(checkpoint), backend="torch", precision="fp32")
    reference.set_vocabulary(CLASSES)
    expected = reference.segment(frame).labels
    parameters = {"model_config": str(config_path), "checkpoint": str(checkpoint), "classes": CLASSES,
                  "prompt_template": "{}.", "backend": "torch", "precision": "fp32",
                  "qos_reliability": "reliable"}
    with running_segmenter(parameters=parameters) as (node, client):
        outputs = client.wait_outputs(client.publish(frame), timeout=60)
        assert outputs is not None, f"the node serving {name} published nothing"
        np.testing.assert_array_equal(image_to_numpy(outputs.labels), expected)
