"""What the node reports on /diagnostics: frame counters and rates kept by the image path,
turned into one DiagnosticStatus per period (with several cameras: one per camera, plus
one for the model they share).

The counters are written by the subscription and the frame worker and read by the timer;
each field is a single int or a bounded deque, so no lock is needed for a report that is
at most one frame stale.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from zs3_core.segmenter import EncodedVocabulary

STATS_WINDOW_S = 5.0       # rates are measured over this window; no input for twice as long warns


@dataclasses.dataclass
class FrameStats:
    """Counters for /diagnostics; written by the callbacks, read by the timer."""

    received: deque = dataclasses.field(default_factory=lambda: deque(maxlen=1000))   # monotonic times
    published: deque = dataclasses.field(default_factory=lambda: deque(maxlen=1000))
    latency_ms: deque = dataclasses.field(default_factory=lambda: deque(maxlen=100))
    inference_ms: deque = dataclasses.field(default_factory=lambda: deque(maxlen=100))
    received_total: int = 0
    published_total: int = 0
    dropped: int = 0
    malformed: int = 0
    failed: int = 0
    last_error: str = ""

    @staticmethod
    def rate(times: deque, now: float) -> float:
        recent = [t for t in list(times) if now - t <= STATS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def counters(self) -> dict[str, int]:
        """Frames received, published, dropped (superseded before segmentation), malformed, failed."""
        return {"received": self.received_total, "published": self.published_total, "dropped": self.dropped,
                "malformed": self.malformed, "failed": self.failed}


@dataclasses.dataclass
class BatchStats:
    """The shared model's side of a multi-camera node: how many frames each call took and how
    long the call ran; written by the worker, read by the timer."""

    batch_sizes: deque = dataclasses.field(default_factory=lambda: deque(maxlen=100))
    model_ms: deque = dataclasses.field(default_factory=lambda: deque(maxlen=100))
    batches_total: int = 0

    def add(self, size: int, model_ms: float) -> None:
        self.batch_sizes.append(size)
        self.model_ms.append(model_ms)
        self.batches_total += 1


def model_status(name: str, batches: BatchStats, vocabulary: EncodedVocabulary, backend_name: str,
                 cameras: tuple[str, ...], weights_note: str, backend_fallback: str = "") -> DiagnosticStatus:
    """The model every camera shares: backend, vocabulary, weights and how full its batches run
    (WARN while `auto` runs a fallback backend, or on random weights)."""
    size = statistics.mean(batches.batch_sizes) if batches.batch_sizes else 0.0
    model = statistics.median(batches.model_ms) if batches.model_ms else 0.0
    status = DiagnosticStatus(name=name, hardware_id=backend_name, level=DiagnosticStatus.OK,
                              message=f"{backend_name}: {size:.1f} of {len(cameras)} cameras per batch, "
                                      f"median model call {model:.0f} ms")
    if backend_fallback or weights_note:
        status.level = DiagnosticStatus.WARN
        status.message += f"; backend fell back to {backend_name}" if backend_fallback else "; random weights"
    values = {
        "cameras": ", ".join(cameras),
        "batches": str(batches.batches_total),
        "frames_per_batch_mean": f"{size:.2f}",
        "model_ms_median": f"{model:.1f}",
        "backend": backend_name,
        "backend_fallback": backend_fallback,
        **vocabulary_values(vocabulary),
        "weights": weights_note or "trained",
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status


def vocabulary_values(vocabulary: EncodedVocabulary) -> dict[str, str]:
    return {"vocabulary_version": str(vocabulary.vocabulary_version),
            "vocabulary": ", ".join(vocabulary.names[:50]) + (" ..." if len(vocabulary.names) > 50 else "")}


def segmentation_status(name: str, stats: FrameStats, vocabulary: EncodedVocabulary, backend_name: str,
                        input_topic: str, weights_note: str, backend_fallback: str = "") -> DiagnosticStatus:
    """One status: WARN without input, ERROR when frames arrive but every one fails, else OK
    with the output rate and median latency (WARN while `auto` runs a fallback backend, whose
    reason is `backend_fallback`); the values carry every counter."""
    now = time.monotonic()
    input_rate, output_rate = stats.rate(stats.received, now), stats.rate(stats.published, now)
    latency = statistics.median(stats.latency_ms) if stats.latency_ms else 0.0
    inference = statistics.median(stats.inference_ms) if stats.inference_ms else 0.0
    status = DiagnosticStatus(name=name, hardware_id=backend_name)
    if not stats.received or now - stats.received[-1] > 2 * STATS_WINDOW_S:
        status.level, status.message = DiagnosticStatus.WARN, f"no images on '{input_topic}'"
    elif stats.last_error and output_rate == 0.0:
        status.level, status.message = DiagnosticStatus.ERROR, stats.last_error
    else:
        status.level, status.message = DiagnosticStatus.OK, f"{output_rate:.1f} Hz, median latency {latency:.0f} ms"
        if backend_fallback:   # serving, but slower than this machine allows
            status.level = DiagnosticStatus.WARN
            status.message += f"; backend fell back to {backend_name}"
    values = {
        "input_rate_hz": f"{input_rate:.2f}",
        "output_rate_hz": f"{output_rate:.2f}",
        "latency_ms_median": f"{latency:.1f}",
        "inference_ms_median": f"{inference:.1f}",
        "dropped_frames": str(stats.dropped),
        "malformed_frames": str(stats.malformed),
        "failed_frames": str(stats.failed),
        "last_error": stats.last_error,
        "backend": backend_name,
        "backend_fallback": backend_fallback,
        **vocabulary_values(vocabulary),
        "weights": weights_note or "trained",
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
