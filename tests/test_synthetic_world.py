"""The synthetic world: deterministic scenes, honest labels, a valid GZS3 split."""
import cv2
import numpy as np
import pytest

from zs3_core.synthetic import (
    IGNORE_INDEX, SplitError, SyntheticWorld, WorldConfig, WorldConfigError, make_split,
)


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(WorldConfig(seed=3, image_size=(64, 80)))


def test_classes_are_colour_shape_compositions(world):
    assert world.num_classes == 36
    assert world.class_names[0] == "red circle"
    assert "blue ring" in world.class_names
    assert len(set(world.class_names)) == 36


def test_scene_is_a_pure_function_of_seed_and_index(world):
    a, b = world.scene(7), SyntheticWorld(WorldConfig(seed=3, image_size=(64, 80))).scene(7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.caption == b.caption
    assert not np.array_equal(a.image, world.scene(8).image)


def test_scene_arrays_have_the_documented_layout(world):
    scene = world.scene(0)
    assert scene.image.shape == (64, 80, 3) and scene.image.dtype == np.uint8
    assert scene.labels.shape == (64, 80) and scene.labels.dtype == np.uint8
    assert (scene.labels == IGNORE_INDEX).any(), "background is labelled 255 (ignored)"


def test_labels_match_objects_and_caption_names_every_visible_class(world):
    for index in range(30):
        scene = world.scene(index)
        present = set(np.unique(scene.labels).tolist()) - {IGNORE_INDEX}
        assert present == set(scene.class_ids)
        for obj in scene.objects:
            assert obj.visible_pixels == int((scene.labels == obj.class_id).sum())
        for cid in scene.class_ids:
            assert world.class_names[cid] in scene.caption


def test_scenes_have_several_objects_with_occlusion_bounded():
    world = SyntheticWorld(WorldConfig(objects=(3, 4), max_occlusion=0.4, image_size=(96, 96)))
    counts = [len(world.scene(i).objects) for i in range(20)]
    assert max(counts) >= 3
    for i in range(20):
        scene = world.scene(i)
        for obj in scene.objects:
            full = world._mask(obj)  # the object drawn alone
            assert obj.visible_pixels >= (1 - 0.4) * full.sum()


def test_split_holds_out_compositions_covering_every_colour_and_shape(world):
    unseen, seen = world.unseen_class_ids, world.seen_class_ids
    assert 6 <= len(unseen) <= 8 and set(unseen).isdisjoint(seen)
    assert len(unseen) + len(seen) == world.num_classes
    for group in (unseen, seen):
        names = [world.class_names[i].split() for i in group]
        assert {c for c, _ in names} == set(world.config.colours)
        assert {s for _, s in names} == set(world.config.shapes)


def test_split_is_deterministic_and_accepts_extra_unseen_classes():
    assert make_split(6, 6, 8, seed=1) == make_split(6, 6, 8, seed=1)
    assert len(make_split(6, 6, 8, seed=1).unseen_ids) == 8
    with pytest.raises(SplitError, match="at least 6"):
        make_split(6, 6, 4)


def test_camera_stream_moves_smoothly_and_is_deterministic(world):
    frames = list(world.camera_stream(5, fps=10, seed=2))
    again = list(world.camera_stream(5, fps=10, seed=2))
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(frames, again))
    centres = [np.array(f.objects[0].center) for f in frames]
    steps = [np.linalg.norm(b - a) for a, b in zip(centres, centres[1:])]
    assert 0 < max(steps) < 0.1 * max(world.config.image_size), "small per-frame motion"
    assert any(o.class_id in world.unseen_class_ids for o in frames[0].objects)


@pytest.mark.parametrize("seed", range(3))
def test_camera_stream_keeps_the_occlusion_limit_the_scenes_are_drawn_with(seed):
    """Objects bounce off each other instead of drifting over one another: in every frame each
    object keeps at least 1 - max_occlusion of its drawn area visible, as in still scenes."""
    from zs3_core.synthetic.shapes import shape_mask

    world = SyntheticWorld(WorldConfig(seed=0, image_size=(128, 128), objects=(3, 4)))
    keep = 1 - world.config.max_occlusion
    frames = list(world.camera_stream(40, fps=5, seed=seed))
    assert len(frames[0].objects) == 4
    for frame in frames:
        for obj in frame.objects:
            drawn = shape_mask(world.config.shapes[obj.class_id % len(world.config.shapes)], obj.center,
                               obj.size, obj.angle, world.config.image_size).sum()
            assert obj.visible_pixels >= keep * drawn, (obj.name, obj.visible_pixels, drawn)
    moved = [np.linalg.norm(np.subtract(b.objects[0].center, a.objects[0].center)) for a, b in zip(frames, frames[1:])]
    assert sum(step > 0 for step in moved) > len(moved) // 2, "objects keep moving"


def test_config_errors_name_the_field():
    with pytest.raises(WorldConfigError, match="scale"):
        WorldConfig(scale=(0.5, 0.2))
    with pytest.raises(WorldConfigError, match="unknown world config keys"):
        WorldConfig.from_dict({"sede": 1})
    assert WorldConfig.from_dict({"image_size": [32, 48]}).image_size == (32, 48)


def test_shape_variants_keep_layout_colours_and_background_and_turn_every_shape(world):
    variants = world.shape_variants(11, 6)
    base = world.scene(11)
    shapes = len(world.config.shapes)
    assert variants[0].class_ids == base.class_ids and np.array_equal(variants[0].labels, base.labels)
    background = np.all([v.labels == IGNORE_INDEX for v in variants], axis=0).astype(np.uint8)
    background = cv2.erode(background, np.ones((3, 3), np.uint8)).astype(bool)   # past the 3x3 blur
    for shift, variant in enumerate(variants):
        assert np.array_equal(variant.image[background], variants[0].image[background])
        for original, turned in zip(base.objects, variant.objects):
            assert turned.class_id // shapes == original.class_id // shapes           # same colour
            assert turned.class_id % shapes == (original.class_id + shift) % shapes   # shape turned
            assert turned.center == original.center and turned.size == original.size
    with pytest.raises(ValueError, match="count"):
        world.shape_variants(0, shapes + 1)
