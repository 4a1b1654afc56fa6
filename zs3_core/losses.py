"""Segmentation losses of the two papers: sigmoid focal loss and dice loss on per-class maps.

Both models are trained with a linear combination of focal loss (Lin et al. 2017) and dice
loss (Milletari et al. 2016), LDVC Sec. 4 "Implementation Details" (×100 focal, ×1 dice,
as ZegCLIP) and DeOP Sec. 3.2 (×2.0 focal, ×0.8 dice in the reference code).

Ignored pixels (label 255) follow the reference code of each paper (docs/sources.md):
- LDVC / ZegCLIP (`ignored="negative"`): an ignored pixel's one-hot row is all zeros, so
  the focal term pushes every class towards 0 there; dice is averaged over the classes
  present in each image only.
- DeOP / zsseg (`ignored="void"`): an ignored pixel is a positive of an extra "void"
  channel that the model predicts alongside the C classes.

Focal normalisation (`normalization`): ZegCLIP's criterion, which both papers inherit, takes
each (image, class) map's mean over pixels, sums those means over all B·C maps and divides by
the number of (image, class) pairs present in the batch ("present_pairs"). "all_maps" divides
by all B·C maps instead, which is smaller by B·C / present (about 7.5× on a VOC batch of 15
seen classes, 20-30× on COCO-Stuff), so against dice ×1 the focal ×100 weighs far less.

Targets are (B, H, W) int64 label maps whose values index the class list passed to the
model's forward, 255 = ignore.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def one_hot_targets(target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX,
                    void: bool = False) -> torch.Tensor:
    """(B, H, W) labels → (B, K, H, W) float one-hot, K = num_classes (+1 with `void`).

    Ignored pixels become all-zero rows, or positives of channel `num_classes` with `void`.
    Raises ValueError for labels outside [0, num_classes) other than `ignore_index`.
    """
    if target.dim() != 3:
        raise ValueError(f"targets must be (B, H, W) label maps, got shape {tuple(target.shape)}")
    ignored = target == ignore_index
    valid = target[~ignored]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        raise ValueError(f"target labels must lie in [0, {num_classes}) or be {ignore_index}; "
                         f"found values in [{int(valid.min())}, {int(valid.max())}]")
    filled = target.masked_fill(ignored, num_classes)
    onehot = F.one_hot(filled, num_classes + 1).permute(0, 3, 1, 2).float()
    return onehot if void else onehot[:, :num_classes]


FOCAL_NORMALIZATIONS = ("present_pairs", "all_maps")


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0, normalization: str = "all_maps") -> torch.Tensor:
    """Binary focal loss FL(p_t) = −α_t (1 − p_t)^γ log p_t (Lin et al. 2017, eq. 5) of
    pre-sigmoid `logits` against 0/1 `targets`, both (B, K, H, W) (or (M, P): M maps of P pixels).

    "present_pairs" (ZegCLIP): Σ over maps of each map's pixel mean ÷ the number of maps whose
    target has a positive pixel (at least 1). "all_maps": the mean over every element, i.e.
    the same sum ÷ all maps; the two agree only when every map has a positive (the matched
    proposal masks of MaskFormer's set loss, one target region per map).
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = _focal_weighting(ce, prob, targets, alpha, gamma)
    if normalization == "all_maps":
        return loss.mean()
    return _sum_of_map_means(loss, targets, normalization)


def _sum_of_map_means(loss: torch.Tensor, targets: torch.Tensor, normalization: str) -> torch.Tensor:
    """ZegCLIP's `loss.mean(1).sum() / num_masks` over (…, H, W) maps, num_masks = maps with a positive."""
    if normalization not in FOCAL_NORMALIZATIONS:
        raise ValueError(f"focal normalization must be one of {FOCAL_NORMALIZATIONS}, got {normalization!r}")
    maps = loss.flatten(2) if loss.dim() > 2 else loss
    present = (targets.flatten(2) if targets.dim() > 2 else targets).amax(-1) > 0.5
    return maps.mean(-1).sum() / present.sum().clamp_min(1).to(loss.dtype)


def probability_focal_loss(probs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                           gamma: float = 2.0, eps: float = 1e-6, normalization: str = "all_maps") -> torch.Tensor:
    """Focal loss for scores that are already probabilities (DeOP's mask-class combination),
    against 0/1 `targets` (one-hot maps).

    DeOP's semantic map Σ_n sigmoid(M_n)·softmax(cls_n) is not a sigmoid of one logit, so the
    cross-entropy is taken on the clamped scores directly. With 0/1 targets, p_t and α_t are
    selections, not blends, and each image is reduced on its own: on a CPU the chain of
    elementwise ops over a (16, 31, 128, 128) map is memory-bound, and an image's slice stays
    in cache (fp32 loss and gradients bit-identical to the blended formula; 2× faster).
    `normalization` as in `sigmoid_focal_loss` ("all_maps": the mean over all elements).
    """
    if normalization not in FOCAL_NORMALIZATIONS:
        raise ValueError(f"focal normalization must be one of {FOCAL_NORMALIZATIONS}, got {normalization!r}")
    total = probs.new_zeros((), dtype=torch.float32)
    for image_probs, image_targets in zip(probs.split(1), targets.split(1)):
        prob = image_probs.clamp(eps, 1.0 - eps)
        positive = image_targets > 0.5
        p_t = torch.where(positive, prob, 1.0 - prob)
        loss = -p_t.log() * (1.0 - p_t) ** gamma
        if alpha >= 0:
            loss = loss * torch.where(positive, alpha, 1.0 - alpha)
        total = total + loss.sum()
    if normalization == "all_maps":
        return total / probs.numel()
    present = (targets.flatten(2).amax(-1) > 0.5).sum().clamp_min(1)
    return total / (probs[0, 0].numel() * present)


def _focal_weighting(ce, prob, targets, alpha, gamma):
    p_t = prob * targets + (1.0 - prob) * (1.0 - targets)
    loss = ce * (1.0 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
    return loss


def dice_loss(probs: torch.Tensor, targets: torch.Tensor, present_only: bool = True,
              smooth: float = 1.0) -> torch.Tensor:
    """1 − (2|P∩T| + 1) / (|P| + |T| + 1) per (image, class) map, averaged.

    `probs`, `targets`: (B, K, H, W). With `present_only` the average runs over the
    (image, class) pairs whose target has at least one positive pixel (ZegCLIP); a batch
    with no positive pixel at all gives a zero loss that still depends on `probs`.
    """
    p = probs.flatten(2)
    t = targets.flatten(2)
    numerator = 2.0 * (p * t).sum(-1) + smooth
    denominator = p.sum(-1) + t.sum(-1) + smooth
    loss = 1.0 - numerator / denominator                              # (B, K)
    if not present_only:
        return loss.mean()
    present = (t.sum(-1) > 0).to(loss.dtype)
    return (loss * present).sum() / present.sum().clamp_min(1.0)


def subsample_targets(targets: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, H, W) labels → every `stride`-th pixel per axis, each the centre of its stride×stride
    cell (what bilinear resizing of the logits to that size samples).

    Why: when the logits are a coarse grid (8×8 for 128² inputs), full-resolution focal and
    dice losses on their bilinear upsampling cost most of a training step on a CPU (65 % for
    the synthetic LDVC) while adding little the subsampled labels do not carry.
    """
    if stride == 1:
        return targets
    return targets[..., stride // 2::stride, stride // 2::stride]


def resize_to_target(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling of (B, K, h, w) maps to the (B, H, W) target's size (as ZegCLIP)."""
    if maps.shape[-2:] == target.shape[-2:]:
        return maps
    return F.interpolate(maps, size=target.shape[-2:], mode="bilinear", align_corners=False)
