"""Focal and dice losses and the reference codes' handling of ignored pixels (zs3_core.losses)."""
import pytest
import torch
import torch.nn.functional as F

from zs3_core.losses import (dice_loss, one_hot_targets, probability_focal_loss, resize_to_target,
                             sigmoid_focal_loss, subsample_targets)


def test_ignored_pixels_are_all_negative_rows_or_void_positives():
    target = torch.tensor([[[0, 2], [255, 1]]])
    negative = one_hot_targets(target, 3)
    void = one_hot_targets(target, 3, void=True)
    assert negative.shape == (1, 3, 2, 2) and void.shape == (1, 4, 2, 2)
    assert negative[0, :, 1, 0].sum() == 0                       # ZegCLIP/LDVC: all-zero row
    assert void[0, :, 1, 0].tolist() == [0, 0, 0, 1]               # DeOP: void positive
    assert negative[0, :, 0, 1].tolist() == [0, 0, 1]


def test_labels_outside_the_class_list_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        one_hot_targets(torch.tensor([[[0, 3]]]), 3)


def test_focal_loss_matches_torchvision_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    targets = (torch.rand(2, 3, 4, 4) > 0.7).float()
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = 0.25 * targets + 0.75 * (1 - targets)
    expected = (alpha_t * ce * (1 - p_t) ** 2).mean()
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)
    # the probability form agrees when given the same probabilities
    torch.testing.assert_close(probability_focal_loss(p, targets), expected, atol=1e-5, rtol=1e-4)


def test_focal_loss_of_gamma_zero_and_no_alpha_is_binary_cross_entropy():
    logits = torch.randn(1, 2, 3, 3)
    targets = (torch.rand(1, 2, 3, 3) > 0.5).float()
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0),
                               F.binary_cross_entropy_with_logits(logits, targets))


def test_probability_focal_loss_and_its_gradient_equal_the_blended_formula():
    """The per-image, selection-based form (faster on a CPU) must train exactly as the
    reference blend p_t = p·t + (1 − p)(1 − t), α_t = α·t + (1 − α)(1 − t) does."""
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (3, 9, 7))
    labels[:, :2] = 255
    targets = one_hot_targets(labels, 4, void=True)
    raw = torch.rand(3, 5, 9, 7)
    raw[0, 0, 0, 0], raw[1, 1, 1, 1] = 0.0, 1.0                       # the clamped ends
    fast, reference = raw.clone().requires_grad_(), raw.clone().requires_grad_()
    prob = reference.clamp(1e-6, 1 - 1e-6)
    ce = -(targets * prob.log() + (1 - targets) * (1 - prob).log())
    p_t = prob * targets + (1 - prob) * (1 - targets)
    expected = ((0.25 * targets + 0.75 * (1 - targets)) * (ce * (1 - p_t) ** 2)).mean()
    loss = probability_focal_loss(fast, targets)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    assert torch.equal(fast.grad, reference.grad)


def test_dice_averages_only_over_classes_present():
    targets = torch.zeros(1, 2, 4, 4)
    targets[0, 0, :2] = 1                                           # class 1 absent
    perfect_for_present = targets.clone()
    perfect_for_present[0, 1] = 0.9                                 # wrong mass on the absent class
    assert dice_loss(perfect_for_present, targets).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(perfect_for_present, targets, present_only=False).item() > 0.4


def test_dice_without_any_positive_pixel_is_zero_but_differentiable():
    probs = torch.rand(1, 2, 3, 3, requires_grad=True)
    loss = dice_loss(probs, torch.zeros(1, 2, 3, 3))
    loss.backward()
    assert loss.item() == 0.0 and probs.grad is not None


def test_logits_are_upsampled_to_the_label_map():
    assert resize_to_target(torch.zeros(2, 5, 8, 8), torch.zeros(2, 32, 32, dtype=torch.long)).shape == (2, 5, 32, 32)


def test_subsampled_labels_are_the_centre_pixels_of_their_cells():
    labels = torch.arange(16 * 16).reshape(1, 16, 16)
    sub = subsample_targets(labels, 4)
    assert sub.shape == (1, 4, 4)
    assert sub[0, 1, 2].item() == labels[0, 4 + 2, 8 + 2].item()
    assert subsample_targets(labels, 1) is labels


def zegclip_focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha=0.25, gamma=2.0) -> torch.Tensor:
    """ZegCLIP's criterion written out on its own: one-hot targets scattered from the label map
    (255 skipped), focal per element, `loss.mean(1).sum() / num_masks` over the B·C flattened
    maps, num_masks = the classes present in each label map, summed over the batch (at least 1)."""
    b, c, h, w = logits.shape
    targets = torch.zeros(b, c, h * w)
    for i in range(b):
        flat = labels[i].reshape(-1)
        keep = flat != 255
        targets[i, flat[keep], torch.arange(h * w)[keep]] = 1
    inputs, targets = logits.reshape(b * c, h * w), targets.reshape(b * c, h * w)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    prob = inputs.sigmoid()
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * ce * (1 - p_t) ** gamma
    num_masks = max(sum(len(set(labels[i].unique().tolist()) - {255}) for i in range(b)), 1)
    return loss.mean(1).sum() / num_masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_present_pairs_focal_equals_zegclip_with_present_and_absent_classes(seed):
    torch.manual_seed(seed)
    b, c = 3, 7
    labels = torch.randint(0, 3, (b, 8, 8))          # at most classes 0-2 present: 3..6 absent everywhere
    labels[0, :3] = 255                              # ignored pixels
    labels[1] = torch.where(labels[1] == 2, 5, labels[1])
    logits = torch.randn(b, c, 8, 8) * 3
    expected = zegclip_focal_loss(logits, labels)
    onehot = one_hot_targets(labels, c)
    torch.testing.assert_close(sigmoid_focal_loss(logits, onehot, normalization="present_pairs"), expected)
    torch.testing.assert_close(probability_focal_loss(logits.sigmoid(), onehot, normalization="present_pairs"),
                               expected, atol=1e-5, rtol=1e-4)
    present = sum(len(set(labels[i].unique().tolist()) - {255}) for i in range(b))
    torch.testing.assert_close(sigmoid_focal_loss(logits, onehot) * b * c / present, expected)   # all_maps: B·C/present smaller


def test_present_pairs_focal_of_a_batch_without_labels_divides_by_one_and_bad_names_are_rejected():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    onehot = one_hot_targets(torch.full((1, 4, 4), 255), 2)
    loss = sigmoid_focal_loss(logits, onehot, normalization="present_pairs")
    loss.backward()
    assert loss > 0 and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="present_pairs"):
        sigmoid_focal_loss(logits, onehot, normalization="mean")
    with pytest.raises(ValueError, match="present_pairs"):
        probability_focal_loss(logits.sigmoid(), onehot, normalization="mean")
