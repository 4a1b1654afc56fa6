"""Evaluation results for machines and people: metrics.json, report.md and PNG plots.

Shared by `zs3 bag-eval` (and usable by `zs3 eval`): numbers go to JSON once, and the
Markdown report and plots are rendered from that same dictionary, so they never disagree.
Matplotlib runs headless (Agg) and is imported only when plots are drawn.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def latency_stats(values_ms: Sequence[float]) -> dict:
    """mean / p50 / p90 / p99 / max in ms (None when there are no samples)."""
    if not len(values_ms):
        return {k: None for k in ("mean", "p50", "p90", "p99", "max")}
    v = np.asarray(values_ms, np.float64)
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
            "max": float(v.max())}


def _clean(obj):
    """NaN → None so the JSON is strict (json.dumps would write NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def write_metrics_json(path: str | Path, metrics: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(_clean(metrics), indent=2, allow_nan=False))
    return path


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _ms(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def plot_per_class_iou(path: str | Path, per_class: dict, unseen: Sequence[str] = (),
                       title: str | None = None) -> Path:
    """Bar chart of per-class IoU (fractions; None/NaN classes left out), unseen in orange."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unseen = set(unseen)
    names = [n for n, v in per_class.items() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    values = [100 * per_class[n] for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names) + 2), 4))
    colours = ["tab:orange" if n in unseen else "tab:blue" for n in names]
    ax.bar(range(len(names)), values, color=colours)
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "Per-class IoU")
    if unseen:
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="tab:blue"),
                           plt.Rectangle((0, 0), 1, 1, color="tab:orange")], labels=["seen", "unseen"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_latency_histogram(path: str | Path, latencies_ms: Sequence[float]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(latencies_ms, bins=min(40, max(5, len(latencies_ms) // 3)), color="tab:blue")
    stats = latency_stats(latencies_ms)
    for key, style in (("p50", "--"), ("p99", ":")):
        if stats[key] is not None:
            ax.axvline(stats[key], color="k", linestyle=style, label=f"{key} {stats[key]:.1f} ms")
    ax.set_xlabel("per-frame latency (ms)")
    ax.set_ylabel("frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion_matrix(path: str | Path, matrix: np.ndarray, names: Sequence[str]) -> Path:
    """Row-normalised (recall) confusion matrix; rows = ground truth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix.sum(1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, np.float64), where=rows > 0)
    size = max(4, 0.3 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_report_md(path: str | Path, metrics: dict, plots: Sequence[str] = ()) -> Path:
    """A human summary of a metrics.json dictionary (aggregate, per-class, latency, plots)."""
    agg = metrics.get("aggregate", {})
    lines = [f"# Evaluation report: {metrics.get('source', '')}", ""]
    if not metrics.get("complete", True):
        lines += [f"> **Incomplete:** {metrics.get('error')}", "> Results below cover the frames read before the error.", ""]
    lines += ["| metric | value |", "|---|---|"]
    for key, label in (("mIoU", "mIoU (%)"), ("mIoU_seen", "mIoU seen (%)"),
                       ("mIoU_unseen", "mIoU unseen (%)"), ("hIoU", "hIoU (%)"), ("pAcc", "pAcc (%)")):
        if key in agg:
            lines.append(f"| {label} | {_pct(agg[key])} |")
    for key in ("frames", "frames_scored", "frames_without_gt", "gt_without_frame", "throughput_fps"):
        if key in metrics:
            value = metrics[key]
            lines.append(f"| {key.replace('_', ' ')} | {value:.2f} |" if isinstance(value, float)
                         else f"| {key.replace('_', ' ')} | {value} |")
    for key in ("backend", "config", "checkpoint"):
        if metrics.get(key):
            lines.append(f"| {key} | `{metrics[key]}` |")
    lat = metrics.get("latency_ms", {})
    if lat:
        lines += ["", "## Latency (ms)", "", "| stage | mean | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|"]
        for stage, s in lat.items():
            lines.append(f"| {stage} | " + " | ".join(_ms(s.get(k)) for k in ("mean", "p50", "p90", "p99", "max")) + " |")
    per_class = agg.get("per_class_iou", {})
    if per_class:
        unseen = set(metrics.get("unseen_classes", []))
        lines += ["", "## Per-class IoU", "", "| class | split | IoU (%) |", "|---|---|---|"]
        for name, v in per_class.items():
            lines.append(f"| {name} | {'unseen' if name in unseen else 'seen' if unseen else ''} | {_pct(v)} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)
