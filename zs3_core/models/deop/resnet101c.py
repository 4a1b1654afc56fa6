"""ResNet-101c: the proposal backbone of DeOP's mask proposal network (DeOP Sec. 5, supp. A),
in plain PyTorch.

What the reference trains on (zsseg / DeOP configs `*_R101c_*`, detectron2's
`build_resnet_deeplab_backbone`): ResNet-101 with

- the DeepLab "deep stem" (the "c" of ResNet-c, Bag of Tricks Sec. 4.1): three 3×3 convs
  3→64 (stride 2), 64→64, 64→128, each with BN + ReLU, then the 3×3 max pool, in place of
  torchvision's single 7×7 conv 3→64; the first bottleneck therefore sees 128 channels;
- the stride on the 3×3 conv of each bottleneck (`STRIDE_IN_1X1: False`, torchvision's
  "ResNet v1.5" as well);
- multi-grid dilations (1, 2, 4) on the three 3×3 convs of the last stage
  (`RES5_MULTI_GRID: [1, 2, 4]`, stride kept at 32);
- frozen batch norm (detectron2's default `FrozenBN`: ImageNet statistics and affine terms
  fixed, since per-GPU batches are too small to re-estimate them), every conv trained.

Parameter names follow torchvision's `resnet101` state dict exactly (`layer1.0.conv1.weight`,
`layer1.0.downsample.1.running_var`, ...), so torchvision checkpoints load as they are.
Differences from torchvision, all from the deep stem or from segmentation use:
- `stem.conv1/bn1/conv2/bn2/conv3/bn3` replace torchvision's `conv1` / `bn1`
  (`stem="standard"` keeps torchvision's stem and names instead, for torchvision weights);
- `layer1.0.conv1.weight` and `layer1.0.downsample.0.weight` take 128 input channels, not 64;
- no `fc` (classification head): the backbone returns the four stage outputs.
`backbone_convert.py` maps detectron2 / DeepLab and mmcv checkpoints onto these names.
"""
from __future__ import annotations

import torch
from torch import nn

STAGE_BLOCKS = (3, 4, 23, 3)            # ResNet-101
STAGE_WIDTHS = (64, 128, 256, 512)      # bottleneck widths; outputs are 4× these
EXPANSION = 4
STEMS = ("deep", "standard")


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride, dilation) → 1×1 ×4 with a projection shortcut where the shape changes
    (torchvision's names: conv1..3, bn1..3, downsample.0/1)."""

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        cout = width * EXPANSION
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class DeepStem(nn.Module):
    """DeepLab's stem: three 3×3 conv-BN-ReLU (3→64 stride 2, 64→64, 64→128), then 3×3 max pool."""

    def __init__(self, out_channels: int = 128):
        super().__init__()
        half = out_channels // 2
        self.conv1 = nn.Conv2d(3, half, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, out_channels, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.maxpool(self.relu(self.bn3(self.conv3(x))))


class ResNet101C(nn.Module):
    """(B, 3, S, S) → [(B, 256, S/4, S/4), (B, 512, S/8, ·), (B, 1024, S/16, ·), (B, 2048, S/32, ·)].

    `stem`: "deep" (ResNet-101c, the paper's) or "standard" (torchvision's 7×7 stem, for
    ImageNet weights that only exist in torchvision's form). Batch norm stays frozen in
    `train()` mode too (see module doc).
    """

    channels = tuple(w * EXPANSION for w in STAGE_WIDTHS)

    def __init__(self, stem: str = "deep", res5_multi_grid: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"ResNet-101 stem must be one of {STEMS}, got {stem!r}")
        if len(res5_multi_grid) != STAGE_BLOCKS[-1]:
            raise ValueError(f"res5_multi_grid needs one dilation per last-stage block ({STAGE_BLOCKS[-1]}), "
                             f"got {list(res5_multi_grid)}")
        self.stem_type = stem
        if stem == "deep":
            self.stem = DeepStem(128)
            cin = 128
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
        for index, (blocks, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS)):
            last = index == len(STAGE_BLOCKS) - 1
            dilations = res5_multi_grid if last else (1,) * blocks
            stage = []
            for block in range(blocks):
                stride = 2 if block == 0 and index > 0 else 1
                stage.append(Bottleneck(cin, width, stride, dilations[block]))
                cin = width * EXPANSION
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "ResNet101C":
        """Frozen BN: every norm layer stays in eval mode (running statistics) whatever `mode` is."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.stem_type == "deep":
            x = self.stem(x)
        else:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for index in range(len(STAGE_BLOCKS)):
            x = getattr(self, f"layer{index + 1}")(x)
            features.append(x)
        return features
