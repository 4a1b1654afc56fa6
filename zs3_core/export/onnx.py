"""ONNX export of the image path (opset ≥ 17, dynamic batch and class axes) for ONNX Runtime.

Why the TorchScript-based exporter (`dynamo=False`): the dynamo exporter needs the extra
`onnxscript` package, always writes weights to a side `.onnx.data` file, and rejects
attention on 5-D tensors (LDVC's route attention gathers windows that way); the
TorchScript exporter still works in torch 2.13 and produces plain ONNX ops (LDVC's
flat-index gather becomes a single `Gather`). Opset 17 is the first with
`LayerNormalization`, which keeps CLIP's norms one fused fp32 op instead of a chain of
Pow/ReduceMean that overflows in fp16 (NVIDIA/TensorRT #2564).

External data: a protobuf file cannot exceed 2 GiB, so weights beyond that go to
`<name>.onnx.data` next to the graph. ViT-B/16's image path (~350 MB) fits one file.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import torch

from zs3_core.export.image_path import (DEFAULT_MAX_CLASSES, TRACE_BATCH, TRACE_CLASSES, ExportError, ImagePath,
                                        check_max_classes, example_inputs)

log = logging.getLogger(__name__)

MIN_OPSET = 17
DEFAULT_OPSET = 17
# A protobuf file cannot exceed 2 GiB; leave headroom for the graph itself.
EXTERNAL_DATA_THRESHOLD = int(1.8 * 2**30)
INPUT_NAMES = ("image", "class_embeddings")


def _output_names(with_logits: bool) -> list[str]:
    return ["logits", "probabilities"] if with_logits else ["probabilities"]


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def export_onnx(model: torch.nn.Module, path: str | Path, max_classes: int = DEFAULT_MAX_CLASSES,
                opset: int = DEFAULT_OPSET, with_logits: bool = False,
                external_data: bool | None = None) -> Path:
    """Write `model.predict` as ONNX to `path`; returns the path.

    Inputs `image` (B, 3, S, S) and `class_embeddings` (C, D); output `probabilities`
    (B, C, h, w) (and `logits` first when `with_logits`). B and C are the symbolic axes "B"
    and "C" (traced with B = 2, so no size is specialised to one frame).
    ONNX itself carries no upper bound for C; `max_classes` is stored as metadata and
    enforced by the ONNX Runtime backend. `external_data=None` decides by weight size.
    """
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} lacks LayerNormalization; use opset >= {MIN_OPSET}")
    max_classes = check_max_classes(max_classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ImagePath(model.eval(), with_logits=with_logits).eval()
    args = example_inputs(model, TRACE_CLASSES, batch=TRACE_BATCH)
    outputs = _output_names(with_logits)
    dynamic_axes = {"image": {0: "B"}, "class_embeddings": {0: "C"}, **{name: {0: "B", 1: "C"} for name in outputs}}
    if external_data is None:
        external_data = parameter_bytes(model) > EXTERNAL_DATA_THRESHOLD
    start = time.perf_counter()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, args, str(path), input_names=list(INPUT_NAMES), output_names=outputs,
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                              dynamo=False)
    except Exception as err:   # the exporter raises many internal error types; keep its message
        raise ExportError(f"ONNX export of {type(model).__name__}.predict failed: {err}") from err
    _finish(path, model, max_classes, external_data)
    log.info("ONNX export (opset %d, B dynamic, C in 1..%d) to %s took %.1f s%s", opset, max_classes, path,
             time.perf_counter() - start, " with external data" if external_data else "")
    return path


def _finish(path: Path, model: torch.nn.Module, max_classes: int, external_data: bool) -> None:
    """Add metadata (input size, class range, model) and move weights out if asked; check."""
    import onnx

    proto = onnx.load(str(path))
    meta = {"zs3.model": type(model).__name__, "zs3.input_size": str(model.config.input_size),
            "zs3.max_classes": str(max_classes)}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if external_data:
        data_name = path.name + ".data"
        (path.parent / data_name).unlink(missing_ok=True)
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path))   # by path, so external data is checked too


def read_metadata(path: str | Path) -> dict[str, str]:
    """The zs3.* metadata written by `export_onnx` (empty for foreign files)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("zs3.")}



def cached_onnx(model: torch.nn.Module, cache_dir: str | Path, max_classes: int = DEFAULT_MAX_CLASSES,
                opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX file for `model`, exported once per model hash, input size, class range, batch
    axis and opset, so restarting a node does not re-export. Each entry is a directory (the graph and
    any external data file) written under a temporary name and renamed into place, so a crash
    mid-export never leaves a truncated entry that looks finished."""
    import shutil
    import tempfile

    from zs3_core.export.cache import model_hash

    cache_dir = Path(cache_dir)
    entry = cache_dir / f"{model_hash(model)[:16]}-{model.config.input_size}px-c{max_classes}-bdyn-opset{opset}"
    path = entry / "image_path.onnx"
    if path.exists():
        log.info("ONNX graph reused from %s", path)
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=cache_dir))
    try:
        export_onnx(model, tmp / path.name, max_classes=max_classes, opset=opset)
        if not entry.exists():       # another process may have finished first: keep theirs
            tmp.rename(entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
