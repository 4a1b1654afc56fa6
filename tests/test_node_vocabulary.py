"""Changing the vocabulary of a running zs3_segmenter through its services.

A new vocabulary is validated and encoded off the image path, then swapped between two
frames: the reply carries the new version and class map, the next frames use it, frames
keep flowing while it encodes, and bad requests leave the old vocabulary in force.
"""
import time
from types import SimpleNamespace

import pytest
import rclpy

from zs3_ros.msg import LabelInfo
from zs3_ros.qos import latched_qos
from zs3_ros.synthetic_camera import (moving_shapes, running_segmenter, stream_while_changing_vocabulary, wait_until,
                                      world_class_names)

INITIAL = ["red circle", "green square", "blue triangle"]


@pytest.fixture(scope="module")
def segmenter():
    # The random-weight baseline: these tests time the node's threads, not a model, and its
    # 77-token text encoder makes a 432-class change take about 1 s on 2 cores (the shipped
    # LDVC's takes about 0.35 s).
    params = {"classes": INITIAL, "qos_reliability": "reliable",
              "model_config": "config/models/clip_baseline_tiny.yaml"}
    with running_segmenter(parameters=params) as (node, client):
        yield SimpleNamespace(node=node, client=client, frames=list(moving_shapes(10, size=(48, 64))))


def segment_one(segmenter, index=0):
    key = segmenter.client.publish(segmenter.frames[index % len(segmenter.frames)])
    outputs = segmenter.client.wait_outputs(key, timeout=15)
    assert outputs is not None
    return outputs


def test_set_vocabulary_replies_with_the_new_version_and_class_map(segmenter):
    before = segmenter.client.get_vocabulary()
    names = ["yellow ring", "purple cross", "cyan star", "red star"]
    reply = segmenter.client.set_vocabulary(names, prompt_template="a rendering of a {}.")
    assert reply.success, reply.message
    assert reply.message and reply.vocabulary_version > before.vocabulary_version
    assert list(reply.class_names) == names and list(reply.class_ids) == [0, 1, 2, 3]
    assert reply.encode_time_ms > 0

    outputs = segment_one(segmenter)
    assert outputs.info.vocabulary_version == reply.vocabulary_version
    assert list(outputs.info.class_names) == names
    current = segmenter.client.get_vocabulary()
    assert current.vocabulary_version == reply.vocabulary_version
    assert list(current.class_names) == names and current.prompt_template == "a rendering of a {}."


def test_a_late_subscriber_still_receives_label_info(segmenter):
    reply = segmenter.client.set_vocabulary(INITIAL + ["blue ring"])
    assert reply.success
    late = rclpy.create_node("late_listener", context=segmenter.client.node.context)
    received = []
    late.create_subscription(LabelInfo, f"{segmenter.node.get_fully_qualified_name()}/label_info",
                             received.append, latched_qos())
    try:
        deadline = time.monotonic() + 10
        executor = rclpy.executors.SingleThreadedExecutor(context=late.context)
        executor.add_node(late)
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert received, "label_info is transient-local: a late subscriber gets the last one"
        info = received[-1]
        assert info.vocabulary_version == reply.vocabulary_version
        assert list(info.class_names) == INITIAL + ["blue ring"]
        assert len(info.colors) == 4 and info.unlabeled_value == 255
    finally:
        late.destroy_node()


def test_frames_keep_flowing_while_a_vocabulary_encodes(segmenter):
    """5 Hz input; a large vocabulary encodes meanwhile; no output gap > two input periods."""
    client, period = segmenter.client, 0.2
    big = [f"{name} number {i}" for i in range(12) for name in world_class_names()]   # 432 classes
    run = stream_while_changing_vocabulary(client, segmenter.frames, big, period_s=period)
    assert run.reply is not None and run.reply.success, run.reply and run.reply.message
    assert client.frames[run.keys[-1]].complete(("labels", "confidence", "info"))
    assert len(run.arrivals) >= 0.8 * len(run.keys), f"only {len(run.arrivals)} of {len(run.keys)} frames came back"
    assert run.max_gap_s() <= 2 * period + 0.05, \
        f"output gap {run.max_gap_s():.3f} s while encoding ({run.reply.encode_time_ms:.0f} ms)"
    versions = [client.frames[k].info.vocabulary_version for k in run.keys if client.frames[k].info is not None]
    assert versions == sorted(versions), "a vocabulary, once swapped in, stays for the following frames"
    last = client.frames[run.keys[-1]]
    assert last.info.vocabulary_version == run.reply.vocabulary_version
    assert last.labels.encoding == "mono16" and len(last.info.class_names) == len(big)


def test_frames_keep_flowing_while_a_template_ensemble_encodes(segmenter):
    """20 classes in CLIP's 80 templates (1,600 sentences, the text-encoder work an ensemble
    multiplies) encode while a 5 Hz stream flows: no output gap > two input periods."""
    client, period = segmenter.client, 0.2
    names = [f"{name} in the ensemble" for name in world_class_names()[:20]]
    run = stream_while_changing_vocabulary(client, segmenter.frames, names, period_s=period,
                                           prompt_templates=["imagenet"])
    assert run.reply is not None and run.reply.success, run.reply and run.reply.message
    assert len(run.reply.prompt_templates) == 80
    assert len(run.arrivals) >= 0.8 * len(run.keys), f"only {len(run.arrivals)} of {len(run.keys)} frames came back"
    assert run.max_gap_s() <= 2 * period + 0.05, \
        f"output gap {run.max_gap_s():.3f} s while encoding ({run.reply.encode_time_ms:.0f} ms)"
    assert client.frames[run.keys[-1]].info.vocabulary_version == run.reply.vocabulary_version


BAD_VOCABULARIES = {
    "empty list": ([], "empty"),
    "duplicates": (["red circle", "blue ring", "red circle"], "duplicates"),
    "empty name": (["red circle", ""], "empty"),
    "whitespace name": (["red circle", "   \t "], "whitespace"),
    "5,000 names": ([f"class {i}" for i in range(5000)], "at most"),
    "a 10 kB name": (["x" * 10_000], "characters long"),
    "control characters": (["red\x00circle", "blue\nring"], "control characters"),
}


@pytest.mark.parametrize("case", BAD_VOCABULARIES)
def test_bad_vocabulary_is_refused_and_the_old_one_stays(segmenter, case):
    names, reason = BAD_VOCABULARIES[case]
    before = segmenter.client.get_vocabulary()
    reply = segmenter.client.set_vocabulary(names)
    assert not reply.success
    assert reason in reply.message, reply.message
    assert reply.vocabulary_version == before.vocabulary_version
    assert list(reply.class_names) == list(before.class_names)
    outputs = segment_one(segmenter)
    assert outputs.info.vocabulary_version == before.vocabulary_version


def test_a_template_without_placeholder_is_refused(segmenter):
    before = segmenter.client.get_vocabulary()
    reply = segmenter.client.set_vocabulary(["red circle"], prompt_template="no placeholder here")
    assert not reply.success and "{}" in reply.message
    assert segmenter.client.get_vocabulary().vocabulary_version == before.vocabulary_version


def test_label_info_follows_every_change(segmenter):
    reply = segmenter.client.set_vocabulary(["green ring", "cyan cross"])
    assert reply.success
    assert wait_until(lambda: segmenter.client.label_info
                      and segmenter.client.label_info[-1].vocabulary_version == reply.vocabulary_version, timeout=10)



def test_synonyms_and_a_template_ensemble_round_trip_through_the_services(segmenter):
    client = segmenter.client
    names = ["red circle|red disc|scarlet circle", "green square", "blue triangle|blue wedge"]
    reply = client.set_vocabulary(names, prompt_templates=["a {} seen by a robot.", "imagenet"])
    assert reply.success, reply.message
    assert list(reply.class_names) == ["red circle", "green square", "blue triangle"]
    assert list(reply.class_synonyms) == names
    assert len(reply.prompt_templates) == 81 and reply.prompt_templates[0] == "a {} seen by a robot."
    assert "2 with synonyms" in reply.message and "81 templates" in reply.message
    current = client.get_vocabulary()
    assert current.vocabulary_version == reply.vocabulary_version
    assert list(current.class_synonyms) == names and list(current.prompt_templates) == list(reply.prompt_templates)
    assert current.prompt_template == "a {} seen by a robot."
    assert wait_until(lambda: client.label_info and client.label_info[-1].vocabulary_version == reply.vocabulary_version,
                      timeout=10)
    info = client.label_info[-1]
    assert list(info.class_synonyms) == names and list(info.prompt_templates) == list(reply.prompt_templates)
    outputs = segment_one(segmenter)
    assert list(outputs.info.class_names) == ["red circle", "green square", "blue triangle"]

    kept = client.set_vocabulary(["cyan star|teal star"])   # neither template field: the ensemble stays
    assert kept.success and list(kept.prompt_templates) == list(reply.prompt_templates)
    single = client.set_vocabulary(["cyan star"], prompt_template="a photo of a {}.")
    assert single.success and list(single.prompt_templates) == ["a photo of a {}."]


BAD_ENSEMBLES = {
    "empty synonym": (["red circle|", "blue ring"], {}, "synonym 1 is empty"),
    "a synonym naming another class": (["red circle|blue ring", "blue ring"], {}, "repeats a name of class 0"),
    "too many synonyms": (["|".join(f"red {i}" for i in range(17))], {}, "synonyms; at most"),
    "too many templates": (["red circle"], {"prompt_templates": [f"{i} {{}}" for i in range(101)]}, "at most 100"),
    "template without placeholder": (["red circle"], {"prompt_templates": ["imagenet", "a red thing"]}, "exactly one"),
    "repeated template": (["red circle"], {"prompt_templates": ["imagenet", "a photo of a {}."]}, "repeats template"),
    "one template and a list": (["red circle"], {"prompt_template": "a {}.", "prompt_templates": ["imagenet"]},
                                "not both"),
}


@pytest.mark.parametrize("case", BAD_ENSEMBLES)
def test_bad_synonyms_and_ensembles_are_refused_and_the_old_vocabulary_stays(segmenter, case):
    names, fields, reason = BAD_ENSEMBLES[case]
    before = segmenter.client.get_vocabulary()
    reply = segmenter.client.set_vocabulary(names, **fields)
    assert not reply.success and reason in reply.message, reply.message
    assert reply.vocabulary_version == before.vocabulary_version
    after = segmenter.client.get_vocabulary()
    assert list(after.class_synonyms) == list(before.class_synonyms)
    assert list(after.prompt_templates) == list(before.prompt_templates)
    assert segment_one(segmenter).info.vocabulary_version == before.vocabulary_version
