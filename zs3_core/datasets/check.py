"""`zs3 data check`: what a dataset root lacks before training or evaluation can start."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from zs3_core.datasets.cocostuff import missing_cocostuff_files
from zs3_core.datasets.voc import missing_voc_files

CHECKERS = {"voc": missing_voc_files, "cocostuff": missing_cocostuff_files}
SPLITS = ("train", "val")


@dataclass
class DatasetCheck:
    """Missing paths per split; `ok` when every split is complete."""

    dataset: str
    root: str
    missing: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.missing.values())

    def report(self) -> str:
        lines = [f"{self.dataset} at {self.root}:"]
        for split, missing in self.missing.items():
            if not missing:
                lines.append(f"  {split}: complete")
                continue
            lines.append(f"  {split}: missing")
            lines.extend(f"    {path}" for path in missing)
        return "\n".join(lines)


def check_dataset(root: Union[str, Path], dataset: str) -> DatasetCheck:
    if dataset not in CHECKERS:
        raise ValueError(f"dataset must be one of {sorted(CHECKERS)}, got {dataset!r}")
    return DatasetCheck(dataset, str(root), {s: CHECKERS[dataset](root, s) for s in SPLITS})
