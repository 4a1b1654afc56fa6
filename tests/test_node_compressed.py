"""`input_transport: compressed`: the node subscribes `image/compressed` and decodes JPEG
and PNG itself (image_transport has no Python API on Humble/Jazzy)."""
from types import SimpleNamespace

import pytest
from sensor_msgs.msg import CompressedImage

from zs3_core.bags.conversions import image_to_numpy
from zs3_ros.synthetic_camera import moving_shapes, running_segmenter, wait_until

H, W = 40, 56


@pytest.fixture(scope="module")
def segmenter():
    params = {"input_transport": "compressed", "qos_reliability": "reliable"}
    with running_segmenter(parameters=params, compressed=True) as (node, client):
        yield SimpleNamespace(node=node, client=client, frames=list(moving_shapes(2, size=(H, W))))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_frames_give_labels_at_input_resolution(segmenter, fmt):
    key = segmenter.client.publish(segmenter.frames[0], fmt=fmt)
    outputs = segmenter.client.wait_outputs(key, timeout=15)
    assert outputs is not None, f"no outputs for a {fmt} frame"
    labels = image_to_numpy(outputs.labels)
    assert labels.shape == (H, W)
    assert (outputs.labels.header.stamp.sec, outputs.labels.header.stamp.nanosec) == key
    assert outputs.labels.header.frame_id == "camera"
    num_classes = len(segmenter.node.vocabulary.names)
    assert ((labels < num_classes) | (labels == 255)).all()
    assert outputs.info.vocabulary_version == segmenter.node.vocabulary.vocabulary_version


def test_undecodable_payload_is_skipped_and_the_next_frame_processed(segmenter):
    client = segmenter.client
    malformed_before = segmenter.node.frame_counters()["malformed"]
    bad = CompressedImage(header=client.next_header(), format="jpeg", data=b"\xff\xd8 truncated")
    client.publish(bad)
    assert wait_until(lambda: segmenter.node.frame_counters()["malformed"] > malformed_before, timeout=10)
    assert client.wait_outputs(client.publish(segmenter.frames[1]), timeout=15) is not None
