"""DeOP's ResNet-101c proposal backbone and its checkpoint converter
(zs3_core.models.deop.resnet101c / backbone_convert): names and sizes against torchvision's
ResNet-101, strict loading of torchvision, detectron2 and mmcv files the tests write."""
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from zs3_core.models.deop.backbone_convert import (BackboneWeightsError, backbone_from_checkpoint,
                                                   load_backbone_weights)
from zs3_core.models.deop.proposals import MaskProposalNetwork
from zs3_core.models.deop.resnet101c import ResNet101C

TORCHVISION_LISTING = Path(__file__).parent / "data" / "torchvision_resnet101_state_dict.txt"
TORCHVISION_PARAMETERS = 44_549_160          # torchvision's model docs, ResNet101_Weights "num_params"
FC_PARAMETERS = 2048 * 1000 + 1000
# The deep stem (three 3x3 convs 3->64->64->128 + 3 BN) replaces the 7x7 conv1 (3->64) + bn1, and
# the first bottleneck's conv1 and shortcut conv read 128 channels instead of 64.
DEEP_STEM_EXTRA = ((64 * 3 * 9 + 64 * 64 * 9 + 128 * 64 * 9 + 2 * (64 + 64 + 128)) - (64 * 3 * 49 + 2 * 64)
                   + 64 * 64 + 256 * 64)


def torchvision_state_shapes() -> dict[str, tuple[int, ...]]:
    lines = [line.split() for line in TORCHVISION_LISTING.read_text().splitlines() if not line.startswith("#")]
    return {name: () if shape == "scalar" else tuple(int(s) for s in shape.split("x")) for name, shape in lines}


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def test_standard_stem_has_torchvision_resnet101_names_shapes_and_size_without_fc():
    reference = torchvision_state_shapes()
    assert len(reference) == 626
    backbone = ResNet101C("standard")
    expected = {k: v for k, v in reference.items() if not k.startswith("fc.")}
    assert list(shapes(backbone)) == list(expected)                  # same names, same order
    assert shapes(backbone) == expected
    assert sum(p.numel() for p in backbone.parameters()) + FC_PARAMETERS == TORCHVISION_PARAMETERS


def test_deep_stem_differs_from_torchvision_only_in_the_stated_places():
    reference = torchvision_state_shapes()
    deep = shapes(ResNet101C("deep"))
    stem = {k for k in deep if k.startswith("stem.")}
    assert stem == {f"stem.{layer}.{p}" for layer in ("conv1", "conv2", "conv3") for p in ("weight",)} | {
        f"stem.bn{i}.{p}" for i in (1, 2, 3)
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    replaced = {k for k in reference if k.startswith(("conv1.", "bn1.", "fc."))}
    assert set(deep) - stem == set(reference) - replaced
    differing = {k for k in set(deep) - stem if deep[k] != reference[k]}
    assert differing == {"layer1.0.conv1.weight", "layer1.0.downsample.0.weight"}
    assert deep["layer1.0.conv1.weight"][1] == deep["layer1.0.downsample.0.weight"][1] == 128
    count = sum(p.numel() for p in ResNet101C("deep").parameters())
    assert count == TORCHVISION_PARAMETERS - FC_PARAMETERS + DEEP_STEM_EXTRA


def test_backbone_gives_the_four_strides_and_keeps_batch_norm_frozen():
    backbone = ResNet101C("deep").train()
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert not any(p.requires_grad for m in norms for p in m.parameters())
    assert [m.conv2.dilation for m in backbone.layer4] == [(1, 1), (2, 2), (4, 4)]     # multi-grid (1, 2, 4)
    network = MaskProposalNetwork(num_queries=5, hidden_dim=32, mask_dim=16, decoder_layers=1, heads=4, ffn_dim=32,
                                  backbone="resnet101c")
    assert network(torch.randn(1, 3, 64, 64)).shape == (1, 5, 16, 16)


def random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone()
            for k, v in module.state_dict().items()}


def assert_loaded(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for name, tensor in backbone.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(tensor, state[name], msg=name)


def test_torchvision_checkpoint_loads_strictly_into_the_standard_stem(tmp_path):
    state = random_state(ResNet101C("standard"), 0)
    with_head = {**state, "fc.weight": torch.randn(1000, 2048), "fc.bias": torch.zeros(1000)}
    torch.save(with_head, tmp_path / "resnet101.pth")
    backbone = ResNet101C("standard")
    assert load_backbone_weights(backbone, tmp_path / "resnet101.pth") == "standard"
    assert_loaded(backbone, state)
    with pytest.raises(BackboneWeightsError, match="standard stem but the backbone was built with stem='deep'"):
        load_backbone_weights(ResNet101C("deep"), tmp_path / "resnet101.pth")


def detectron2_name(name: str) -> str:
    """Our (torchvision-style) names → detectron2's, written out independently of the converter."""
    parts = name.split(".")
    if parts[0] == "stem":                       # stem.bn2.x -> stem.conv2.norm.x
        layer, rest = parts[1], parts[2:]
        return f"stem.conv{layer[-1]}.norm.{rest[0]}" if layer.startswith("bn") else f"stem.{layer}.{rest[0]}"
    stage, block, layer, rest = parts[0], parts[1], parts[2], parts[3:]
    prefix = f"res{int(stage[-1]) + 1}.{block}"
    if layer == "downsample":
        return f"{prefix}.shortcut.weight" if rest[0] == "0" else f"{prefix}.shortcut.norm.{rest[1]}"
    if layer.startswith("bn"):
        return f"{prefix}.conv{layer[-1]}.norm.{rest[0]}"
    return f"{prefix}.{layer}.{rest[0]}"


def test_detectron2_deeplab_pkl_loads_strictly_and_nothing_else_is_unpickled(tmp_path):
    state = random_state(ResNet101C("deep"), 1)
    model = {detectron2_name(k): v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert "res5.2.conv3.norm.running_var" in model and "stem.conv3.norm.weight" in model
    with open(tmp_path / "R-103.pkl", "wb") as f:
        pickle.dump({"model": model, "__author__": "test"}, f, protocol=2)    # as older detectron2 files
    backbone = backbone_from_checkpoint(tmp_path / "R-103.pkl")
    assert backbone.stem_type == "deep"
    assert_loaded(backbone, state)

    class RunsCode:
        def __reduce__(self):
            return os.system, ("touch " + str(tmp_path / "pwned"),)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": {"x": RunsCode()}}, f)
    with pytest.raises(BackboneWeightsError, match="refusing to unpickle"):
        backbone_from_checkpoint(tmp_path / "evil.pkl")
    assert not (tmp_path / "pwned").exists()


def test_mmcv_v1c_safetensors_loads_strictly_and_a_wrong_shape_is_named(tmp_path):
    state = random_state(ResNet101C("deep"), 2)
    mmcv_stem = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4", "conv3": "6", "bn3": "7"}
    renamed = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "stem":
            name = ".".join(["stem", mmcv_stem[parts[1]]] + parts[2:])
        renamed[name] = tensor
    save_file(renamed, str(tmp_path / "resnet101_v1c.safetensors"))
    backbone = ResNet101C("deep")
    load_backbone_weights(backbone, tmp_path / "resnet101_v1c.safetensors")
    assert_loaded(backbone, state)
    renamed["layer3.0.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    save_file(renamed, str(tmp_path / "bad.safetensors"))
    with pytest.raises(BackboneWeightsError, match="layer3.0.conv2.weight"):
        load_backbone_weights(ResNet101C("deep"), tmp_path / "bad.safetensors")
