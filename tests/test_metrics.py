"""ConfusionMatrix against a per-class reference written the obvious way."""
import math

import numpy as np
import pytest

from zs3_core.metrics import ConfusionMatrix, harmonic_iou


def reference_iou(pred, target, num_classes, ignore=255):
    """IoU per class from boolean masks, one class at a time."""
    valid = target != ignore
    out = []
    for c in range(num_classes):
        t, p = (target == c) & valid, (pred == c) & valid
        union = (t | p).sum()
        out.append(np.nan if union == 0 else (t & p).sum() / union)
    return np.array(out)


def random_batch(rng, num_classes, shape=(4, 32, 40)):
    target = rng.integers(0, num_classes, shape)
    target[rng.random(shape) < 0.2] = 255                 # ignored pixels
    pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, num_classes, shape))
    pred[target == 255] = rng.integers(0, num_classes)    # predictions on ignored pixels don't count
    return pred, target


def test_iou_matches_per_class_reference_with_ignored_pixels():
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix(7)
    preds, targets = zip(*(random_batch(rng, 7) for _ in range(3)))
    for p, t in zip(preds, targets):
        cm.update(p, t)
    ref = reference_iou(np.concatenate(preds), np.concatenate(targets), 7)
    np.testing.assert_allclose(cm.iou(), ref)
    valid = np.concatenate(targets) != 255
    assert cm.pixel_accuracy() == pytest.approx(
        (np.concatenate(preds) == np.concatenate(targets))[valid].mean())


def test_absent_classes_are_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(4).update(np.array([0, 0, 1]), np.array([0, 1, 1]))
    iou = cm.iou()
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(0.5)
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert cm.summary()["mIoU"] == pytest.approx(0.5)
    assert cm.summary()["per_class_iou"]["2"] is None


def test_unlabeled_predictions_are_misses_but_not_false_positives():
    cm = ConfusionMatrix(3).update(np.array([255, 0, 1]), np.array([0, 0, 1]))
    assert cm.iou()[0] == pytest.approx(0.5)        # one of two class-0 pixels missed
    assert cm.iou()[1] == pytest.approx(1.0)


def test_summary_reports_seen_unseen_and_harmonic_iou():
    target = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 2, 0])
    s = ConfusionMatrix(3, class_names=["a", "b", "c"]).update(pred, target).summary(
        seen_ids=[0, 1], unseen_ids=[2])
    assert s["mIoU_seen"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["mIoU_unseen"] == pytest.approx(0.5)
    assert s["hIoU"] == pytest.approx(harmonic_iou(s["mIoU_seen"], 0.5))
    assert set(s["per_class_iou"]) == {"a", "b", "c"}
    assert harmonic_iou(0.0, 0.0) == 0.0 and math.isnan(harmonic_iou(float("nan"), 1.0))


def test_merge_equals_one_accumulator_over_all_frames():
    rng = np.random.default_rng(1)
    frames = [random_batch(rng, 5, (16, 16)) for _ in range(4)]
    whole = ConfusionMatrix(5)
    parts = [ConfusionMatrix(5), ConfusionMatrix(5)]
    for i, (p, t) in enumerate(frames):
        whole.update(p, t)
        parts[i % 2].update(p, t)
    parts[0] += parts[1]
    np.testing.assert_array_equal(parts[0].counts, whole.counts)


def test_bad_inputs_raise_actionable_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="map ground-truth ids"):
        cm.update(np.zeros(2), np.array([0, 7]))


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    cm = ConfusionMatrix(2).update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert cm.iou()[0] == pytest.approx(0.5)
