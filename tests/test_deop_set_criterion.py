"""DeOP's set-prediction loss (zs3_core.models.deop.set_criterion): Hungarian matching gives
each labelled region the proposal that fits it; matched proposals learn the region's class
and mask, the rest learn void; ignored pixels belong to no region."""
import pytest
import torch

from zs3_core.models.deop.set_criterion import (SetCriterionWeights, hungarian_match, semantic_to_region_targets,
                                                set_prediction_loss)

WEIGHTS = SetCriterionWeights()
QUERIES, CLASSES, VOID = 6, 3, 3


def two_region_labels() -> torch.Tensor:
    """(1, 16, 16): class 2 top-left, class 0 bottom-right, the rest ignored."""
    labels = torch.full((1, 16, 16), 255, dtype=torch.long)
    labels[0, :8, :8] = 2
    labels[0, 10:, 10:] = 0
    return labels


def ideal_outputs(owner_of_class2: int = 4, owner_of_class0: int = 1):
    """Logits where two queries own the two regions with the right class and the rest say void."""
    labels = two_region_labels()[0]
    masks = torch.full((1, QUERIES, 16, 16), -8.0)
    masks[0, owner_of_class2][labels == 2] = 8.0
    masks[0, owner_of_class0][labels == 0] = 8.0
    classes = torch.full((1, QUERIES, CLASSES + 1), -8.0)
    classes[0, :, VOID] = 8.0
    classes[0, owner_of_class2] = torch.tensor([-8.0, -8.0, 8.0, -8.0])
    classes[0, owner_of_class0] = torch.tensor([8.0, -8.0, -8.0, -8.0])
    return classes, masks


def test_region_targets_are_one_mask_per_present_class_without_ignored_pixels():
    classes, masks = semantic_to_region_targets(two_region_labels()[0])
    assert classes.tolist() == [0, 2]
    assert masks.shape == (2, 16, 16) and masks.sum().item() == 36 + 64


def test_matching_gives_each_region_the_proposal_that_fits_it():
    classes, masks = ideal_outputs(owner_of_class2=4, owner_of_class0=1)
    region_classes, region_masks = semantic_to_region_targets(two_region_labels()[0])
    queries, regions = hungarian_match(classes[0], masks[0].flatten(1), region_classes, region_masks.flatten(1), WEIGHTS)
    assert dict(zip(region_classes[regions].tolist(), queries.tolist())) == {2: 4, 0: 1}


def test_the_ideal_prediction_has_the_lowest_loss_and_any_owner_will_do():
    labels = two_region_labels()
    ideal = set_prediction_loss(*ideal_outputs(4, 1), labels, WEIGHTS)
    other_owners = set_prediction_loss(*ideal_outputs(0, 5), labels, WEIGHTS)
    assert ideal["loss"].item() < 0.05
    torch.testing.assert_close(ideal["loss"], other_owners["loss"])   # permutation invariant
    classes, masks = ideal_outputs(4, 1)
    swapped_classes = classes.clone()
    swapped_classes[0, [4, 1]] = classes[0, [1, 4]]                      # right masks, wrong classes
    assert set_prediction_loss(swapped_classes, masks, labels, WEIGHTS)["loss_class"].item() > 1.0
    shifted = masks.roll(shifts=4, dims=-1)                              # right classes, wrong masks
    assert set_prediction_loss(classes, shifted, labels, WEIGHTS)["loss_dice"].item() > 0.3


def test_an_image_with_nothing_labelled_only_teaches_void():
    classes = torch.zeros(1, QUERIES, CLASSES + 1, requires_grad=True)
    masks = torch.zeros(1, QUERIES, 4, 4, requires_grad=True)
    out = set_prediction_loss(classes, masks, torch.full((1, 16, 16), 255), WEIGHTS)
    out["loss"].backward()
    assert out["loss_mask"].item() == 0 and out["loss_dice"].item() == 0
    assert (classes.grad[0, :, VOID] < 0).all() and (classes.grad[0, :, :VOID] > 0).all()
    assert torch.isfinite(masks.grad).all()


@pytest.mark.parametrize("size", [(16, 16), (4, 4)])
def test_labels_are_resized_to_the_masks_and_gradients_reach_both_inputs(size):
    torch.manual_seed(0)
    classes = torch.randn(2, QUERIES, CLASSES + 1, requires_grad=True)
    masks = torch.randn(2, QUERIES, *size, requires_grad=True)
    labels = torch.cat([two_region_labels(), torch.full((1, 16, 16), 1)])
    set_prediction_loss(classes, masks, labels, WEIGHTS)["loss"].backward()
    assert classes.grad.abs().sum() > 0 and masks.grad.abs().sum() > 0


def test_class_agnostic_matching_follows_the_masks_alone():
    """DeOP's setting (class_weight 0): class logits neither steer the matching nor get a loss."""
    agnostic = SetCriterionWeights(class_weight=0.0)
    classes, masks = ideal_outputs(4, 1)
    misleading = classes.clone()
    misleading[0, 0] = torch.tensor([-8.0, -8.0, 8.0, -8.0])   # query 0 claims class 2, its mask is empty
    region_classes, region_masks = semantic_to_region_targets(two_region_labels()[0])
    queries, regions = hungarian_match(misleading[0], masks[0].flatten(1), region_classes,
                                       region_masks.flatten(1), agnostic)
    assert dict(zip(region_classes[regions].tolist(), queries.tolist())) == {2: 4, 0: 1}
    out = set_prediction_loss(misleading.requires_grad_(), masks, two_region_labels(), agnostic)
    assert out["loss_class"].item() == 0 and out["loss"].item() < 0.05
