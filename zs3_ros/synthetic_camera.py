"""A synthetic camera and output recorder for a running `zs3_segmenter` node.

Used by the demo, the node benchmark and the node tests: it publishes frames on the node's
input topic (raw or compressed), records every output that comes back keyed by the input
stamp, and calls the vocabulary services with bounded waits. Frames come from
``zs3_core.synthetic.SyntheticWorld`` (moving coloured shapes) or from the caller.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from zs3_core.bags.conversions import image_to_numpy
from zs3_ros.conversions import numpy_to_image, rgb_to_compressed
from zs3_ros.msg import LabelInfo, SegmentationInfo
from zs3_ros.qos import latched_qos
from zs3_ros.srv import GetVocabulary, SetVocabulary

StampKey = tuple  # (sec, nanosec) of the input header


def stamp_key(header: Any) -> StampKey:
    return (int(header.stamp.sec), int(header.stamp.nanosec))


@dataclass
class FrameOutputs:
    """What the node published for one input frame, with monotonic arrival times."""
    published_at: float = 0.0
    labels: Any = None
    confidence: Any = None
    info: Any = None
    overlay: Any = None
    arrived: dict = field(default_factory=dict)   # topic kind -> monotonic time

    def complete(self, kinds: Sequence[str]) -> bool:
        return all(getattr(self, k) is not None for k in kinds)

    def labels_array(self) -> np.ndarray:
        return image_to_numpy(self.labels)


def wait_until(predicate, timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def moving_scenes(num_frames: int, size: tuple[int, int] = (240, 320), fps: float = 5.0,
                  seed: int = 0) -> Iterator:
    """Scenes (frame, ground-truth labels, objects) of coloured shapes gliding over a
    textured background; one of the shapes is a class held out of segmentation training."""
    from zs3_core.synthetic import SyntheticWorld, WorldConfig

    world = SyntheticWorld(WorldConfig(seed=seed, image_size=tuple(size), objects=(3, 4)))
    yield from world.camera_stream(num_frames, fps=fps, seed=seed)


def moving_shapes(num_frames: int, size: tuple[int, int] = (240, 320), fps: float = 5.0,
                  seed: int = 0) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of `moving_scenes`."""
    for scene in moving_scenes(num_frames, size, fps, seed):
        yield scene.image


def world_class_names(seed: int = 0, which: str = "all") -> list[str]:
    """Class names of the synthetic world ("red circle", ...): "all", "seen" (the shipped
    models' training classes) or "unseen" (held out of segmentation training)."""
    from zs3_core.synthetic import SyntheticWorld, WorldConfig
    world = SyntheticWorld(WorldConfig(seed=seed))
    ids = {"all": range(world.num_classes), "seen": world.seen_class_ids,
           "unseen": world.unseen_class_ids}[which]
    return [world.class_names[i] for i in ids]


class SegmenterClient:
    """Publishes frames to a segmenter node and records its outputs.

    ``segmenter`` is the node's fully qualified name (its private topics live under it);
    ``image_topic`` is the topic the node subscribes to (``image`` unless remapped). For one
    camera of a multi-camera node, ``camera`` names it: its outputs live under
    ``<segmenter>/<camera>/`` (the vocabulary services and label_info stay the node's).
    """

    KINDS = ("labels", "confidence", "info", "overlay")

    def __init__(self, context: Optional[rclpy.context.Context] = None, segmenter: str = "/zs3_segmenter",
                 image_topic: str = "/image", compressed: bool = False, overlay: bool = False,
                 name: str = "zs3_camera", camera: str = ""):
        self.node = rclpy.create_node(name, context=context)
        self.services = segmenter.rstrip("/")
        self.segmenter = f"{self.services}/{camera}" if camera else self.services
        self.compressed = compressed
        self._lock = threading.Condition()
        self.frames: dict[StampKey, FrameOutputs] = {}
        self.label_info: list = []
        self._last_stamp_ns = 0
        pub_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        if compressed:
            self._image_pub = self.node.create_publisher(CompressedImage, image_topic + "/compressed", pub_qos)
        else:
            self._image_pub = self.node.create_publisher(Image, image_topic, pub_qos)
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for kind, msg_type in (("labels", Image), ("confidence", Image), ("info", SegmentationInfo)):
            self.node.create_subscription(msg_type, f"{self.segmenter}/{kind}", self._recorder(kind), out_qos)
        if overlay:
            self.subscribe_overlay()
        self.node.create_subscription(LabelInfo, f"{self.services}/label_info", self._on_label_info, latched_qos())
        self._set_vocabulary = self.node.create_client(SetVocabulary, f"{self.services}/set_vocabulary")
        self._get_vocabulary = self.node.create_client(GetVocabulary, f"{self.services}/get_vocabulary")

    def subscribe_overlay(self) -> Any:
        return self.node.create_subscription(
            Image, f"{self.segmenter}/overlay", self._recorder("overlay"), QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    # -- recording ----------------------------------------------------------------------

    def _recorder(self, kind: str):
        def record(msg: Any) -> None:
            with self._lock:
                frame = self.frames.setdefault(stamp_key(msg.header), FrameOutputs())
                setattr(frame, kind, msg)
                frame.arrived[kind] = time.monotonic()
                self._lock.notify_all()
        return record

    def _on_label_info(self, msg: LabelInfo) -> None:
        with self._lock:
            self.label_info.append(msg)
            self._lock.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate()`` (evaluated under the lock) is true; False on timeout."""
        with self._lock:
            return self._lock.wait_for(predicate, timeout=timeout)

    def wait_outputs(self, key: StampKey, timeout: float = 10.0,
                     kinds: Sequence[str] = ("labels", "confidence", "info")) -> Optional[FrameOutputs]:
        ok = self.wait_for(lambda: key in self.frames and self.frames[key].complete(kinds), timeout)
        return self.frames[key] if ok else None

    # -- publishing ---------------------------------------------------------------------

    def wait_until_connected(self, timeout: float = 10.0) -> bool:
        """True once the node subscribes to our images and publishes to our subscriptions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subscribed = self._image_pub.get_subscription_count() > 0
            if subscribed and self.node.count_publishers(f"{self.segmenter}/labels") > 0 and \
                    self._set_vocabulary.service_is_ready():
                return True
            time.sleep(0.05)
        return False

    def next_header(self, frame_id: str = "camera") -> Any:
        """A header with a unique stamp (the node's outputs are matched to inputs by stamp)."""
        now_ns = max(self.node.get_clock().now().nanoseconds, self._last_stamp_ns + 1)
        self._last_stamp_ns = now_ns
        header = Image().header
        header.stamp.sec, header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
        header.frame_id = frame_id
        return header

    def publish(self, frame: Any, encoding: str = "rgb8", fmt: str = "jpeg") -> StampKey:
        """Publish an (H, W[, C]) array (or a ready message, header kept) and return its stamp key."""
        if isinstance(frame, np.ndarray):
            header = self.next_header()
            msg = rgb_to_compressed(frame, fmt, header) if self.compressed else numpy_to_image(frame, encoding, header)
        else:
            msg = frame
        key = stamp_key(msg.header)
        with self._lock:
            self.frames.setdefault(key, FrameOutputs()).published_at = time.monotonic()
        self._image_pub.publish(msg)
        return key

    # -- services -----------------------------------------------------------------------

    def _call(self, client: Any, request: Any, timeout: float) -> Any:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available after {timeout} s")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future) if hasattr(client, "remove_pending_request") else None
            raise TimeoutError(f"no reply from {client.srv_name} within {timeout} s")
        return future.result()

    def set_vocabulary(self, class_names: Sequence[str], prompt_template: str = "", timeout: float = 60.0,
                       prompt_templates: Sequence[str] = ()) -> Any:
        request = SetVocabulary.Request(class_names=list(class_names), prompt_template=prompt_template,
                                        prompt_templates=list(prompt_templates))
        return self._call(self._set_vocabulary, request, timeout)

    def set_vocabulary_async(self, class_names: Sequence[str], prompt_template: str = "") -> Any:
        return self._set_vocabulary.call_async(
            SetVocabulary.Request(class_names=list(class_names), prompt_template=prompt_template))

    def get_vocabulary(self, timeout: float = 10.0) -> Any:
        return self._call(self._get_vocabulary, GetVocabulary.Request(), timeout)

    def destroy(self) -> None:
        self.node.destroy_node()


class Spinner:
    """One executor spinning some nodes on a background thread (``with`` block); single-threaded
    like the node's own ``main`` (see ``zs3_ros.node``): no callback here is slow."""

    def __init__(self, *nodes: Any, context: Optional[rclpy.context.Context] = None,
                 executor_type: type = SingleThreadedExecutor):
        self.executor = executor_type(context=context)
        for node in nodes:
            self.add(node)
        self._thread = threading.Thread(target=self._spin, name="zs3_spinner", daemon=True)

    def add(self, node: Any) -> None:
        self.executor.add_node(node.node if isinstance(node, SegmenterClient) else node)

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception as err:  # ExternalShutdownException when the context shuts down
            if type(err).__name__ not in ("ExternalShutdownException", "ShutdownException"):
                raise

    def __enter__(self) -> "Spinner":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)


@contextmanager
def running_segmenter(parameters: Optional[dict] = None, params_file: Optional[str] = None,
                      compressed: bool = False, overlay: bool = False, connect_timeout: float = 20.0,
                      segmenter: Any = None, executor_type: type = SingleThreadedExecutor):
    """A zs3_segmenter node and a SegmenterClient in a private rclpy context, spinning.

    Yields ``(node, client)``; everything is torn down on exit. ``parameters`` override the
    parameter file (e.g. ``{"input_transport": "compressed"}``); ``segmenter`` hands the node an
    already built ``zs3_core.Segmenter`` instead of loading one from ``model_config``;
    ``executor_type`` is the rclpy executor class that spins both (benchmarks compare them).
    """
    with _running(parameters, params_file, (), compressed, overlay, connect_timeout, segmenter,
                  executor_type) as (node, clients):
        yield node, clients[""]


@contextmanager
def running_cameras(cameras: Sequence[str], parameters: Optional[dict] = None, params_file: Optional[str] = None,
                    compressed: Union[bool, frozenset] = False, connect_timeout: float = 20.0, segmenter: Any = None):
    """A zs3_segmenter node serving `cameras` and one SegmenterClient per camera (publishing
    ``/<camera>/image``, recording ``~/<camera>/…``), spinning in a private rclpy context.

    Yields ``(node, {camera: client})``; `parameters` as for `running_segmenter` (``cameras``
    is set from `cameras`); `compressed`: for every camera, or the set of cameras that publish
    compressed frames (the node's ``camera_transports`` must say the same).
    """
    parameters = {**(parameters or {}), "cameras": list(cameras)}
    with _running(parameters, params_file, tuple(cameras), compressed, False, connect_timeout, segmenter,
                  SingleThreadedExecutor) as (node, clients):
        yield node, clients


@contextmanager
def _running(parameters: Optional[dict], params_file: Optional[str], cameras: tuple, compressed: Any,
             overlay: bool, connect_timeout: float, segmenter: Any, executor_type: type):
    """The node and one client per camera ("" = the single `image` input), spun together."""
    from rclpy.parameter import Parameter

    from zs3_ros.node import SegmenterNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    clients: dict = {}
    try:
        cli_args = ["--ros-args", "--params-file", str(params_file)] if params_file else None
        overrides = [Parameter(k, value=list(v) if isinstance(v, tuple) else v) for k, v in (parameters or {}).items()]
        node = SegmenterNode(segmenter=segmenter, context=context, cli_args=cli_args, parameter_overrides=overrides)
        for camera in cameras or ("",):
            clients[camera] = SegmenterClient(
                context, segmenter=node.get_fully_qualified_name(), overlay=overlay,
                compressed=camera in compressed if isinstance(compressed, (set, frozenset)) else compressed,
                image_topic=f"/{camera}/image" if camera else "/image", name=f"zs3_camera_{camera}".rstrip("_"),
                camera=camera)
        with Spinner(node, *clients.values(), context=context, executor_type=executor_type):
            for client in clients.values():
                if not client.wait_until_connected(connect_timeout):
                    raise TimeoutError(f"the camera client did not discover {client.segmenter} "
                                       f"within {connect_timeout} s")
            yield node, clients
    finally:
        for client in clients.values():
            client.destroy()
        if node is not None:
            node.destroy_node()
        rclpy.shutdown(context=context)


@dataclass
class StreamDuringChange:
    """What `stream_while_changing_vocabulary` saw: input keys, the service reply, output times."""
    keys: list
    reply: Any
    arrivals: list        # monotonic times at which label images came back, sorted

    @property
    def gaps_s(self) -> list:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]

    def max_gap_s(self) -> float:
        return max(self.gaps_s, default=float("inf"))


def stream_while_changing_vocabulary(client: SegmenterClient, frames: Sequence[Any], class_names: Sequence[str],
                                     period_s: float = 0.2, delay_s: float = 0.5, min_frames: int = 10,
                                     timeout_s: float = 60.0, prompt_templates: Sequence[str] = ()
                                     ) -> StreamDuringChange:
    """Publish `frames` in turn every `period_s`; `delay_s` in, ask the node for `class_names`
    (in the ensemble `prompt_templates` when given).

    Streams until the reply is in and at least `min_frames` went out, then one more frame,
    and waits for its outputs: the way an operator changes vocabulary on a live camera.
    """
    reply_box: dict = {}

    def change_vocabulary() -> None:
        time.sleep(delay_s)
        reply_box["reply"] = client.set_vocabulary(class_names, timeout=timeout_s, prompt_templates=prompt_templates)

    changer = threading.Thread(target=change_vocabulary, name="zs3_vocabulary_change")
    changer.start()
    keys = []
    start = time.monotonic()
    while (changer.is_alive() or len(keys) < min_frames) and time.monotonic() - start < timeout_s:
        keys.append(client.publish(frames[len(keys) % len(frames)]))
        time.sleep(period_s - (time.monotonic() - start) % period_s)
    changer.join()
    keys.append(client.publish(frames[0]))
    client.wait_outputs(keys[-1], timeout=15)
    arrivals = sorted(client.frames[k].arrived["labels"] for k in keys if "labels" in client.frames[k].arrived)
    return StreamDuringChange(keys, reply_box.get("reply"), arrivals)
