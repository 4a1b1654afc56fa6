"""MaskFormer's set-prediction loss for DeOP's proposals: Hungarian matching of proposals to
the class regions of an image, then per-proposal mask focal + dice and, optionally, class
cross-entropy (Cheng et al. 2021, Sec. 3.2). DeOP trains its class-agnostic proposals with
the mask losses alone (`class_weight` 0: matching by mask cost only).

Why per proposal: a loss on the combined semantic map only tells the proposal network how
the *mixture* of its masks should look, so no single query is pushed to cover one region;
on the synthetic world such proposals stayed near their untrained quality (best-proposal
IoU 0.22 against 0.16 untrained, bench/deop_proposal_quality.py). Matching gives every
region one owner query and a mask target of its own.

Targets are semantic: one binary mask per class present in an image (zsseg), built from the
(H, W) label map resized to the masks; ignored pixels (255: background, unseen classes)
belong to no target, so they are negatives of every matched mask. With a class term,
unmatched queries are trained towards "void" with weight `no_object_weight` (0.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zs3_core.losses import IGNORE_INDEX, dice_loss, sigmoid_focal_loss


@dataclass(frozen=True)
class SetCriterionWeights:
    """Loss and matching-cost weights (MaskFormer: class 1, mask focal 20, dice 1, void 0.1)."""
    class_weight: float = 1.0
    mask_weight: float = 20.0
    dice_weight: float = 1.0
    no_object_weight: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def semantic_to_region_targets(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX):
    """(H, W) label map → (K,) class ids present and (K, H, W) float masks, one per class."""
    classes = labels.unique()
    classes = classes[classes != ignore_index]
    masks = (labels.unsqueeze(0) == classes.view(-1, 1, 1)).float()
    return classes, masks


def pairwise_focal_cost(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """(N, P) mask logits × (K, P) binary targets → (N, K) mean focal loss of each pairing."""
    prob = logits.sigmoid()
    pos = alpha * (1 - prob) ** gamma * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = (1 - alpha) * prob ** gamma * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.t() + neg @ (1 - targets).t()) / logits.shape[1]


def pairwise_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, P) mask logits × (K, P) binary targets → (N, K) dice loss of each pairing."""
    prob = logits.sigmoid()
    numerator = 2 * prob @ targets.t()
    denominator = prob.sum(-1, keepdim=True) + targets.sum(-1).unsqueeze(0)
    return 1 - (numerator + 1) / (denominator + 1)


@torch.no_grad()
def hungarian_match(class_logits: torch.Tensor, mask_logits: torch.Tensor, target_classes: torch.Tensor,
                    target_masks: torch.Tensor, weights: SetCriterionWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: (N, C+1) logits, (N, P) masks, (K,) classes, (K, P) masks → matched
    (query indices, target indices), each of length min(N, K), minimising MaskFormer's cost."""
    from scipy.optimize import linear_sum_assignment

    masks = mask_logits.float()
    class_cost = -class_logits.float().softmax(-1)[:, target_classes] if weights.class_weight else 0.0
    cost = (weights.class_weight * class_cost
            + weights.mask_weight * pairwise_focal_cost(masks, target_masks, weights.focal_alpha, weights.focal_gamma)
            + weights.dice_weight * pairwise_dice_cost(masks, target_masks))
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    device = class_logits.device
    return torch.as_tensor(rows, dtype=torch.long, device=device), torch.as_tensor(cols, dtype=torch.long, device=device)


def set_prediction_loss(class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
                        weights: SetCriterionWeights) -> dict[str, torch.Tensor]:
    """(B, N, C+1) class logits (void last), (B, N, h, w) mask logits, (B, H, W) labels →
    {"loss", "loss_class", "loss_mask", "loss_dice"}; labels are resized to the masks (nearest)."""
    b, n, c_plus_void = class_logits.shape
    void = c_plus_void - 1
    small = F.interpolate(labels.unsqueeze(1).float(), size=mask_logits.shape[-2:], mode="nearest").squeeze(1).long()
    masks_flat = mask_logits.float().flatten(2)
    class_targets = torch.full((b, n), void, dtype=torch.long, device=class_logits.device)
    matched_logits, matched_targets = [], []
    for i in range(b):
        classes, region_masks = semantic_to_region_targets(small[i])
        if classes.numel() == 0:
            continue
        region_masks = region_masks.flatten(1)
        queries, regions = hungarian_match(class_logits[i], masks_flat[i], classes, region_masks, weights)
        class_targets[i, queries] = classes[regions]
        matched_logits.append(masks_flat[i, queries])
        matched_targets.append(region_masks[regions])
    loss_class = masks_flat.new_zeros(())
    if weights.class_weight:
        class_weights = torch.ones(c_plus_void, device=class_logits.device)
        class_weights[void] = weights.no_object_weight
        loss_class = F.cross_entropy(class_logits.float().transpose(1, 2), class_targets, weight=class_weights)
    if matched_logits:
        logits, targets = torch.cat(matched_logits), torch.cat(matched_targets)        # (M, P) each
        loss_mask = sigmoid_focal_loss(logits, targets, weights.focal_alpha, weights.focal_gamma)
        loss_dice = dice_loss(logits.sigmoid().unsqueeze(1), targets.unsqueeze(1))
    else:   # no labelled region in the batch: a zero that still depends on the masks
        loss_mask = loss_dice = masks_flat.sum() * 0.0
    loss = (weights.class_weight * loss_class + weights.mask_weight * loss_mask + weights.dice_weight * loss_dice)
    return {"loss": loss, "loss_class": loss_class.detach(), "loss_mask": loss_mask.detach(),
            "loss_dice": loss_dice.detach()}
