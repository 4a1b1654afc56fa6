"""Write a shipped run config: SOURCE with model.clip_weights and model.checkpoint replaced.

Usage: python scripts/ship_config.py [--unlabeled-threshold T] SOURCE.yaml DEST.yaml CLIP_WEIGHTS [CHECKPOINT]
Paths are written as given: relative to DEST's folder, so the bundle can move as a whole.
Comments are kept: only those `model:` keys are rewritten, line by line. --unlabeled-threshold
fixes the open-set threshold of a model with no checkpoint to store it in (the baseline).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path


def ship_config(text: str, clip_weights: str, checkpoint: str, threshold: float | None = None) -> str:
    """`text` with `clip_weights:` set and `checkpoint:` set (or added after it) in `model:`,
    and `unlabeled_threshold:` set when `threshold` is given."""
    out, in_model, replaced = [], False, False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_model = line.startswith("model:")
        if in_model and threshold is not None and re.match(r"^  unlabeled_threshold:", line):
            out.append(f"  unlabeled_threshold: {threshold:.4f}           # calibrated (docs/open_set.md)")
            continue
        key = re.match(r"^  (clip_weights|checkpoint):", line) if in_model else None
        if key and key.group(1) == "checkpoint":
            continue  # rewritten after clip_weights
        if key:
            out.append(f"  clip_weights: {clip_weights}")
            if checkpoint:
                out.append(f"  checkpoint: {checkpoint}")
            replaced = True
            continue
        out.append(line)
    if not replaced:
        raise SystemExit("the source config has no model.clip_weights line to replace")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    threshold = None
    if args[:1] == ["--unlabeled-threshold"] and len(args) > 1:
        threshold, args = float(args[1]), args[2:]
    if len(args) not in (3, 4):
        raise SystemExit(__doc__)
    source, dest, clip = args[:3]
    checkpoint = args[3] if len(args) == 4 else ""
    Path(dest).write_text(ship_config(Path(source).read_text(), clip, checkpoint, threshold))
