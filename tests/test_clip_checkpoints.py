"""Loading CLIP weights: OpenAI (state dict and TorchScript archive), open_clip training
checkpoints and safetensors all load strictly and reproduce the source model; mismatches
and damaged files fail with messages that say what is wrong. The tests write their own files."""
import warnings

import pytest
import torch
from safetensors.torch import save_file

from zs3_core.clip import (
    CLIP,
    ClipCheckpointError,
    ClipConfig,
    ClipStateDictMismatch,
    config_from_state_dict,
    load_clip,
    load_clip_state_dict,
)

TINY = ClipConfig.tiny()
OPENAI_EXTRAS = {"input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
                 "vocab_size": torch.tensor(49408)}


class NotATensor:
    """Stands for arbitrary pickled Python objects, which must never be unpickled."""


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return CLIP(TINY).eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, :4] = torch.tensor([[49406, 736, 14615, 49407], [49406, 1746, 2540, 49407]])
    return torch.randn(1, 3, 64, 64, generator=g), tokens


@pytest.fixture(scope="module")
def openai_file(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "openai_tiny.pt"
    torch.save({**source.state_dict(), **OPENAI_EXTRAS}, path)
    return path


def assert_same_model(loaded: CLIP, source: CLIP, inputs) -> None:
    images, tokens = inputs
    with torch.no_grad():
        a, b = loaded.visual(images, taps=(2,)), source.visual(images, taps=(2,))
        torch.testing.assert_close(a.patch_features, b.patch_features, atol=0, rtol=0)
        torch.testing.assert_close(a.global_feature, b.global_feature, atol=0, rtol=0)
        torch.testing.assert_close(loaded.encode_text(tokens), source.encode_text(tokens), atol=0, rtol=0)
    torch.testing.assert_close(loaded.logit_scale, source.logit_scale)


def test_openai_state_dict_loads_strictly_and_infers_the_config(openai_file, source, inputs):
    sd = load_clip_state_dict(openai_file)
    assert set(sd) == set(source.state_dict())  # extra int keys dropped
    assert config_from_state_dict(sd) == TINY
    assert_same_model(load_clip(openai_file), source, inputs)


def test_openai_fp16_weights_load_into_fp32(source, inputs, tmp_path):
    path = tmp_path / "fp16.pt"
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in source.state_dict().items()}, path)
    loaded = load_clip(path, TINY)
    assert loaded.visual.proj.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(inputs[0]), source.encode_image(inputs[0]), atol=2e-2, rtol=2e-2)


def test_openai_torchscript_archive_loads(source, inputs, tmp_path):
    class OpenAIArchive(CLIP):
        """OpenAI's JIT archives carry the scalars as buffers next to the weights."""

    archived = OpenAIArchive(TINY)
    archived.load_state_dict(source.state_dict())
    for name, value in OPENAI_EXTRAS.items():
        archived.register_buffer(name, value)
    path = tmp_path / "ViT-tiny.pt"
    with warnings.catch_warnings():  # tracing is deprecated and warns about shape checks; fine for a fixture
        warnings.simplefilter("ignore")
        torch.jit.trace_module(archived.eval(), {"encode_image": inputs[0]}).save(str(path))
    assert_same_model(load_clip(path), source, inputs)


def test_open_clip_training_checkpoint_with_ddp_prefix_loads(source, inputs, tmp_path):
    path = tmp_path / "epoch_3.pt"
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 3, "name": "tiny", "state_dict": wrapped, "optimizer": {"state": {}, "param_groups": []}},
               path)
    assert_same_model(load_clip(path, TINY), source, inputs)


def test_safetensors_loads(source, inputs, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    assert_same_model(load_clip(path), source, inputs)


def test_positional_grid_is_resized_at_load(openai_file, source, inputs):
    loaded = load_clip(openai_file, image_size=320)
    assert loaded.visual.positional_embedding.shape == (1 + 20 * 20, TINY.vision.width)
    images = torch.randn(1, 3, 320, 320)
    with torch.no_grad():  # the source interpolates per call with the same function
        torch.testing.assert_close(loaded.visual(images).patch_features, source.visual(images).patch_features)


def test_config_with_other_depth_names_the_difference(openai_file):
    config = ClipConfig.from_dict({"vision": {**TINY.vision.__dict__, "layers": 4}, "text": TINY.text.__dict__})
    with pytest.raises(ClipStateDictMismatch) as err:
        load_clip(openai_file, config)
    message = str(err.value)
    assert "checkpoint has 6 vision layers, config asks for 4" in message
    assert "unexpected keys: visual.transformer.resblocks.4." in message


def test_conv_stem_weights_infer_their_stem_and_load_exactly(inputs, tmp_path):
    torch.manual_seed(4)
    source = CLIP(ClipConfig.tiny(stem="conv")).eval()
    path = tmp_path / "conv_stem.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = load_clip(path)
    assert loaded.config.vision.stem == "conv" and loaded.config.vision.patch_size == 16
    assert_same_model(loaded, source, inputs)
    with pytest.raises(ClipStateDictMismatch, match="checkpoint has conv vision stem, config asks for patch"):
        load_clip(path, TINY)


def test_missing_and_misshapen_keys_are_listed(source, tmp_path):
    sd = dict(source.state_dict())
    del sd["ln_final.bias"]
    sd["visual.proj"] = torch.zeros(TINY.vision.width, 64)
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(ClipStateDictMismatch, match="missing keys: ln_final.bias") as err:
        load_clip(path, TINY)
    assert "visual.proj: checkpoint (192, 64), model (192, 128)" in str(err.value)


def test_truncated_checkpoint_raises_a_clear_error(openai_file, tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(openai_file.read_bytes()[:100_000])
    with pytest.raises(ClipCheckpointError, match="truncated or not a PyTorch"):
        load_clip(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ClipCheckpointError, match="safetensors"):
        load_clip_state_dict(garbage)


def test_pickled_objects_are_refused_not_executed(source, tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"state_dict": source.state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(ClipCheckpointError, match="not unpickled for safety"):
        load_clip(path)


def test_missing_file_and_non_clip_weights_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint not found"):
        load_clip(tmp_path / "nope.pt")
    path = tmp_path / "resnet.pt"
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ClipStateDictMismatch, match="ResNet CLIP models are not supported"):
        load_clip(path)


def test_safetensors_header_config_supplies_what_the_tensors_cannot_show(inputs, tmp_path):
    """The activation and a late class token leave no trace in the tensors: the safetensors
    header `zs3 pretrain` writes carries them, and a header that contradicts the tensors is refused."""
    import json

    torch.manual_seed(5)
    tiny = TINY.to_dict()
    gelu = ClipConfig.from_dict({"vision": {**tiny["vision"], "activation": "gelu", "class_token_block": 5},
                                 "text": {**tiny["text"], "activation": "gelu"}})
    source = CLIP(gelu).eval()
    tensors = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / "gelu.safetensors"
    save_file(tensors, str(path), metadata={"clip_config": json.dumps(gelu.to_dict())})
    loaded = load_clip(path)
    assert loaded.config == gelu
    assert_same_model(loaded, source, inputs)
    lying = tmp_path / "lying.safetensors"
    deeper = ClipConfig.from_dict({**gelu.to_dict(), "vision": {**gelu.to_dict()["vision"], "layers": 8}})
    save_file(tensors, str(lying), metadata={"clip_config": json.dumps(deeper.to_dict())})
    with pytest.raises(ClipStateDictMismatch, match="header's clip_config contradicts the weights: "
                                                    "checkpoint has 6 vision layers, header says 8"):
        load_clip(lying)
    garbled = tmp_path / "garbled.safetensors"
    save_file(tensors, str(garbled), metadata={"clip_config": "{not json"})
    with pytest.raises(ClipCheckpointError, match="unreadable clip_config"):
        load_clip(garbled)
