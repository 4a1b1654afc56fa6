"""Dataset readers on fixtures written in the real VOC 2012 (+SBD) and COCO-Stuff layouts,
the GZS3 splits against the class lists of the models notes, inductive label handling,
augmentation that keeps ignore, sliding-window prediction and `zs3 data check`."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from zs3_core.cli import main as zs3_main
from zs3_core.datasets import DatasetLayoutError, open_split
from zs3_core.datasets.check import check_dataset
from zs3_core.datasets.cocostuff import RAW_IDS, cocostuff_label_lookup
from zs3_core.datasets.gzs3 import GZS3EvaluationSet, GZS3TrainingSet
from zs3_core.datasets.io import read_label
from zs3_core.datasets.sliding import slide_predict, whole_predict, window_starts
from zs3_core.datasets.splits import COCOSTUFF_SPLIT, VOC_SPLIT
from zs3_core.datasets.transforms import TrainAugmentation

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)

# The standard GZS3 splits (from ZS3Net / SPNet; LDVC and DeOP use them): the unseen classes
# of VOC and COCO-Stuff.
VOC_UNSEEN_NAMES = ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]
COCO_UNSEEN = {19: "cow", 23: "giraffe", 28: "suitcase", 29: "frisbee", 36: "skateboard",
               51: "carrot", 76: "scissors", 88: "cardboard", 94: "clouds", 112: "grass",
               133: "playingfield", 136: "river", 137: "road", 157: "tree", 160: "wall-concrete"}


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A distinct RGB per class so a tiny model can learn colour → class from fixtures."""
    rng = np.random.default_rng(class_id)
    return tuple(int(v) for v in rng.integers(30, 226, size=3))


def draw_scene(rng, height, width, class_ids, background_value, boundary_value=None):
    """Image + raw label map with one coloured rectangle per raw class value."""
    image = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    label = np.full((height, width), background_value, dtype=np.uint8)
    for raw, colour_id in class_ids:
        h, w = rng.integers(height // 4, height // 2 + 1), rng.integers(width // 4, width // 2 + 1)
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        image[y:y + h, x:x + w] = class_colour(colour_id)
        label[y:y + h, x:x + w] = raw
        if boundary_value is not None:
            cv2.rectangle(label, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), int(boundary_value), 1)
    return image, label


def write_voc_root(root: Path, train_ids=6, val_ids=2, size=(40, 56), list_name="train_aug.txt",
                   seed=0, class_sets=None) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages, SegmentationClassAug (grayscale, 0 = background,
    255 = boundary) and ImageSets/Segmentation lists. Images are lossless-ish JPEGs."""
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = {"train": [f"2008_{i:06d}" for i in range(train_ids)],
             "val": [f"2007_{i:06d}" for i in range(val_ids)]}
    for k, image_id in enumerate(names["train"] + names["val"]):
        classes = class_sets[k % len(class_sets)] if class_sets else rng.choice(20, 2, replace=False)
        image, label = draw_scene(rng, *size, [(c + 1, c) for c in classes], 0, 255)
        cv2.imwrite(str(voc / "JPEGImages" / f"{image_id}.jpg"), image[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(voc / "SegmentationClassAug" / f"{image_id}.png"), label)
    (voc / "ImageSets/Segmentation" / list_name).write_text("\n".join(names["train"]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(names["val"]) + "\n")
    return root


def write_cocostuff_root(root: Path, per_split=2, size=(36, 48), seed=0) -> Path:
    """images/{train,val}2017/*.jpg and annotations/{train,val}2017/*.png (raw stuffthingmaps
    ids: COCO category id − 1, 255 unlabeled)."""
    rng = np.random.default_rng(seed)
    for split in ("train2017", "val2017"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(per_split):
            raw = [int(r) for r in rng.choice(RAW_IDS, 2, replace=False)]
            image, label = draw_scene(rng, *size, [(r, r) for r in raw], 255)
            name = f"{i + (0 if split == 'train2017' else 500):012d}"
            cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), image[..., ::-1])
            cv2.imwrite(str(root / "annotations" / split / f"{name}.png"), label)
    return root


def test_voc_split_is_the_gzs3_protocol():
    assert len(VOC_SPLIT.class_names) == 20
    assert list(VOC_SPLIT.unseen_names) == VOC_UNSEEN_NAMES
    assert VOC_SPLIT.unseen_ids == (15, 16, 17, 18, 19)
    assert len(VOC_SPLIT.seen_ids) == 15 and "background" not in VOC_SPLIT.class_names


def test_cocostuff_split_and_remap_match_the_models_notes():
    assert COCOSTUFF_SPLIT.num_classes == 171 and len(COCOSTUFF_SPLIT.seen_ids) == 156
    assert {i: COCOSTUFF_SPLIT.class_names[i] for i in COCOSTUFF_SPLIT.unseen_ids} == COCO_UNSEEN
    lookup = cocostuff_label_lookup()
    # raw value = COCO category id − 1; person (1), cow (21), the last stuff class wood (182)
    assert (lookup[0], lookup[20], lookup[181]) == (0, 19, 170)
    assert COCOSTUFF_SPLIT.class_names[lookup[20]] == "cow"
    # unused COCO ids (12 "street sign", 26, ..., 91) and unlabeled are ignored
    for unused_coco_id in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91):
        assert lookup[unused_coco_id - 1] == 255
    assert lookup[255] == 255 and lookup[182] == 255
    assert sorted(lookup[list(RAW_IDS)].tolist()) == list(range(171))


def test_voc_reader_ignores_background_and_shifts_class_ids(tmp_path):
    root = write_voc_root(tmp_path, train_ids=2, val_ids=1)
    train = open_split("voc", root, "train")
    assert len(train) == 2
    raw = read_label(train.pairs[0][1])
    image, label = train.load(0)
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8
    assert np.all(label[raw == 0] == 255) and np.all(label[raw == 255] == 255)
    objects = (raw > 0) & (raw < 255)
    assert np.array_equal(label[objects], raw[objects] - 1)
    # the reader accepts the VOC2012 folder itself as root, and mmseg's aug.txt list name
    assert len(open_split("voc", root / "VOCdevkit" / "VOC2012", "val")) == 1


def test_voc_accepts_mmseg_aug_list(tmp_path):
    root = write_voc_root(tmp_path, train_ids=3, list_name="aug.txt")
    assert len(open_split("voc", root, "train")) == 3


def test_cocostuff_reader_remaps_raw_ids(tmp_path):
    root = write_cocostuff_root(tmp_path)
    val = open_split("cocostuff", root, "val")
    assert len(val) == 2
    raw = read_label(val.pairs[1][1])
    _, label = val.load(1)
    assert np.array_equal(label, cocostuff_label_lookup()[raw])
    assert set(np.unique(label)) <= set(range(171)) | {255}


def test_palette_label_pngs_are_read_as_indices(tmp_path):
    """VOC's own SegmentationClass PNGs are palette images; OpenCV would return colours."""
    label = np.array([[0, 15], [255, 3]], dtype=np.uint8)
    img = Image.fromarray(label, mode="P")
    img.putpalette([v for i in range(256) for v in class_colour(i)])
    img.save(tmp_path / "p.png")
    assert np.array_equal(read_label(tmp_path / "p.png"), label)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(OSError, match="class indices"):
        read_label(tmp_path / "rgb.png")


def test_missing_files_raise_a_layout_error_naming_them(tmp_path):
    with pytest.raises(DatasetLayoutError, match="JPEGImages"):
        open_split("voc", tmp_path, "train")
    with pytest.raises(DatasetLayoutError, match="annotations"):
        open_split("cocostuff", tmp_path, "train")


def test_training_targets_index_seen_classes_and_ignore_unseen(tmp_path):
    # image 0: aeroplane (seen 0) + sheep (unseen 16); image 1: sofa + train (both unseen)
    root = write_voc_root(tmp_path, train_ids=2, val_ids=1, class_sets=[(0, 16), (17, 18)])
    source = open_split("voc", root, "train")
    aug = TrainAugmentation(crop_size=32, scale_range=(1.0, 1.0))
    keep_all = GZS3TrainingSet(source, aug, MEAN, STD, drop_images_without_seen=False)
    assert keep_all.class_names == VOC_SPLIT.seen_names and len(keep_all) == 2
    table = VOC_SPLIT.seen_label_table()
    _, full = source.load(0)
    assert table[16] == 255 and table[0] == 0 and table[14] == 14
    assert set(np.unique(table[full])) == {0, 255}
    _, target = keep_all[1]
    assert target.dtype == torch.int64 and torch.all(target == 255)
    dropped = GZS3TrainingSet(source, aug, MEAN, STD, drop_images_without_seen=True)
    assert dropped.indices == [0]


def test_augmentation_keeps_ignore_and_never_invents_classes():
    rng = np.random.default_rng(0)
    image, raw = draw_scene(rng, 60, 80, [(3, 3), (7, 7)], 255)
    aug = TrainAugmentation(crop_size=48)
    for seed in range(20):
        out_image, out_label = aug(image, raw, np.random.default_rng(seed))
        assert out_image.shape == (48, 48, 3) and out_label.shape == (48, 48)
        assert set(np.unique(out_label)) <= {3, 7, 255}
    # a small image is padded: padding is ignored, never a class
    small_image, small_label = aug(image[:10, :12], raw[:10, :12], np.random.default_rng(1))
    assert small_label.shape == (48, 48) and np.all(small_label[30:, :] == 255)
    # same seed, same sample: augmentation depends on the seed only
    a = aug(image, raw, np.random.default_rng(5))
    b = aug(image, raw, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_evaluation_set_keeps_full_resolution_targets_over_all_classes(tmp_path):
    root = write_voc_root(tmp_path, train_ids=1, val_ids=1, class_sets=[(16, 2)])
    ev = GZS3EvaluationSet(open_split("voc", root, "val"), 32, MEAN, STD)
    image, target = ev[0]
    assert target.shape == (40, 56) and 16 in target.unique()          # unseen sheep kept
    assert image.shape == (3, 32, 45)                                    # short side → 32


def pointwise_model(images: torch.Tensor) -> torch.Tensor:
    """A per-pixel classifier: any window gives the same score for the same pixel."""
    weight = torch.arange(12, dtype=torch.float32).view(4, 3, 1, 1) / 10
    return torch.nn.functional.conv2d(images, weight).softmax(dim=1)


def test_sliding_windows_cover_the_image_and_agree_with_a_pointwise_model():
    assert window_starts(100, 32, 20) == [0, 20, 40, 60, 68]
    assert window_starts(20, 32, 20) == [0]
    image = torch.randn(1, 3, 70, 90)
    expected = pointwise_model(image)
    assert torch.allclose(slide_predict(pointwise_model, image, 32, 20), expected, atol=1e-6)
    small = torch.randn(1, 3, 20, 25)   # smaller than a window: padded, padding cut away
    assert torch.allclose(slide_predict(pointwise_model, small, 32, 16), pointwise_model(small), atol=1e-6)
    assert whole_predict(pointwise_model, image, 32).shape == (1, 4, 70, 90)


def test_data_check_reports_what_is_missing(tmp_path, capsys):
    assert zs3_main(["data", "check", str(tmp_path), "--dataset", "voc"]) == 1
    out = capsys.readouterr().out
    assert "JPEGImages" in out and "train_aug.txt or trainaug.txt or aug.txt" in out
    root = write_voc_root(tmp_path / "voc", train_ids=2, val_ids=1)
    assert check_dataset(root, "voc").ok
    (root / "VOCdevkit/VOC2012/JPEGImages/2008_000001.jpg").unlink()
    result = check_dataset(root, "voc")
    assert result.missing["train"] == [str(root / "VOCdevkit/VOC2012/JPEGImages/2008_000001.jpg")]
    assert result.missing["val"] == []
    coco = write_cocostuff_root(tmp_path / "coco")
    assert zs3_main(["data", "check", str(coco), "--dataset", "cocostuff"]) == 0
    assert "train: complete" in capsys.readouterr().out


def test_synthetic_world_reads_like_voc():
    from zs3_core.datasets.synthetic import SyntheticScenes

    world = {"image_size": [48, 48], "seed": 3}
    train = SyntheticScenes(world, "train", num_scenes=4)
    val = SyntheticScenes(world, "val", num_scenes=2)
    image, label = train.load(0)
    assert image.shape == (48, 48, 3) and label.shape == (48, 48)
    assert set(np.unique(label)) <= set(range(train.gzs3.num_classes)) | {255}
    assert train.gzs3.unseen_ids == tuple(train.world.unseen_class_ids)
    assert not np.array_equal(val.load(0)[0], image)   # val scenes are other scenes
    ds = GZS3TrainingSet(train, TrainAugmentation(crop_size=32), MEAN, STD)
    assert ds[0][1].shape == (32, 32)


def test_cached_synthetic_scenes_are_drawn_once_and_cannot_be_altered():
    from zs3_core.datasets.synthetic import SyntheticScenes

    world = {"image_size": [48, 48], "seed": 3}
    drawn = SyntheticScenes(world, "train", num_scenes=4)
    cached = SyntheticScenes(world, "train", num_scenes=4, cache=True)
    first = cached.load(1)
    assert cached.load(1)[0] is first[0]                             # not drawn again
    for fresh, kept in zip(drawn.load(1), first):
        np.testing.assert_array_equal(fresh, kept)
    with pytest.raises(ValueError, match="read-only"):
        first[0][0, 0] = 0
    augmented = GZS3TrainingSet(cached, TrainAugmentation(crop_size=32), MEAN, STD)
    reference = GZS3TrainingSet(drawn, TrainAugmentation(crop_size=32), MEAN, STD)
    for i in range(len(cached)):                                    # the augmentation reads, never writes
        for a, b in zip(augmented[i], reference[i]):
            assert torch.equal(a, b)
    np.testing.assert_array_equal(cached.load(1)[0], drawn.load(1)[0])
