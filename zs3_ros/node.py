"""The `zs3_segmenter` node: a thin ROS 2 adapter around ``zs3_core.Segmenter``.

Several cameras (parameter ``cameras``) share the one model, vocabulary and services: each
camera subscribes ``<name>/image`` and publishes under ``~/<name>/``; the worker segments
the newest frame of every camera that has one as ONE batch (`Segmenter.segment_batch`).

Concurrency: the executor never runs slow work, so it is a SingleThreadedExecutor.
- each image subscription only stores its camera's newest message: a frame that arrives
  before the previous one was taken is counted as that camera's drop, never queued
  (`frame_worker`);
- a worker thread takes the newest frame of each camera, segments them in one model call
  and publishes every output on its camera's topics with its input header; it reads the
  vocabulary as one immutable ``EncodedVocabulary`` reference per batch, so a vocabulary
  change lands between batches, never inside one;
- ``~/set_vocabulary`` is an async callback: it hands the names to the vocabulary thread,
  which validates and encodes them while frames keep flowing, swaps the reference between
  two frames and wakes the executor (a guard condition) to send the reply;
- /diagnostics comes from a timer (`diagnostics`).
Why not rclpy's MultiThreadedExecutor: while a submitted callback waits for a pool thread,
it re-submits it on every wake-up; on 2 cores beside a 432-class encode that loop held the
GIL and stalled the stream for 0.3-1.8 s (measured, bench/vocabulary_change_gaps.py). The
callback groups stay explicit, so the node is still correct under a multi-threaded executor.

A plain node that loads the model on start (not a lifecycle node): the model load is the
only expensive transition, and a plain node runs the same on Humble through Kilted and
under `ros2 run`, launch files and tests without a lifecycle manager.
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Union

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import ColorRGBA, Header

from zs3_core import visualize
from zs3_core.backends import BackendError
from zs3_core.bags.output_fields import label_info_fields, prompt_fields, segmentation_info_fields
from zs3_core.config import load_model_config
from zs3_core.prompt_templates import describe_templates
from zs3_core.segmenter import EncodedVocabulary, SegmentationResult, Segmenter
from zs3_core.vocabulary import VocabularyError
from zs3_ros.conversions import numpy_to_image
from zs3_ros.diagnostics import BatchStats, FrameStats, model_status, segmentation_status
from zs3_ros.frame_worker import CameraFrame, FrameWorker, ImageMessage
from zs3_ros.msg import LabelInfo, SegmentationInfo
from zs3_ros.params import (ConfigError, NodeConfig, declare_parameters, model_threshold, read_config, resolve_path,
                            updated_config)
from zs3_ros.qos import input_qos, latched_qos, output_qos
from zs3_ros.srv import GetVocabulary, SetVocabulary

NODE_NAME = "zs3_segmenter"
_WARN_PERIOD_S = 5.0
VocabularyReply = Union[SetVocabulary.Response, GetVocabulary.Response]


class _Throttle:
    """Fallback for loggers without ``throttle_duration_sec`` (older rclpy)."""

    def __init__(self, period_s: float):
        self.period_s, self._last = period_s, {}

    def ready(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.period_s:
            return False
        self._last[key] = now
        return True


@dataclasses.dataclass
class CameraIO:
    """One camera's input subscription, output publishers and counters. The camera named ""
    is the single-camera node's: `image` in, `~/labels` etc. out."""
    name: str
    subscription: Any
    labels: Any
    confidence: Any
    info: Any
    overlay: Any
    stats: FrameStats

    @property
    def topic(self) -> str:
        return self.subscription.topic_name


class SegmenterNode(Node):
    """Subscribes ``image`` (or ``image/compressed``), publishes labels, confidence, info,
    overlay, label_info and /diagnostics; serves ``~/set_vocabulary`` and ``~/get_vocabulary``.
    With ``cameras: [front, rear]`` it subscribes ``front/image`` and ``rear/image`` and
    publishes ``~/front/labels`` … ``~/rear/overlay``; label_info and the services stay shared.

    ``segmenter`` may be passed in (an already built ``zs3_core.Segmenter``) by callers that
    share one model between nodes; by default the node builds it from its parameters.
    """

    def __init__(self, node_name: str = NODE_NAME, segmenter: Optional[Segmenter] = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        declare_parameters(self)
        self._config: NodeConfig = read_config(self)
        cfg = self._config
        self._segmenter = segmenter if segmenter is not None else self._load_segmenter(cfg)
        _check_batch(self._segmenter, cfg)   # refused here, never on a frame
        self._segmenter.background_classes = cfg.background_classes   # the node's parameter decides
        self._backend_name = str(getattr(self._segmenter, "backend_name", cfg.backend))
        # Why `auto` runs this backend instead of a faster one ("" when it got its first choice).
        self._backend_fallback = str(getattr(getattr(self._segmenter, "backend", None), "fallback", ""))
        # The vocabulary in force: one immutable reference, replaced whole (never patched).
        self._vocabulary = self._segmenter.encode_vocabulary(list(cfg.classes), cfg.prompt_template or None,
                                                             list(cfg.prompt_templates) or None)
        self._weights_note = _weights_note(self._segmenter, cfg)

        self._throttle = _Throttle(_WARN_PERIOD_S)
        self._batches = BatchStats()

        self._image_group = MutuallyExclusiveCallbackGroup()
        self._set_vocabulary_group = MutuallyExclusiveCallbackGroup()   # one change at a time
        self._query_group = MutuallyExclusiveCallbackGroup()            # answers while one encodes
        self._diagnostics_group = MutuallyExclusiveCallbackGroup()
        self._vocabulary_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zs3_vocabulary")
        # Triggered when the vocabulary thread finishes, so the executor resumes the waiting reply.
        self._vocabulary_done = self.create_guard_condition(
            lambda: None, callback_group=MutuallyExclusiveCallbackGroup())

        self._label_info_pub = self.create_publisher(LabelInfo, "~/label_info", latched_qos())
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._worker: Optional[FrameWorker] = None
        self._cameras = {name: self._camera_io(name, cfg.transport_of(i))
                         for i, name in enumerate(cfg.camera_names)}

        self.create_service(SetVocabulary, "~/set_vocabulary", self._on_set_vocabulary,
                            callback_group=self._set_vocabulary_group)
        self.create_service(GetVocabulary, "~/get_vocabulary", self._on_get_vocabulary,
                            callback_group=self._query_group)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics,
                          callback_group=self._diagnostics_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._publish_label_info(self._vocabulary)
        self._worker = FrameWorker(self._process, {c.name: (c.topic, c.stats) for c in self._cameras.values()},
                                   lambda: self._config.max_rate_hz, self._warn_throttled, cfg.frames_per_batch)
        self._worker.start()
        inputs = ", ".join(f"'{c.topic}'" for c in self._cameras.values())
        batching = f", {cfg.frames_per_batch} frames per model call" if cfg.cameras else ""
        self.get_logger().info(
            f"ready: backend {self._backend_name}, subscribing {inputs} "
            f"({cfg.input_transport if not cfg.camera_transports else '/'.join(cfg.camera_transports)}, "
            f"{cfg.qos_reliability}, depth {cfg.qos_depth}){batching}, "
            f"{len(self._vocabulary.names)} classes (vocabulary v{self._vocabulary.vocabulary_version})")
        for note in self._vocabulary.notes:
            self.get_logger().warning(note)
        if self._weights_note:
            self.get_logger().warning(self._weights_note)
        if self._backend_fallback:
            self.get_logger().warning(f"backend {cfg.backend} fell back to {self._backend_name}: {self._backend_fallback}")

    # -- set-up -------------------------------------------------------------------------

    def _camera_io(self, name: str, transport: str) -> CameraIO:
        """Subscription and publishers of camera `name` ("" = the single `image` input)."""
        prefix = f"{name}/" if name else ""
        out_qos = output_qos()
        qos = input_qos(self._config.qos_reliability, self._config.qos_depth)

        def on_image(msg: ImageMessage) -> None:
            self._on_image(name, msg)

        if transport == "compressed":
            subscription = self.create_subscription(CompressedImage, f"{prefix}image/compressed", on_image, qos,
                                                    callback_group=self._image_group)
        else:
            subscription = self.create_subscription(Image, f"{prefix}image", on_image, qos,
                                                    callback_group=self._image_group)
        return CameraIO(name, subscription,
                        labels=self.create_publisher(Image, f"~/{prefix}labels", out_qos),
                        confidence=self.create_publisher(Image, f"~/{prefix}confidence", out_qos),
                        info=self.create_publisher(SegmentationInfo, f"~/{prefix}info", out_qos),
                        overlay=self.create_publisher(Image, f"~/{prefix}overlay", out_qos),
                        stats=FrameStats())

    def _load_segmenter(self, cfg: NodeConfig) -> Segmenter:
        model_config = load_model_config(resolve_path(cfg.model_config, "model_config"))
        overrides = {"unlabeled_threshold": model_threshold(cfg.unlabeled_threshold),
                     "background_classes": cfg.background_classes}
        if cfg.input_size:
            overrides["input_size"] = cfg.input_size
        model_config = dataclasses.replace(model_config, **overrides)
        checkpoint = resolve_path(cfg.checkpoint, "checkpoint") if cfg.checkpoint else None
        t0 = time.perf_counter()
        segmenter = Segmenter.from_config(model_config, checkpoint=checkpoint, backend=cfg.backend,
                                          device=cfg.device, precision=cfg.backend_precision,
                                          max_batch=cfg.frames_per_batch)
        self.get_logger().info(f"loaded {cfg.model_config} in {time.perf_counter() - t0:.1f} s")
        return segmenter

    @property
    def vocabulary(self) -> EncodedVocabulary:
        """The EncodedVocabulary in force (an immutable snapshot)."""
        return self._vocabulary

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def weights_note(self) -> str:
        """A plain statement when the model runs on random weights; empty otherwise."""
        return self._weights_note

    def frame_counters(self, camera: Optional[str] = None) -> dict[str, int]:
        """Frames received, published, dropped (superseded before segmentation), malformed,
        failed: of `camera`, or summed over every camera."""
        counters = [c.stats.counters() for c in self._cameras.values() if camera is None or c.name == camera]
        if not counters:
            raise KeyError(f"no camera {camera!r}; the node serves {list(self._cameras)}")
        return {key: sum(c[key] for c in counters) for key in counters[0]}

    # -- image path ---------------------------------------------------------------------

    def _on_image(self, camera: str, msg: ImageMessage) -> None:
        """Keep only the camera's newest frame; the worker segments it. Never blocks on inference."""
        if self._worker is not None:   # frames that arrive before the node is ready are not counted
            self._worker.offer(camera, msg)

    def _process(self, frames: list[CameraFrame]) -> None:
        """Segment one batch (the newest frame of each camera) in one model call and publish
        each result on its camera's topics."""
        vocabulary = self._vocabulary          # one snapshot for the whole batch
        results = self._segmenter.segment_batch([f.rgb for f in frames], vocabulary=vocabulary)
        self._batches.add(len(frames), float(results[0].timings.get("model", 0.0)))
        for frame, result in zip(frames, results):
            self._publish(self._cameras[frame.camera], frame, result, vocabulary)

    def _publish(self, camera: CameraIO, frame: CameraFrame, result: SegmentationResult,
                 vocabulary: EncodedVocabulary) -> None:
        cfg = self._config
        labels = result.labels
        header = frame.msg.header
        encoding = "mono8" if labels.dtype == np.uint8 else "mono16"
        camera.labels.publish(numpy_to_image(labels, encoding, header))
        camera.confidence.publish(numpy_to_image(result.confidence.astype(np.float32, copy=False), "32FC1", header))
        if cfg.publish_overlay and camera.overlay.get_subscription_count() > 0:
            overlay = visualize.overlay(frame.rgb, labels, len(vocabulary.names), result.unlabeled_value,
                                        alpha=cfg.overlay_alpha)
            camera.overlay.publish(numpy_to_image(overlay, "rgb8", header))
        inference_ms = float(result.timings.get("total", 0.0))
        latency_ms = (time.monotonic() - frame.received) * 1000.0
        camera.info.publish(self._info(header, result, vocabulary, latency_ms, inference_ms))
        stats = camera.stats
        stats.published.append(time.monotonic())
        stats.published_total += 1
        stats.latency_ms.append(latency_ms)
        stats.inference_ms.append(inference_ms)

    def _info(self, header: Header, result: SegmentationResult, vocabulary: EncodedVocabulary,
              latency_ms: float, inference_ms: float) -> SegmentationInfo:
        fields = segmentation_info_fields(result, vocabulary, latency_ms, inference_ms, self._backend_name)
        return SegmentationInfo(header=header, **fields)

    # -- vocabulary ---------------------------------------------------------------------

    async def _on_set_vocabulary(self, request: SetVocabulary.Request,
                                 response: SetVocabulary.Response) -> SetVocabulary.Response:
        """Encode on the vocabulary thread; the executor keeps serving the image path meanwhile."""
        names = list(request.class_names)
        template, templates = request.prompt_template, list(request.prompt_templates)
        if not template and not templates:   # neither given: the templates in force stay
            templates = list(self._vocabulary.templates)
        t0 = time.perf_counter()
        vocabulary, success, message = await self._on_vocabulary_thread(
            self._change_vocabulary, names, template, templates)
        return self._fill_vocabulary_reply(response, vocabulary, success, message, t0)

    def _on_vocabulary_thread(self, work: Callable[..., Any], *args: Any) -> Future:
        """Run `work(*args)` on the vocabulary thread; an rclpy Future the callback can await."""
        done = Future()

        def run() -> None:
            try:
                done.set_result(work(*args))
            except BaseException as err:   # handed to the awaiting callback, which re-raises
                done.set_exception(err)
            finally:
                try:
                    self._vocabulary_done.trigger()
                except Exception:   # the node was destroyed meanwhile: nobody waits any more
                    pass

        self._vocabulary_thread.submit(run)
        return done

    def _change_vocabulary(self, names: list[str], template: str,
                           templates: list[str]) -> tuple[EncodedVocabulary, bool, str]:
        """Validate and encode, then swap the snapshot between frames → (vocabulary, success, message).

        Runs on the vocabulary thread, the only writer of ``self._vocabulary``; readers take the reference.
        """
        old = self._vocabulary
        try:
            new = self._segmenter.encode_vocabulary(names, template or None, templates or None)
        except VocabularyError as err:
            return old, False, f"vocabulary rejected: {err}"
        except Exception as err:  # an encoder failure must not take the node down
            self.get_logger().error(f"encoding the vocabulary failed: {type(err).__name__}: {err}")
            return old, False, f"encoding failed: {type(err).__name__}: {err}"
        self._vocabulary = new   # atomic reference swap: the next frame uses it
        self._publish_label_info(new)
        self.get_logger().info(f"vocabulary v{old.vocabulary_version} -> v{new.vocabulary_version}: {len(new.names)} classes")
        with_synonyms = sum(len(s) > 1 for s in new.synonyms)
        return new, True, " ".join([
            f"vocabulary v{new.vocabulary_version} in force: {len(new.names)} classes"
            f"{f' ({with_synonyms} with synonyms)' if with_synonyms else ''}, templates: "
            f"{describe_templates(new.templates)} (was v{old.vocabulary_version}, {len(old.names)} classes).",
            *new.notes])

    @staticmethod
    def _fill_vocabulary_reply(response: SetVocabulary.Response, vocabulary: EncodedVocabulary, success: bool,
                               message: str, t0: float) -> SetVocabulary.Response:
        response.success = success
        response.message = message
        response.encode_time_ms = float((time.perf_counter() - t0) * 1000.0)
        return _describe_vocabulary(response, vocabulary)

    def _on_get_vocabulary(self, request: GetVocabulary.Request,
                           response: GetVocabulary.Response) -> GetVocabulary.Response:
        vocabulary = self._vocabulary
        response.prompt_template = vocabulary.template or ""
        return _describe_vocabulary(response, vocabulary)

    def _publish_label_info(self, vocabulary: EncodedVocabulary) -> None:
        fields = label_info_fields(vocabulary, float(getattr(self._segmenter, "unlabeled_threshold", 0.0)))
        colors = [ColorRGBA(r=float(c[0]), g=float(c[1]), b=float(c[2]), a=float(c[3])) for c in fields.pop("rgba")]
        msg = LabelInfo(colors=colors, **fields)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._label_info_pub.publish(msg)

    # -- parameters and diagnostics -----------------------------------------------------

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        try:
            new_config = updated_config(self._config, parameters)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        threshold_changed = new_config.unlabeled_threshold != self._config.unlabeled_threshold
        self._config = new_config   # one reference; the worker reads it once per frame
        self._segmenter.background_classes = new_config.background_classes   # read once per segment()
        if threshold_changed:
            self._segmenter.set_unlabeled_threshold(model_threshold(new_config.unlabeled_threshold))
            self._publish_label_info(self._vocabulary)
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        """One status for the single `image` input; with cameras, one per camera and one for
        the model they share."""
        node, vocabulary = self.get_fully_qualified_name(), self._vocabulary
        statuses = [segmentation_status(f"{node}: {camera.name or 'segmentation'}", camera.stats, vocabulary,
                                        self._backend_name, camera.topic, self._weights_note, self._backend_fallback)
                    for camera in self._cameras.values()]
        if self._config.cameras:
            statuses.append(model_status(f"{node}: model", self._batches, vocabulary, self._backend_name,
                                         self._config.cameras, self._weights_note, self._backend_fallback))
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = statuses
        self._diagnostics_pub.publish(array)

    def _warn_throttled(self, key: str, text: str) -> None:
        logger = self.get_logger()
        try:
            logger.warning(text, throttle_duration_sec=_WARN_PERIOD_S)
        except TypeError:   # rclpy without throttling support
            if self._throttle.ready(key):
                logger.warning(text)

    def destroy_node(self) -> None:
        worker = getattr(self, "_worker", None)   # absent when the constructor failed
        if worker is not None:
            worker.stop(timeout=10.0)
        vocabulary_thread = getattr(self, "_vocabulary_thread", None)
        if vocabulary_thread is not None:
            vocabulary_thread.shutdown(wait=True, cancel_futures=True)
        super().destroy_node()


def _describe_vocabulary(response: VocabularyReply, vocabulary: EncodedVocabulary) -> VocabularyReply:
    """The fields both vocabulary services share: version, class ids and names, synonyms and templates."""
    response.vocabulary_version = int(vocabulary.vocabulary_version)
    response.class_ids = list(range(len(vocabulary.names)))
    response.class_names = list(vocabulary.names)
    for name, value in prompt_fields(vocabulary).items():
        setattr(response, name, value)
    return response


def _check_batch(segmenter: Segmenter, cfg: NodeConfig) -> None:
    """ConfigError at start-up when the backend cannot take the node's batch (an ONNX graph
    or TensorRT engine built for fewer frames than the cameras configured)."""
    wanted = cfg.frames_per_batch
    try:
        segmenter.check_batch_size(wanted)     # the one rule, as segment_batch applies it
    except BackendError:
        served = segmenter.backend.max_batch
        raise ConfigError(
            f"{len(cfg.camera_names)} cameras are segmented {wanted} frames per model call, but the "
            f"{segmenter.backend_name} backend was built for at most {served} frame(s) per call; set batch_size "
            f"to {served} (cameras take turns), or export the model with a batch of {wanted} "
            f"(zs3 export --max-batch {wanted}; ONNX graphs from zs3 export take any batch)") from None


def _weights_note(segmenter: Segmenter, cfg: NodeConfig) -> str:
    """A plain statement when the model runs on random weights (no CLIP weights, no checkpoint)."""
    model_config = getattr(segmenter, "config", None)
    if cfg.checkpoint or getattr(model_config, "clip_weights", None):
        return ""
    return ("the model runs on RANDOM weights (no clip_weights in the model config, no checkpoint): "
            "the labels are meaningless until trained or pretrained weights are given")


def main(args: Optional[list] = None) -> int:
    rclpy.init(args=args)
    try:
        node = SegmenterNode()
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"[{NODE_NAME}] cannot start: {err}", file=sys.stderr)
        rclpy.try_shutdown() if hasattr(rclpy, "try_shutdown") else rclpy.shutdown()
        return 2
    # Slow work runs on the node's own threads (see the module docstring).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    except Exception as err:  # ExternalShutdownException (Iron+) on SIGINT/SIGTERM
        if type(err).__name__ != "ExternalShutdownException":
            raise
    finally:
        # A terminal's Ctrl-C reaches a launched node twice (the SIGINT to the terminal's
        # process group, then the one `ros2 launch` forwards): the second must not interrupt
        # the clean-up with a KeyboardInterrupt traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        executor.shutdown()
        node.destroy_node()
        if hasattr(rclpy, "try_shutdown"):
            rclpy.try_shutdown()
        elif rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
