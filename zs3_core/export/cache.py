"""On-disk cache of compiled TensorRT engines, keyed by everything an engine depends on.

An engine is valid only for the exact model weights, image-path code and the config fields
that shape that graph, TensorRT and Torch-TensorRT versions, GPU (name and compute
capability), precision, input size, class range and batch range (min / opt / max) it was built for.
Nothing else enters the key: serving-only fields (the node's `unlabeled_threshold`, the
prompt template, where the weights file lives) do not change the engine, so `zs3 export`
and the node compute the same key for the same model and a prebuilt engine is found. Caches that ignore some of these silently run a wrong engine or crash
(pytorch/TensorRT #3148, #4226); caches that key nothing rebuild on every start (#1508).

Layout: one *slot* per (model, input size, precision, class range, batch range) holding `engine.bin` and
`manifest.json` with the full key and the engine's SHA-256. A slot whose manifest differs in
any field (a JetPack upgrade, another GPU) or whose file fails its checksum is rebuilt in
place, with a log line naming what changed: stale engines are replaced rather than piling up
on a Jetson's small disk, and never reused. Nothing here needs a GPU, so it is tested on CPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

log = logging.getLogger(__name__)

CACHE_FORMAT = 3
ENGINE_FILE = "engine.ep"   # an ExportedProgram archive holding the TensorRT engine
# ModelConfig fields that change the image-path graph (`predict(image, class_embeddings)`).
# The rest are applied outside the engine: pixel mean/std in preprocessing, the prompt
# template in the text encoder, unlabeled_threshold in postprocessing, and clip_weights /
# checkpoint are paths whose tensors the weights hash already covers.
IMAGE_PATH_CONFIG_FIELDS = ("name", "clip", "input_size", "options")
MANIFEST_FILE = "manifest.json"


def default_cache_dir() -> Path:
    """$ZS3_ENGINE_CACHE (the Docker images point it at a volume), else ~/.cache/zs3_ros/engines."""
    return Path(os.environ.get("ZS3_ENGINE_CACHE", Path.home() / ".cache" / "zs3_ros" / "engines"))


class EngineCacheError(RuntimeError):
    """The cache directory cannot be used (not writable, or a build left no engine file)."""


@dataclass(frozen=True)
class EngineKey:
    """Everything a compiled engine depends on. Two keys equal ⇔ the engine is reusable."""
    model_hash: str
    input_size: int
    min_classes: int
    opt_classes: int      # the TensorRT optimisation profile's tuned class count
    max_classes: int
    precision: str
    tensorrt_version: str
    torch_tensorrt_version: str
    torch_version: str
    gpu_name: str
    compute_capability: str
    min_batch: int = 1    # the profile's batch range (frames of several cameras in one call)
    opt_batch: int = 1
    max_batch: int = 1
    cache_format: int = CACHE_FORMAT

    def slot(self) -> str:
        """Directory name: what the engine computes; the environment lives in the manifest."""
        return (f"{self.model_hash[:16]}-{self.input_size}px-{self.precision}-"
                f"c{self.min_classes}-{self.opt_classes}-{self.max_classes}-"
                f"b{self.min_batch}-{self.opt_batch}-{self.max_batch}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, other: dict) -> list[str]:
        """Fields whose value in `other` (a stored manifest's key) differs, as "field: old → new"."""
        mine = self.to_dict()
        return [f"{name}: {other.get(name)!r} -> {value!r}" for name, value in mine.items()
                if other.get(name) != value]


def image_path_config(config) -> str:
    """The part of a model config that shapes the image-path graph, as a stable string."""
    if dataclasses.is_dataclass(config):
        return repr({name: getattr(config, name, None) for name in IMAGE_PATH_CONFIG_FIELDS})
    return repr(config)


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 over the weights (names, shapes, dtypes, bytes), the image-path config fields
    and the source of every module class in the model: retrained weights, a changed option
    or edited model code all give a new hash, hence a new engine; a serving-only setting
    does not."""
    h = hashlib.sha256()
    h.update(image_path_config(getattr(model, "config", None)).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)   # 0-d tensors cannot be viewed as bytes
        h.update(f"{name}:{tuple(tensor.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for path in sorted({_source_file(type(m)) for m in model.modules()} - {None}):
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def _source_file(cls: type) -> Optional[str]:
    if not cls.__module__.startswith("zs3_core"):
        return None   # torch's own modules: covered by torch_version
    try:
        return inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class CacheResult:
    path: Path           # the engine file to load
    built: bool          # True when this call built it
    build_seconds: float
    reason: str          # why it was built or reused, for the log and diagnostics


class EngineCache:
    """`get_or_build(key, build)`: the cached engine for `key`, or a fresh one from `build`."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_cache_dir()

    def slot_dir(self, key: EngineKey) -> Path:
        return self.root / key.slot()

    def validate(self, key: EngineKey) -> tuple[bool, str]:
        """(usable, reason): usable only if the manifest's key equals `key` field for field
        and the engine file's checksum matches the manifest."""
        slot = self.slot_dir(key)
        manifest_path, engine_path = slot / MANIFEST_FILE, slot / ENGINE_FILE
        if not manifest_path.exists():
            return False, "no cached engine"
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return False, f"unreadable manifest ({err})"
        if not isinstance(manifest, dict) or not isinstance(manifest.get("key"), dict):
            return False, "unreadable manifest (no key mapping)"
        diffs = key.differences(manifest["key"])
        if diffs:
            return False, "cached engine was built for another setup (" + "; ".join(diffs) + ")"
        if not engine_path.exists():
            return False, "manifest without engine file"
        if file_sha256(engine_path) != manifest.get("engine_sha256"):
            return False, "engine file does not match its checksum (truncated or modified)"
        return True, f"cached engine matches (built {manifest.get('built_at', '?')} in {manifest.get('build_seconds', 0):.0f} s)"

    def get_or_build(self, key: EngineKey, build: Callable[[Path], None]) -> CacheResult:
        """Reuse the slot's engine if valid; otherwise call `build(path)` to write a new engine
        file, and record it. The new entry is written in a temporary directory and renamed into
        place, so an interrupted build never leaves a half-written engine that looks valid."""
        ok, reason = self.validate(key)
        if ok:
            log.info("TensorRT engine %s: %s", key.slot(), reason)
            return CacheResult(self.slot_dir(key) / ENGINE_FILE, False, 0.0, reason)
        log.warning("TensorRT engine %s: %s; building it now (minutes on a Jetson)", key.slot(), reason)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key.slot()}.", dir=self.root))
        except OSError as err:
            raise EngineCacheError(f"cannot write to the engine cache {self.root}: {err}") from err
        try:
            start = time.perf_counter()
            build(tmp / ENGINE_FILE)
            seconds = time.perf_counter() - start
            if not (tmp / ENGINE_FILE).exists():
                raise EngineCacheError(f"the engine build wrote no file at {tmp / ENGINE_FILE}")
            slot = self.slot_dir(key)
            try:
                manifest = {"key": key.to_dict(), "engine_sha256": file_sha256(tmp / ENGINE_FILE),
                            "build_seconds": round(seconds, 2), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
                (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
                if slot.exists():
                    shutil.rmtree(slot)
                tmp.rename(slot)
            except OSError as err:
                raise EngineCacheError(f"cannot store the engine in {slot}: {err}") from err
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.warning("TensorRT engine %s built in %.1f s and cached at %s", key.slot(), seconds, slot)
        return CacheResult(slot / ENGINE_FILE, True, seconds, reason)
