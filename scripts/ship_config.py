"""Write a shipped run config: SOURCE with model.clip_weights and model.checkpoint replaced.

Usage: python scripts/ship_config.py [--unlabeled-threshold T] [--input-size N] SOURCE.yaml DEST.yaml CLIP_WEIGHTS [CHECKPOINT]
Paths are written as given: relative to DEST's folder, so the bundle can move as a whole.
Comments are kept: only those `model:` keys are rewritten, line by line. --unlabeled-threshold
fixes the open-set threshold of a model with no checkpoint to store it in (the baseline).
--input-size sets the size the model is served at when it differs from the one it was trained
at (the node, `zs3 segment` and `zs3 eval` all feed the model `model.input_size`).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

SERVING_SIZE_NOTE = ("# served at this size, trained at {trained}: see "
                     "docs/synthetic_world.md#why-the-shipped-ldvc-is-served-at-192-pixels")


def ship_config(text: str, clip_weights: str, checkpoint: str, threshold: float | None = None,
                input_size: int | None = None) -> str:
    """`text` with `clip_weights:` set and `checkpoint:` set (or added after it) in `model:`,
    `unlabeled_threshold:` set when `threshold` is given and `input_size:` when `input_size` is."""
    out, in_model, replaced = [], False, False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_model = line.startswith("model:")
        if in_model and threshold is not None and re.match(r"^  unlabeled_threshold:", line):
            out.append(f"  unlabeled_threshold: {threshold:.4f}           # calibrated (docs/open_set.md)")
            continue
        size = re.match(r"^  input_size: *(\d+)", line) if in_model and input_size else None
        if size:
            note = SERVING_SIZE_NOTE.format(trained=size.group(1))
            out.append(f"  input_size: {input_size}".ljust(37) + note)
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


def main(args: list[str]) -> None:
    options = {"--unlabeled-threshold": None, "--input-size": None}
    while args[:1] and args[0] in options and len(args) > 1:
        options[args[0]], args = args[1], args[2:]
    if len(args) not in (3, 4):
        raise SystemExit(__doc__)
    source, dest, clip = args[:3]
    checkpoint = args[3] if len(args) == 4 else ""
    threshold = options["--unlabeled-threshold"]
    size = options["--input-size"]
    Path(dest).write_text(ship_config(Path(source).read_text(), clip, checkpoint,
                                      float(threshold) if threshold is not None else None,
                                      int(size) if size else None))


if __name__ == "__main__":
    main(sys.argv[1:])
