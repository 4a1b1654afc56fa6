"""A bag of the node's outputs, written offline by `zs3 bag-eval --write-bag`.

Same topics, types, encodings and header stamps as the live `zs3_segmenter` node
(labels mono8/mono16, confidence 32FC1, info, overlay rgb8, latched label_info), so a team
can replay an evaluation in RViz or Foxglove next to the source bag. The custom message
definitions travel inside the bag (registered from msg/*.msg).

Message contents come from `zs3_core.bags.output_fields`, the functions the live node uses too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zs3_core import visualize
from zs3_core.bags.bag_io import BagWriter, image_message
from zs3_core.bags.output_fields import label_info_fields, segmentation_info_fields

OUTPUT_TOPICS = ("labels", "confidence", "info", "overlay", "label_info")


class AnnotatedBagWriter:
    """Writes `/<node_name>/{labels,confidence,info,overlay,label_info}` at the input's log times."""

    def __init__(self, path: str | Path, storage: str = "mcap", node_name: str = "zs3_segmenter",
                 backend: str = "", overlay: bool = True, overlay_alpha: float = 0.5):
        if storage == "ros1":
            raise ValueError("annotated bags are rosbag2 (sqlite3 or mcap): the node's outputs are ROS 2")
        self.writer = BagWriter(path, storage)
        self.backend = backend
        self.overlay = overlay
        self.overlay_alpha = overlay_alpha
        ns = "/" + node_name.strip("/")
        w = self.writer
        self.conn = {
            "labels": w.add_topic(f"{ns}/labels", "sensor_msgs/msg/Image"),
            "confidence": w.add_topic(f"{ns}/confidence", "sensor_msgs/msg/Image"),
            "info": w.add_topic(f"{ns}/info", "zs3_ros/msg/SegmentationInfo"),
            "label_info": w.add_topic(f"{ns}/label_info", "zs3_ros/msg/LabelInfo", latched=True),
        }
        if overlay:
            self.conn["overlay"] = w.add_topic(f"{ns}/overlay", "sensor_msgs/msg/Image")

    @property
    def path(self) -> Path:
        return self.writer.path

    def write_label_info(self, log_time_ns: int, vocabulary: Any, threshold: float) -> None:
        fields = label_info_fields(vocabulary, threshold)
        rgba = fields.pop("rgba")
        colors = [self.writer.make("std_msgs/msg/ColorRGBA", r=float(c[0]), g=float(c[1]),
                                   b=float(c[2]), a=float(c[3])) for c in rgba]
        msg = self.writer.make("zs3_ros/msg/LabelInfo", header=self.writer.header(log_time_ns, ""),
                               colors=colors, **fields)
        self.writer.write(self.conn["label_info"], log_time_ns, msg)

    def write_frame(self, log_time_ns: int, stamp: int, frame_id: str, rgb: np.ndarray, result: Any,
                    vocabulary: Any, latency_ms: float) -> None:
        w = self.writer
        header = w.header(stamp, frame_id)
        labels = result.labels
        w.write(self.conn["labels"], log_time_ns,
                image_message(w, labels, "mono8" if labels.dtype == np.uint8 else "mono16", header))
        w.write(self.conn["confidence"], log_time_ns,
                image_message(w, result.confidence.astype(np.float32, copy=False), "32FC1", header))
        if self.overlay:
            over = visualize.overlay(rgb, labels, len(vocabulary.names), result.unlabeled_value,
                                     alpha=self.overlay_alpha)
            w.write(self.conn["overlay"], log_time_ns, image_message(w, over, "rgb8", header))
        fields = segmentation_info_fields(result, vocabulary, latency_ms,
                                          float(result.timings.get("total", 0.0)), self.backend)
        w.write(self.conn["info"], log_time_ns,
                w.make("zs3_ros/msg/SegmentationInfo", header=header, **fields))

    def close(self) -> None:
        self.writer.close()
