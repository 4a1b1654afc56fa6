"""QoS profiles of the node's endpoints, in one place (REP 2003 for sensor input)."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def input_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Camera subscription: keep-last ``depth`` (1 = the newest frame only), volatile.

    ``best_effort`` is the sensor-data profile of REP 2003; a best-effort subscriber also
    matches reliable publishers. ``reliable`` is for recorded or relayed streams whose
    publisher is reliable and every frame matters.
    """
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = 1) -> QoSProfile:
    """Per-frame outputs: reliable keep-last, so both reliable and best-effort subscribers match."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def latched_qos() -> QoSProfile:
    """~/label_info: transient local, so a subscriber that joins late gets the class map."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
