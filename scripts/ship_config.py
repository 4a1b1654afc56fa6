"""Write a shipped run config: SOURCE with model.clip_weights and model.checkpoint replaced.

Usage: python scripts/ship_config.py SOURCE.yaml DEST.yaml CLIP_WEIGHTS [CHECKPOINT]
Paths are written as given: relative to DEST's folder, so the bundle can move as a whole.
Comments are kept: only the two `model:` keys are rewritten, line by line.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path


def ship_config(text: str, clip_weights: str, checkpoint: str) -> str:
    """`text` with `clip_weights:` set and `checkpoint:` set (or added after it) in `model:`."""
    out, in_model, replaced = [], False, False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_model = line.startswith("model:")
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
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    source, dest, clip = sys.argv[1:4]
    checkpoint = sys.argv[4] if len(sys.argv) == 5 else ""
    Path(dest).write_text(ship_config(Path(source).read_text(), clip, checkpoint))
