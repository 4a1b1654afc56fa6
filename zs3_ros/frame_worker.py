"""The node's image path off the executor: one newest-frame slot per camera and the thread
that empties them, a batch at a time.

Each subscription callback only `offer`s its camera's newest message: a frame that arrives
before the previous one of the same camera was taken is counted as that camera's drop,
never queued, so latency never grows behind a slow model. One worker thread takes the
newest frame of every camera that has one (at most `frames_per_batch`, going round the
cameras from where the last batch stopped, so a fast camera never starves a slow one and
a silent camera never holds the others back), decodes each on its own (a malformed frame
is counted and warned about on its camera, and left out of the batch) and hands the batch
to the node's `process` callback. A failed segmentation is counted on every camera in the
batch, and the next batch is tried (the node never dies on bad input). With one camera
this is the single-slot worker of the plain `image` input.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from zs3_core.bags.conversions import ImageConversionError, compressed_to_rgb, image_to_rgb
from zs3_ros.diagnostics import FrameStats

ImageMessage = Union[Image, CompressedImage]


@dataclass
class CameraFrame:
    """One decoded frame of a batch: which camera, the message (its header goes out with
    every output), the RGB pixels and the monotonic receive time."""
    camera: str
    msg: ImageMessage
    rgb: np.ndarray
    received: float


class FrameWorker:
    """Keeps each camera's newest frame and segments them in batches on its own thread.

    ``cameras``: camera name → (input topic, FrameStats); ``process(frames)`` does the work on
    a list of CameraFrame; ``max_rate_hz()`` (batches per second) is read once per batch, so a
    parameter change applies to the next one; ``warn(key, text)`` reports a malformed frame or
    a failed batch (throttled by the node per key).
    """

    def __init__(self, process: Callable[[list[CameraFrame]], None], cameras: dict[str, tuple[str, FrameStats]],
                 max_rate_hz: Callable[[], float], warn: Callable[[str, str], None], frames_per_batch: int = 0):
        self._process = process
        self._cameras = dict(cameras)
        self._order: Sequence[str] = list(cameras)
        self._frames_per_batch = frames_per_batch or len(self._order)
        self._next = 0                                   # where the next round starts
        self._max_rate_hz = max_rate_hz
        self._warn = warn
        # camera -> (message, monotonic receive time); absent while the camera has no new frame
        self._latest: dict[str, tuple[ImageMessage, float]] = {}
        self._frame_ready = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zs3_segmenter_worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, camera: str, msg: ImageMessage) -> None:
        """Keep only the camera's newest frame; the worker takes it. Never blocks on inference."""
        now = time.monotonic()
        stats = self._cameras[camera][1]
        with self._frame_ready:
            if camera in self._latest:
                stats.dropped += 1
            self._latest[camera] = (msg, now)
            stats.received.append(now)
            stats.received_total += 1
            self._frame_ready.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end after the current batch and wait for it."""
        self._stop.set()
        with self._frame_ready:
            self._frame_ready.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout)

    def _take(self) -> list[tuple[str, ImageMessage, float]]:
        """The newest frame of each camera that has one, at most `frames_per_batch`, in camera
        order from `_next` (round robin); called with the lock held."""
        taken = []
        count = len(self._order)
        for step in range(count):
            camera = self._order[(self._next + step) % count]
            if camera in self._latest:
                msg, received = self._latest.pop(camera)
                taken.append((camera, msg, received))
                if len(taken) == self._frames_per_batch:
                    self._next = (self._next + step + 1) % count
                    break
        return taken

    def _decode(self, taken: list[tuple[str, ImageMessage, float]]) -> list[CameraFrame]:
        """Decode each frame on its own: a malformed one is counted on its camera and left out."""
        frames = []
        for camera, msg, received in taken:
            try:
                rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
            except ImageConversionError as err:
                topic, stats = self._cameras[camera]
                stats.malformed += 1
                stats.last_error = f"malformed image: {err}"
                self._warn(f"malformed {camera}", f"dropping malformed image on '{topic}': {err}")
                continue
            frames.append(CameraFrame(camera, msg, rgb, received))
        return frames

    def _run(self) -> None:
        next_allowed = 0.0
        while not self._stop.is_set():
            with self._frame_ready:
                while not self._latest and not self._stop.is_set():
                    self._frame_ready.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                taken = self._take()
            max_rate = self._max_rate_hz()
            if max_rate > 0:
                wait = next_allowed - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                next_allowed = time.monotonic() + 1.0 / max_rate
            frames = self._decode(taken)
            if not frames:
                continue
            try:
                self._process(frames)
            except Exception as err:  # keep the node alive; the next batch may succeed
                for frame in frames:
                    stats = self._cameras[frame.camera][1]
                    stats.failed += 1
                    stats.last_error = f"{type(err).__name__}: {err}"
                self._warn("failed", f"segmentation failed: {type(err).__name__}: {err}")

