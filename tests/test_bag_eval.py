"""Bag evaluation on real bag files written here: sqlite3, MCAP, ROS 1, compressed, broken."""
import dataclasses
import json
import sqlite3

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from zs3.cli import main as zs3
from zs3_core.config import REPO_ROOT, load_model_config
from zs3_core.segmenter import SegmentationResult, Segmenter
from zs3_core.synthetic import SyntheticWorld, WorldConfig
from zs3_core.bags.bag_eval import BagEvalOptions, evaluate_bag
from zs3_core.bags.bag_io import BagReadError, TopicNotFoundError, open_bag, read_class_metadata
from zs3_core.bags.sample_bag import LABELS_TOPIC, START_NS, write_sample_bag
from zs3_core.bags.vocabulary_schedule import ScheduleEntry, VocabularySchedule

SIZE = (48, 64)   # (H, W): small frames keep every test well under a second of inference
WORLD = SyntheticWorld(WorldConfig(image_size=SIZE))


@pytest.fixture(scope="module")
def segmenter():
    config = dataclasses.replace(
        load_model_config(REPO_ROOT / "config/models/clip_baseline_tiny.yaml"), input_size=64)
    return Segmenter.from_config(config)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny64.yaml"
    text = (REPO_ROOT / "config/models/clip_baseline_tiny.yaml").read_text()
    path.write_text(text.replace("input_size: 224", "input_size: 64"))
    return str(path)


class OracleSegmenter:
    """Answers with the ground truth of the synthetic frame it is shown: metrics must be 100 %."""

    backend_name = "oracle"
    unlabeled_threshold = 0.0

    def __init__(self, frames):
        self.truth = {scene.image.tobytes(): scene.labels for scene in frames}

    def encode_vocabulary(self, names, template=None, templates=None):
        return dataclasses.make_dataclass("V", ["names", "template", "vocabulary_version", "unlabeled_value"])(
            tuple(names), template or "{}", len(names), 255)

    def segment(self, rgb, vocabulary):
        gt = self.truth[rgb.tobytes()]
        lut = np.full(256, 255, np.uint8)
        for vid, name in enumerate(vocabulary.names):
            lut[WORLD.class_names.index(name)] = vid
        labels = lut[gt]
        return SegmentationResult(labels, np.ones(SIZE, np.float32), np.ones(len(vocabulary.names), np.float32),
                                  np.zeros(len(vocabulary.names), np.float32), vocabulary.vocabulary_version, 255,
                                  {"total": 0.0})


def options(bag, out, **kw):
    meta = read_class_metadata(bag)
    defaults = dict(bag=bag, image_topic=meta["image_topic"], out_dir=out, labels_topic=LABELS_TOPIC,
                    schedule=VocabularySchedule.single(meta["class_names"]),
                    gt_class_names=meta["class_names"], unseen=meta["unseen"], progress=False)
    defaults.update(kw)
    return BagEvalOptions(**defaults)


def test_make_bag_then_bag_eval_writes_report_plots_and_annotated_bag(tmp_path, tiny_config):
    bag, out = tmp_path / "sample", tmp_path / "eval"
    assert zs3(["make-bag", str(bag), "--seconds", "0.5", "--size", "64x48"]) == 0
    assert zs3(["bag-eval", str(bag), "--out", str(out), "--write-bag", "--config", tiny_config,
                "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["frames"] == metrics["frames_scored"] == 5
    assert {"mIoU", "mIoU_seen", "mIoU_unseen", "hIoU", "pAcc", "per_class_iou"} <= set(metrics["aggregate"])
    assert metrics["latency_ms"]["frame"]["p50"] > 0 and len(metrics["per_frame"]) == 5
    for name in ("report.md", "per_class_iou.png", "latency_histogram.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0
    assert "hIoU" in (out / "report.md").read_text()


def test_annotated_bag_reads_back_with_custom_types_and_latched_label_info(tmp_path, segmenter):
    bag = write_sample_bag(tmp_path / "in", "sqlite3", seconds=0.3, image_size=SIZE).path
    result = evaluate_bag(segmenter, options(bag, tmp_path / "out", write_bag=True,
                                             write_bag_storage="mcap"))
    with AnyReader([result.annotated_bag]) as reader:
        topics = {c.topic: c for c in reader.connections}
        assert set(topics) == {f"/zs3_segmenter/{t}" for t in
                               ("labels", "confidence", "info", "overlay", "label_info")}
        qos = topics["/zs3_segmenter/label_info"].ext.offered_qos_profiles[0]
        assert qos.durability.name == "TRANSIENT_LOCAL"
        msgs = {}
        for conn, _, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    info = msgs["/zs3_segmenter/info"][0]
    assert info.class_names == WORLD.class_names and info.header.stamp.sec == START_NS // 10**9
    assert msgs["/zs3_segmenter/labels"][0].encoding == "mono8"
    assert msgs["/zs3_segmenter/confidence"][0].encoding == "32FC1"
    assert msgs["/zs3_segmenter/label_info"][0].unlabeled_value == 255
    assert len(msgs["/zs3_segmenter/labels"]) == 3


@pytest.mark.parametrize("storage,compressed", [("sqlite3", False), ("mcap", True), ("ros1", False)])
def test_oracle_predictions_score_100_percent_on_every_bag_format(tmp_path, storage, compressed):
    name = "in.bag" if storage == "ros1" else "in"
    bag = write_sample_bag(tmp_path / name, storage, seconds=0.4, image_size=SIZE, world=WORLD,
                           compressed=compressed).path
    frames = list(WORLD.camera_stream(4, fps=10.0, seed=0))
    if compressed:  # JPEG changes pixels: key the oracle by the decoded frame instead
        oracle = OracleSegmenter(frames)
        oracle.truth = {cv2.cvtColor(cv2.imdecode(cv2.imencode(".jpg", s.image[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).tobytes():
                        s.labels for s in frames}
    else:
        oracle = OracleSegmenter(frames)
    result = evaluate_bag(oracle, options(bag, tmp_path / "out"))
    agg = result.metrics["aggregate"]
    assert result.metrics["frames_scored"] == 4
    assert agg["mIoU"] == pytest.approx(1.0) and agg["hIoU"] == pytest.approx(1.0)


def test_vocabulary_schedule_and_class_map_score_by_name(tmp_path):
    bag = write_sample_bag(tmp_path / "in", "sqlite3", seconds=0.4, image_size=SIZE, world=WORLD).path
    frames = list(WORLD.camera_stream(4, fps=10.0, seed=0))
    present = sorted({WORLD.class_names[c] for f in frames for c in f.class_ids})
    renamed = {n: n.upper() for n in present}
    oracle = OracleSegmenter(frames)
    oracle.segment = lambda rgb, vocabulary, seg=oracle.segment: seg(rgb, dataclasses.replace(
        vocabulary, names=tuple(n.lower() for n in vocabulary.names)))
    schedule = VocabularySchedule((ScheduleEntry(0.0, tuple(renamed[n] for n in present[:1])),
                                   ScheduleEntry(0.2, tuple(renamed.values()))))
    result = evaluate_bag(oracle, options(bag, tmp_path / "out", schedule=schedule, class_map=renamed,
                                          unseen=None))
    versions = [r.vocabulary_version for r in result.frames]
    assert versions == [1, 1, len(present), len(present)]   # the switch at 0.2 s bag time
    assert result.metrics["aggregate"]["mIoU"] == pytest.approx(1.0)
    assert "hIoU" not in result.metrics["aggregate"]


def test_labels_dir_matches_by_stamp_within_tolerance(tmp_path):
    bag = write_sample_bag(tmp_path / "in", "sqlite3", seconds=0.3, image_size=SIZE, world=WORLD).path
    frames = list(WORLD.camera_stream(3, fps=10.0, seed=0))
    labels_dir = tmp_path / "gt"
    labels_dir.mkdir()
    for i, scene in enumerate(frames):   # stamps 0.4 ms off the image stamps
        cv2.imwrite(str(labels_dir / f"{START_NS + i * 100_000_000 + 400_000}.png"), scene.labels)
    opts = dict(labels_topic=None, labels_dir=labels_dir)
    near = evaluate_bag(OracleSegmenter(frames), options(bag, tmp_path / "a", **opts))
    assert near.metrics["frames_scored"] == 3
    strict = evaluate_bag(OracleSegmenter(frames), options(bag, tmp_path / "b", stamp_tolerance_ns=100_000, **opts))
    assert strict.metrics["frames_scored"] == 0 and strict.metrics["frames_without_gt"] == 3


def test_missing_topic_lists_the_topics_in_the_bag(tmp_path, segmenter):
    bag = write_sample_bag(tmp_path / "in", "sqlite3", seconds=0.1, image_size=SIZE).path
    with pytest.raises(TopicNotFoundError, match=r"/camera/image_raw \(sensor_msgs/msg/Image, 1 msgs\)"):
        evaluate_bag(segmenter, options(bag, tmp_path / "out", image_topic="/front/image"))
    assert zs3(["bag-eval", str(bag), "--image-topic", "/nope", "--out", str(tmp_path / "o2")]) == 2


def test_truncated_mcap_names_last_good_message_and_keeps_results(tmp_path, segmenter):
    bag = write_sample_bag(tmp_path / "in", "mcap", seconds=1.0, image_size=SIZE).path
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.6)])
    result = evaluate_bag(segmenter, options(bag, tmp_path / "out"))
    assert not result.complete and "last good message: #" in str(result.error)
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["complete"] is False and 0 < metrics["frames"] < 10
    assert metrics["frames_scored"] > 0 and "Incomplete" in (tmp_path / "out/report.md").read_text()


def test_corrupt_message_in_sqlite_bag_stops_with_a_clear_error(tmp_path, segmenter):
    bag = write_sample_bag(tmp_path / "in", "sqlite3", seconds=0.5, image_size=SIZE).path
    with sqlite3.connect(next(bag.glob("*.db3"))) as db:
        db.execute("UPDATE messages SET data = x'0001' WHERE id = 7")
    result = evaluate_bag(segmenter, options(bag, tmp_path / "out"))
    assert isinstance(result.error, BagReadError)
    assert "reading stopped after 6 messages" in str(result.error)
    assert result.metrics["frames"] == 3
    with pytest.raises(BagReadError, match="last good message: #5"):
        source = open_bag(bag)
        try:
            from zs3_core.bags.bag_io import iter_messages
            list(iter_messages(source, source.connections))
        finally:
            source.close()


def test_several_cameras_are_scored_each_and_overall_like_one_topic_at_a_time(tmp_path, segmenter):
    """A bag of three cameras (each its own scenes and ground-truth topic): the frames go
    through segment_batch together, and each camera's scores equal evaluating its topic alone."""
    bag = write_sample_bag(tmp_path / "three", "mcap", seconds=0.3, image_size=SIZE, world=WORLD,
                           cameras=["front", "rear", "left"])
    assert bag.image_topic == ["/front/image_raw", "/rear/image_raw", "/left/image_raw"]
    calls = []
    original = segmenter.segment_batch

    def counting(frames, vocabulary=None):
        calls.append(len(frames))
        return original(frames, vocabulary=vocabulary)

    segmenter.segment_batch = counting
    try:
        together = evaluate_bag(segmenter, options(bag.path, tmp_path / "all", image_topic=bag.image_topic,
                                                   labels_topic=bag.labels_topic))
    finally:
        del segmenter.segment_batch
    assert calls == [3, 3, 3], "one batch per time step, one frame per camera"
    metrics = together.metrics
    assert metrics["frames"] == metrics["frames_scored"] == 9 and set(metrics["per_camera"]) == set(bag.image_topic)
    for image, labels in zip(bag.image_topic, bag.labels_topic):
        alone = evaluate_bag(segmenter, options(bag.path, tmp_path / image.strip("/").replace("/", "_"),
                                                image_topic=image, labels_topic=labels)).metrics
        camera = metrics["per_camera"][image]
        assert camera["frames"] == camera["frames_scored"] == alone["frames_scored"] == 3
        assert camera["aggregate"]["mIoU"] == pytest.approx(alone["aggregate"]["mIoU"], abs=1e-9)
        assert "per_camera" not in alone
    assert {r["topic"] for r in metrics["per_frame"]} == set(bag.image_topic)


def test_oracle_scores_every_camera_100_percent_and_the_cli_takes_several_topics(tmp_path, segmenter):
    bag = write_sample_bag(tmp_path / "two", "sqlite3", seconds=0.2, image_size=SIZE, world=WORLD,
                           cameras=["front", "rear"])
    frames = list(WORLD.camera_stream(2, fps=10.0, seed=0)) + list(WORLD.camera_stream(2, fps=10.0, seed=1))
    result = evaluate_bag(OracleSegmenter(frames), options(bag.path, tmp_path / "out", image_topic=bag.image_topic,
                                                           labels_topic=bag.labels_topic))
    for camera in result.metrics["per_camera"].values():
        assert camera["frames_scored"] == 2 and camera["aggregate"]["mIoU"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 image topics need 2 labels topics"):
        evaluate_bag(segmenter, options(bag.path, tmp_path / "bad", image_topic=bag.image_topic,
                                        labels_topic=bag.labels_topic[:1]))
    out = tmp_path / "cli"
    code = zs3(["bag-eval", str(bag.path), "--image-topic", *bag.image_topic, "--labels-topic", *bag.labels_topic,
                "--out", str(out), "--config", str(REPO_ROOT / "config/models/clip_baseline_tiny.yaml"),
                "--no-progress"])
    assert code == 0 and set(json.loads((out / "metrics.json").read_text())["per_camera"]) == set(bag.image_topic)

def test_synonyms_and_template_ensembles_in_a_schedule_score_by_name_and_reach_label_info(tmp_path, segmenter):
    bag = write_sample_bag(tmp_path / "in", "sqlite3", seconds=0.4, image_size=SIZE, world=WORLD).path
    names = list(WORLD.class_names)
    with_synonyms = [f"{names[0]}|{names[0]} shape"] + names[1:]
    schedule = VocabularySchedule((ScheduleEntry(0.0, tuple(names)),
                                   ScheduleEntry(0.2, tuple(with_synonyms), templates=("imagenet",))))
    result = evaluate_bag(segmenter, options(bag, tmp_path / "out", schedule=schedule, write_bag=True,
                                             write_bag_storage="mcap"))
    assert result.metrics["classes"] == names            # scored by the first synonym
    assert [e["templates"] for e in result.metrics["vocabulary_schedule"]] == [
        repr(segmenter.config.prompt_template), "the imagenet set (80 templates)"]
    with AnyReader([result.annotated_bag]) as reader:
        label_infos = [reader.deserialize(raw, conn.msgtype) for conn, _, raw in reader.messages()
                       if conn.topic == "/zs3_segmenter/label_info"]
    assert [list(m.class_synonyms) for m in label_infos] == [names, with_synonyms]
    assert len(label_infos[1].prompt_templates) == 80 and label_infos[0].prompt_templates == [
        segmenter.config.prompt_template]
