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
    image_topic: str
    labels_topic: str
    class_names: list[str]
    unseen: list[str]


def class_metadata(world: SyntheticWorld, image_topic: str, labels_topic: str) -> dict:
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
                     image_topic: str = IMAGE_TOPIC, labels_topic: str = LABELS_TOPIC) -> SampleBag:
    """Write `seconds * fps` camera frames and their label images to a new bag at `path`."""
    world = world or SyntheticWorld(WorldConfig(image_size=image_size))
    frames = max(1, int(round(seconds * fps)))
    with BagWriter(path, storage) as writer:
        image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        if compressed and not image_topic.endswith("/compressed"):
            image_topic = image_topic + "/compressed"
        img_conn = writer.add_topic(image_topic, image_type)
        lbl_conn = writer.add_topic(labels_topic, "sensor_msgs/msg/Image")
        meta = class_metadata(world, image_topic, labels_topic)
        writer.set_custom_data(CUSTOM_DATA_KEY, yaml.safe_dump(meta, sort_keys=False))
        for i, scene in enumerate(world.camera_stream(frames, fps=fps, seed=seed)):
            stamp = START_NS + int(round(i * 1e9 / fps))
            header = writer.header(stamp, "camera")
            image = (compressed_message(writer, scene.image, header) if compressed
                     else image_message(writer, scene.image, "rgb8", header))
            writer.write(img_conn, stamp, image)
            writer.write(lbl_conn, stamp, image_message(writer, scene.labels, "mono8", header))
    return SampleBag(Path(path), frames, image_topic, labels_topic, meta["class_names"], meta["unseen"])
