"""One zs3_segmenter node serving three cameras over real DDS on loopback: one model, one
vocabulary, one batch per cycle; each camera's outputs on its own topics with its own
header; a silent camera, a camera five times faster than the others, a vocabulary change
and malformed frames on one camera, none of which holds back or poisons the others.

The node loads the shipped config/segment.yaml (the default model: LDVC with its trained
synthetic weights) with `cameras: [front, rear, left]`; `rear` sends compressed frames
(`camera_transports`), the others raw ones.
"""
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray

from zs3_core.bags.conversions import image_to_numpy
from zs3_ros.conversions import numpy_to_image
from zs3_ros.synthetic_camera import moving_shapes, running_cameras, wait_until, world_class_names

PARAMS_FILE = Path(__file__).resolve().parent.parent / "config" / "segment.yaml"
CAMERAS = ("front", "rear", "left")
SIZES = {"front": (48, 64), "rear": (60, 80), "left": (40, 40)}   # each camera its own resolution


@pytest.fixture(scope="module")
def rig():
    parameters = {"qos_reliability": "reliable", "camera_transports": ["raw", "compressed", "raw"]}
    with running_cameras(CAMERAS, parameters=parameters, params_file=PARAMS_FILE,
                         compressed=frozenset({"rear"})) as (node, clients):
        frames = {c: list(moving_shapes(4, size=SIZES[c], seed=i)) for i, c in enumerate(CAMERAS)}
        yield SimpleNamespace(node=node, clients=clients, frames=frames)


def _stream(rig, periods: dict, duration_s: float) -> dict:
    """Publish on each camera of `periods` every `periods[camera]` seconds for `duration_s`
    (one thread per camera); returns camera -> stamp keys sent."""
    sent = {camera: [] for camera in periods}

    def run(camera):
        client, start = rig.clients[camera], time.monotonic()
        while time.monotonic() - start < duration_s:
            frame = rig.frames[camera][len(sent[camera]) % 4]
            sent[camera].append(client.publish(frame))
            time.sleep(periods[camera])

    threads = [threading.Thread(target=run, args=(camera,)) for camera in periods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent


def _served(rig, camera, keys, timeout=20.0) -> int:
    """How many of `keys` got labels on `camera`'s topic (waiting for the last one first)."""
    client = rig.clients[camera]
    client.wait_for(lambda: keys[-1] in client.frames and client.frames[keys[-1]].labels is not None, timeout)
    return sum(client.frames[k].labels is not None for k in keys)


def test_each_camera_gets_its_outputs_on_its_own_topics_with_its_header(rig):
    keys = {c: rig.clients[c].publish(rig.frames[c][0]) for c in CAMERAS}
    version = rig.node.vocabulary.vocabulary_version
    for camera in CAMERAS:
        outputs = rig.clients[camera].wait_outputs(keys[camera], timeout=20)
        assert outputs is not None, f"no outputs on {camera}"
        for msg in (outputs.labels, outputs.confidence, outputs.info):
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == keys[camera]
            assert msg.header.frame_id == "camera"
        assert image_to_numpy(outputs.labels).shape == SIZES[camera], "labels at that camera's resolution"
        assert outputs.info.vocabulary_version == version
        others = [k for c, k in keys.items() if c != camera]
        assert not any(rig.clients[camera].frames.get(k) and rig.clients[camera].frames[k].labels
                       for k in others), "another camera's frame came out on this camera's topic"
    assert rig.node.get_fully_qualified_name() + "/front/labels" in dict(rig.node.get_topic_names_and_types())


def test_a_silent_camera_does_not_stall_the_others(rig):
    sent = _stream(rig, {"front": 0.25, "rear": 0.25}, duration_s=3.0)      # `left` says nothing
    for camera in ("front", "rear"):
        assert _served(rig, camera, sent[camera]) >= 0.75 * len(sent[camera]), camera
    received = []
    sub = rig.clients["left"].node.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
    try:
        assert wait_until(lambda: received, timeout=5)
        statuses = {s.name.rsplit(": ", 1)[-1]: s for s in received[-1].status}
        assert set(statuses) == {*CAMERAS, "model"}, "one status per camera plus the model's"
        model = {kv.key: kv.value for kv in statuses["model"].values}
        assert model["cameras"] == "front, rear, left" and model["weights"] == "trained"
        front = {kv.key: kv.value for kv in statuses["front"].values}
        assert float(front["latency_ms_median"]) > 0 and "dropped_frames" in front
    finally:
        rig.clients["left"].node.destroy_subscription(sub)


def test_a_camera_five_times_faster_does_not_starve_the_others(rig):
    """`front` at 100 Hz (faster than the node serves), `rear` and `left` at 20 Hz: every
    batch takes at most one frame per camera, so the slow cameras are served as often as
    they publish or as `front` is, whichever is less; `front`'s surplus is its own drop."""
    before = {c: rig.node.frame_counters(c) for c in CAMERAS}
    batches_before = rig.node._batches.batches_total
    sent = _stream(rig, {"front": 0.01, "rear": 0.05, "left": 0.05}, duration_s=5.0)
    served = {c: _served(rig, c, sent[c]) for c in CAMERAS}
    batches = rig.node._batches.batches_total - batches_before
    after = {c: rig.node.frame_counters(c) for c in CAMERAS}
    report = f"sent {[len(sent[c]) for c in CAMERAS]}, served {served}, {batches} batches"
    assert len(sent["front"]) >= 3 * len(sent["rear"]), report
    assert after["front"]["published"] - before["front"]["published"] <= batches, \
        "one frame per camera per batch, however fast it publishes: " + report
    assert after["front"]["dropped"] > before["front"]["dropped"], "front's surplus is dropped: " + report
    for camera in ("rear", "left"):
        assert served[camera] >= 0.75 * min(len(sent[camera]), served["front"]), f"{camera} starved: {report}"
    assert max(rig.node._batches.batch_sizes) >= 2, "frames of several cameras shared a model call"


def test_one_vocabulary_change_reaches_all_three_cameras_between_batches(rig):
    old = rig.node.vocabulary.vocabulary_version
    names = world_class_names() + ["background", "floor"]
    sent, reply = {}, {}

    def change():
        time.sleep(0.6)
        reply["r"] = rig.clients["front"].set_vocabulary(names, timeout=60)

    changer = threading.Thread(target=change)
    changer.start()
    sent = _stream(rig, {c: 0.3 for c in CAMERAS}, duration_s=3.0)
    changer.join()
    assert reply["r"].success, reply["r"].message
    new = reply["r"].vocabulary_version
    after = {c: rig.clients[c].publish(rig.frames[c][1]) for c in CAMERAS}
    for camera in CAMERAS:
        outputs = rig.clients[camera].wait_outputs(after[camera], timeout=20)
        assert outputs.info.vocabulary_version == new and list(outputs.info.class_names) == names
        versions = [rig.clients[camera].frames[k].info.vocabulary_version for k in sent[camera] + [after[camera]]
                    if rig.clients[camera].frames.get(k) and rig.clients[camera].frames[k].info]
        assert set(versions) <= {old, new} and versions == sorted(versions), "never back to the old vocabulary"
    assert rig.clients["rear"].wait_for(lambda: rig.clients["rear"].label_info
                                        and rig.clients["rear"].label_info[-1].vocabulary_version == new, 10)


def test_malformed_frames_on_one_camera_do_not_affect_the_others(rig):
    before = {c: rig.node.frame_counters(c) for c in CAMERAS}
    client = rig.clients["front"]
    good = {c: [] for c in ("rear", "left")}
    for i in range(4):
        bad = numpy_to_image(rig.frames["front"][i], "rgb8", client.next_header())
        bad.step = bad.step + 5                              # step/data mismatch
        client.publish(bad)
        for camera in good:
            good[camera].append(rig.clients[camera].publish(rig.frames[camera][i]))
        time.sleep(0.3)
    for camera in good:
        assert _served(rig, camera, good[camera]) >= 3, camera
        assert rig.node.frame_counters(camera)["malformed"] == before[camera]["malformed"]
    assert wait_until(lambda: rig.node.frame_counters("front")["malformed"] > before["front"]["malformed"], 10)
    key = client.publish(rig.frames["front"][0])
    assert client.wait_outputs(key, timeout=20) is not None, "the camera recovers with its next good frame"


def test_a_backend_built_for_one_frame_is_refused_at_start_for_three_cameras(tmp_path):
    """A foreign ONNX graph whose batch axis is fixed to 1: the node does not start with three
    cameras batched (the reason names the fix), and starts with batch_size 1."""
    from zs3_core import Segmenter
    from zs3_core.backends import create_backend
    from zs3_core.config import REPO_ROOT
    from zs3_core.export.image_path import ImagePath, example_inputs
    from zs3_ros.params import ConfigError

    torch.manual_seed(0)
    base = Segmenter.from_config(REPO_ROOT / "config" / "models" / "clip_baseline_tiny.yaml", backend="torch")
    path = tmp_path / "one_frame.onnx"
    torch.onnx.export(ImagePath(base.model).eval(), example_inputs(base.model, 7), str(path), dynamo=False,
                      input_names=["image", "class_embeddings"], output_names=["probabilities"],
                      dynamic_axes={"class_embeddings": {0: "C"}, "probabilities": {1: "C"}}, opset_version=17)
    one_frame = Segmenter(base.model, base.config, backend=create_backend("onnxruntime", base.model, onnx_path=path))
    parameters = {"model_config": str(REPO_ROOT / "config" / "models" / "clip_baseline_tiny.yaml"),
                  "qos_reliability": "reliable"}
    with pytest.raises(ConfigError, match=r"3 cameras .* at most 1 frame.*batch_size"):
        with running_cameras(CAMERAS, parameters=parameters, segmenter=one_frame):
            pass
    with running_cameras(CAMERAS, parameters={**parameters, "batch_size": 1}, segmenter=one_frame) as (node, clients):
        keys = {c: clients[c].publish(np.zeros((32, 32, 3), np.uint8)) for c in CAMERAS}
        for camera in CAMERAS:
            assert clients[camera].wait_outputs(keys[camera], timeout=20) is not None, camera
        assert max(node._batches.batch_sizes) == 1

