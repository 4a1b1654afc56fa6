"""The engine-relevant settings of a zs3_segmenter parameter file, read without ROS.

`zs3 export --params config/segment_jetson.yaml --format tensorrt` prebuilds the engine the
node started with that file loads: the same model config, checkpoint, input size,
precision and batch (one frame per configured camera) give the same cache key (`cache.EngineKey`), so the node finds the engine instead
of building it at its first start. Fields that never reach the engine (vocabulary,
thresholds, QoS) are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from zs3_core.export.image_path import ExportError


@dataclass(frozen=True)
class EngineSettings:
    model_config: str
    checkpoint: Optional[str]     # None: the model config's own
    input_size: int               # 0: the model config's
    precision: Optional[str]      # as written; TensorRT builds only fp16 / fp32
    max_batch: int = 1            # frames per model call: the number of `cameras` (none = 1)


def read_engine_settings(path: str | Path) -> EngineSettings:
    """The settings of the first `ros__parameters` block (the `/**` wildcard or a node name)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ExportError(f"cannot read the parameter file {path}: {err}") from err
    blocks = [v["ros__parameters"] for v in (document or {}).values()
              if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)] \
        if isinstance(document, dict) else []
    if not blocks or "model_config" not in blocks[0]:
        raise ExportError(f"{path} has no `ros__parameters` block with a model_config")
    params = blocks[0]
    return EngineSettings(model_config=str(params["model_config"]), checkpoint=params.get("checkpoint") or None,
                          input_size=int(params.get("input_size") or 0), precision=params.get("precision"),
                          max_batch=max(1, len(params.get("cameras") or [])))
