"""The zs3_segmenter node over real DDS on loopback: raw input encodings in, labels,
confidence, info, overlay and diagnostics out, malformed frames survived.

One node (the shipped config/segment.yaml loaded through `--ros-args --params-file`, so the
embedded default model: LDVC with its trained synthetic weights, checkpoints/synthetic) is
shared by the whole module.
"""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray

from zs3_core.bags.conversions import image_to_numpy
from zs3_ros.conversions import numpy_to_image
from zs3_ros.synthetic_camera import moving_shapes, running_segmenter, wait_until

PARAMS_FILE = Path(__file__).resolve().parent.parent / "config" / "segment.yaml"
H, W = 48, 64


@pytest.fixture(scope="module")
def segmenter():
    with running_segmenter(params_file=PARAMS_FILE, parameters={"qos_reliability": "reliable"}) as (node, client):
        yield SimpleNamespace(node=node, client=client)


@pytest.fixture(scope="module")
def frames():
    return list(moving_shapes(4, size=(H, W)))


def assert_valid_labels(outputs, header_key, num_classes):
    labels = image_to_numpy(outputs.labels)
    assert labels.shape == (H, W), "labels are at input resolution"
    assert (outputs.labels.header.stamp.sec, outputs.labels.header.stamp.nanosec) == header_key
    assert outputs.labels.header.frame_id == "camera"
    assert outputs.labels.encoding == "mono8"
    assert ((labels < num_classes) | (labels == 255)).all()
    return labels


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8", "mono16"])
def test_each_raw_encoding_gives_labels_with_the_input_header(segmenter, frames, encoding):
    rgb = frames[0]
    array = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.dstack([rgb, np.full((H, W), 255, np.uint8)]),
             "mono8": rgb[:, :, 1], "mono16": rgb[:, :, 1].astype(np.uint16) * 256}[encoding]
    key = segmenter.client.publish(np.ascontiguousarray(array), encoding)
    outputs = segmenter.client.wait_outputs(key, timeout=15)
    assert outputs is not None, f"no outputs for a {encoding} frame"
    num_classes = len(segmenter.node.vocabulary.names)
    assert_valid_labels(outputs, key, num_classes)
    confidence = image_to_numpy(outputs.confidence)
    assert outputs.confidence.encoding == "32FC1" and confidence.shape == (H, W)
    assert np.isfinite(confidence).all() and confidence.min() >= 0 and confidence.max() <= 1
    info = outputs.info
    assert (info.header.stamp.sec, info.header.stamp.nanosec) == key
    assert info.vocabulary_version == segmenter.node.vocabulary.vocabulary_version
    assert list(info.class_names) == list(segmenter.node.vocabulary.names)
    assert abs(sum(info.pixel_fraction) + info.unlabeled_fraction - 1.0) < 1e-3
    assert info.latency_ms >= info.inference_ms > 0


def test_bgr8_and_rgb8_of_the_same_scene_give_the_same_labels(segmenter, frames):
    rgb = frames[1]
    a = segmenter.client.wait_outputs(segmenter.client.publish(rgb, "rgb8"), timeout=15)
    b = segmenter.client.wait_outputs(segmenter.client.publish(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8"), timeout=15)
    np.testing.assert_array_equal(image_to_numpy(a.labels), image_to_numpy(b.labels))


def test_overlay_is_published_only_while_someone_subscribes(segmenter, frames):
    client = segmenter.client
    outputs = client.wait_outputs(client.publish(frames[2]), timeout=15)
    assert outputs.overlay is None, "nobody subscribed to ~/overlay yet"
    subscription = client.subscribe_overlay()
    try:
        overlay_topic = f"{segmenter.node.get_fully_qualified_name()}/overlay"
        assert wait_until(lambda: segmenter.node.count_subscribers(overlay_topic) > 0, timeout=10)
        outputs = client.wait_outputs(client.publish(frames[2]), timeout=15, kinds=("labels", "overlay"))
        assert outputs is not None
        overlay = image_to_numpy(outputs.overlay)
        assert outputs.overlay.encoding == "rgb8" and overlay.shape == (H, W, 3)
    finally:
        client.node.destroy_subscription(subscription)


BAD_FRAMES = {
    "step/data mismatch": dict(step=W * 3 + 7),
    "unknown encoding": dict(encoding="yuv_mystery"),
    "zero width": dict(width=0),
    "claimed size far beyond the data": dict(height=4000, width=4000, step=12000),
}


@pytest.mark.parametrize("defect", BAD_FRAMES)
def test_malformed_frame_is_skipped_and_the_next_frame_processed(segmenter, frames, defect):
    client, node = segmenter.client, segmenter.node
    malformed_before = node.frame_counters()["malformed"]
    bad = numpy_to_image(frames[3], "rgb8", client.next_header())
    for field, value in BAD_FRAMES[defect].items():
        setattr(bad, field, value)
    bad_key = client.publish(bad)
    assert wait_until(lambda: node.frame_counters()["malformed"] > malformed_before, timeout=10), "malformed frame not seen"
    good_key = client.publish(frames[3])
    assert client.wait_outputs(good_key, timeout=15) is not None, "the node stopped after a malformed frame"
    assert client.frames[bad_key].labels is None


def test_diagnostics_report_rates_latency_drops_backend_and_vocabulary(segmenter, frames):
    client = segmenter.client
    received = []
    sub = client.node.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
    try:
        for frame in frames:
            client.wait_outputs(client.publish(frame), timeout=15)
        assert wait_until(lambda: any(a.status for a in received), timeout=5)
        status = received[-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        for key in ("input_rate_hz", "output_rate_hz", "latency_ms_median", "dropped_frames", "backend",
                    "vocabulary_version", "vocabulary", "malformed_frames"):
            assert key in values, key
        assert values["backend"].split("/")[0] in ("torch", "onnxruntime")   # `auto` on a CPU, per its bf16
        assert int(values["malformed_frames"]) >= 0 and float(values["latency_ms_median"]) > 0
        assert values["weights"] == "trained"                  # the shipped default model
    finally:
        client.node.destroy_subscription(sub)
