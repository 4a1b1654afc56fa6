"""The node's image path off the executor: a one-frame slot and the thread that empties it.

The subscription callback only `offer`s the newest message: a frame that arrives before the
previous one was taken is counted as dropped, never queued, so latency never grows behind a
slow model. One worker thread takes the newest frame, honours the rate limit and hands it to
the node's `process` callback; a malformed frame or a failed segmentation is counted and
warned about, and the next frame is tried (the node never dies on bad input).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Union

from sensor_msgs.msg import CompressedImage, Image

from zs3_core.bags.conversions import ImageConversionError
from zs3_ros.diagnostics import FrameStats

ImageMessage = Union[Image, CompressedImage]


class FrameWorker:
    """Keeps the newest frame and segments it on its own thread.

    ``process(msg, received)`` does the work (``received``: monotonic receive time);
    ``max_rate_hz()`` is read once per frame, so a parameter change applies to the next one;
    ``warn(key, text)`` reports a dropped frame (throttled by the node per key).
    """

    def __init__(self, process: Callable[[ImageMessage, float], None], stats: FrameStats,
                 max_rate_hz: Callable[[], float], warn: Callable[[str, str], None], input_topic: str):
        self._process = process
        self._stats = stats
        self._max_rate_hz = max_rate_hz
        self._warn = warn
        self._input_topic = input_topic
        self._latest: Optional[tuple[ImageMessage, float]] = None   # (message, monotonic receive time)
        self._frame_ready = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zs3_segmenter_worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, msg: ImageMessage) -> None:
        """Keep only the newest frame; the worker takes it. Never blocks on inference."""
        now = time.monotonic()
        with self._frame_ready:
            if self._latest is not None:
                self._stats.dropped += 1
            self._latest = (msg, now)
            self._stats.received.append(now)
            self._stats.received_total += 1
            self._frame_ready.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end after the current frame and wait for it."""
        self._stop.set()
        with self._frame_ready:
            self._frame_ready.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        next_allowed = 0.0
        while not self._stop.is_set():
            with self._frame_ready:
                while self._latest is None and not self._stop.is_set():
                    self._frame_ready.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                msg, received = self._latest
                self._latest = None
            max_rate = self._max_rate_hz()
            if max_rate > 0:
                wait = next_allowed - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                next_allowed = time.monotonic() + 1.0 / max_rate
            try:
                self._process(msg, received)
            except ImageConversionError as err:
                self._stats.malformed += 1
                self._stats.last_error = f"malformed image: {err}"
                self._warn("malformed", f"dropping malformed image on '{self._input_topic}': {err}")
            except Exception as err:  # keep the node alive; the next frame may succeed
                self._stats.failed += 1
                self._stats.last_error = f"{type(err).__name__}: {err}"
                self._warn("failed", f"segmentation failed: {type(err).__name__}: {err}")
