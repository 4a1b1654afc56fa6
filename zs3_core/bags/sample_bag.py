"""`zs3 make-bag`: a sample bag from the synthetic world, with ground truth.

Tests, docs and demos need a bag that anyone can make from a fresh clone: the synthetic
camera stream (shapes gliding over a textured background, including unseen classes) as
sensor_msgs/Image or CompressedImage, plus the ground-truth label image of every frame
with the same header stamp, plus the class names and the GZS3 split in the bag metadata
so `zs3 bag-eval` needs no other input.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from zs3_core.synthetic import SyntheticWorld, WorldConfig
from zs3_core.bags.bag_io import CUSTOM_DATA_KEY, BagWriter, compressed_message, image_message

START_NS = 1_700_000_000 * 1_000_000_000   # a fixed epoch: identical bags on every run
IMAGE_TOPIC = "/camera/image_raw"
LABELS_TOPIC = "/camera/labels"


@dataclass(frozen=True)
class SampleBag:
    path: Path
    frames: int
    image_topic: str | list[str]      # lists: one per camera
    labels_topic: str | list[str]
    class_names: list[str]
    unseen: list[str]


def class_metadata(world: SyntheticWorld, image_topic: str | list[str], labels_topic: str | list[str]) -> dict:
    """What bag-eval needs to score the bag: GT id → name, the held-out classes, the topics."""
    return {
        "class_names": list(world.class_names),
        "unseen": [world.class_names[i] for i in world.unseen_class_ids],
        "image_topic": image_topic,
        "labels_topic": labels_topic,
        "ignore_index": 255,
    }


def write_sample_bag(path: str | Path, storage: str = "sqlite3", seconds: float = 10.0,
                     fps: float = 10.0, seed: int = 0, compressed: bool = False,
                     image_size: tuple[int, int] = (240, 320),
                     world: SyntheticWorld | None = None,
                     image_topic: str = IMAGE_TOPIC, labels_topic: str = LABELS_TOPIC,
                     cameras: Sequence[str] = ()) -> SampleBag:
    """Write `seconds * fps` camera frames and their label images to a new bag at `path`.

    `cameras` (names) records several cameras instead, each its own scene stream on
    `/<name>/image_raw` with ground truth on `/<name>/labels`; the SampleBag's topics are
    then lists in that order."""
    world = world or SyntheticWorld(WorldConfig(image_size=image_size))
    frames = max(1, int(round(seconds * fps)))
    suffix = "/compressed" if compressed else ""
    if cameras:
        topics = [(f"/{name}/image_raw{suffix}", f"/{name}/labels") for name in cameras]
    else:
        topics = [(image_topic if image_topic.endswith(suffix) else image_topic + suffix, labels_topic)]
    with BagWriter(path, storage) as writer:
        image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        connections = [(writer.add_topic(image, image_type), writer.add_topic(labels, "sensor_msgs/msg/Image"))
                       for image, labels in topics]
        images, labels = [t[0] for t in topics], [t[1] for t in topics]
        meta = class_metadata(world, images[0] if not cameras else images, labels[0] if not cameras else labels)
        writer.set_custom_data(CUSTOM_DATA_KEY, yaml.safe_dump(meta, sort_keys=False))
        streams = [world.camera_stream(frames, fps=fps, seed=seed + i) for i in range(len(topics))]
        for i, scenes in enumerate(zip(*streams)):
            stamp = START_NS + int(round(i * 1e9 / fps))
            for (img_conn, lbl_conn), scene, (image, _) in zip(connections, scenes, topics):
                header = writer.header(stamp, image.split("/")[1] if cameras else "camera")
                image_msg = (compressed_message(writer, scene.image, header) if compressed
                             else image_message(writer, scene.image, "rgb8", header))
                writer.write(img_conn, stamp, image_msg)
                writer.write(lbl_conn, stamp, image_message(writer, scene.labels, "mono8", header))
    image_topic, labels_topic = meta["image_topic"], meta["labels_topic"]
    return SampleBag(Path(path), frames, image_topic, labels_topic, meta["class_names"], meta["unseen"])
