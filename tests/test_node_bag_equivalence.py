"""One code path: the same bag frames through the live node and through `bag-eval` give
identical labels. The very bytes stored in the bag are published to the node."""
import dataclasses

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import CompressedImage, Image

from zs3_core.config import REPO_ROOT, load_model_config
from zs3_core.segmenter import Segmenter
from zs3_core.bags.bag_eval import BagEvalOptions, evaluate_bag
from zs3_core.bags.bag_io import read_class_metadata
from zs3_core.bags.conversions import image_to_numpy
from zs3_core.bags.sample_bag import write_sample_bag
from zs3_ros.synthetic_camera import running_segmenter, stamp_key
from zs3_core.bags.vocabulary_schedule import VocabularySchedule


@pytest.fixture(scope="module")
def segmenter():
    config = dataclasses.replace(load_model_config(REPO_ROOT / "config/models/clip_baseline_tiny.yaml"),
                                 input_size=64)
    return Segmenter.from_config(config, backend="torch")


def labels_by_stamp(bag_path, topic):
    with AnyReader([bag_path]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return {(m.header.stamp.sec, m.header.stamp.nanosec): image_to_numpy(m)
                for m in (reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns))}


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "jpeg"])
def test_live_node_and_bag_eval_give_identical_labels(tmp_path, segmenter, compressed):
    bag = write_sample_bag(tmp_path / "in", "sqlite3", seconds=0.5, image_size=(48, 64), compressed=compressed)
    meta = read_class_metadata(bag.path)
    result = evaluate_bag(segmenter, BagEvalOptions(
        bag=bag.path, image_topic=meta["image_topic"], out_dir=tmp_path / "out", write_bag=True,
        schedule=VocabularySchedule.single(meta["class_names"]), progress=False, plots=False))
    offline = labels_by_stamp(result.annotated_bag, "/zs3_segmenter/labels")
    assert len(offline) == bag.frames

    msg_type = CompressedImage if compressed else Image
    parameters = {"classes": meta["class_names"], "qos_reliability": "reliable",
                  "input_transport": "compressed" if compressed else "raw"}
    with running_segmenter(parameters=parameters, segmenter=segmenter, compressed=compressed) as (node, client):
        with AnyReader([bag.path]) as reader:
            conns = [c for c in reader.connections if c.topic == meta["image_topic"]]
            for _, _, raw in reader.messages(connections=conns):
                msg = deserialize_message(raw, msg_type)          # the bag's bytes, as `ros2 bag play` sends them
                outputs = client.wait_outputs(client.publish(msg), timeout=30)
                assert outputs is not None, "the node published nothing for a bag frame"
                np.testing.assert_array_equal(image_to_numpy(outputs.labels), offline[stamp_key(msg.header)])
