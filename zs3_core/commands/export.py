"""`zs3 export CONFIG [--checkpoint C] --format tensorrt|onnx|exported-program [--out PATH]
[--max-classes 256] [--max-batch N] [--verify]`: the image path as a deployable graph, C dynamic
(and the batch: ONNX always, a TensorRT engine for 1..N frames).

`--format tensorrt` prebuilds the engine into the cache the node reads (so the first start
on the robot does not build); `--params FILE` takes the model config, checkpoint, input
size, precision and batch (its camera count) from the node's parameter file, so the engine is exactly the one that
node loads (same cache key); `--verify` runs the result through a Segmenter next to eager
fp32 on synthetic scenes with 1, 20 and 171 classes and fails (exit 1) below the targets.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = ("tensorrt", "onnx", "exported-program")
VERIFY_IMAGES = 2


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export the image path (ONNX, torch.export, TensorRT engine)")
    p.add_argument("config", nargs="?", help="model config YAML (default: the --params file's)")
    p.add_argument("--params", default=None, help="the node's parameter file: build what that node loads")
    p.add_argument("--checkpoint", default=None, help="trained checkpoint (.safetensors)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", default=None, help="output file (onnx / exported-program) or engine cache "
                                                 "directory (tensorrt; default: the node's cache)")
    p.add_argument("--max-classes", type=int, default=256, help="largest vocabulary the graph serves")
    p.add_argument("--max-batch", type=int, default=None,
                   help="TensorRT: most frames per call, the node's camera count (default: the --params "
                        "file's cameras, else 1); ONNX graphs take any batch")
    p.add_argument("--device", default=None, help="default: cuda for tensorrt, else cpu")
    p.add_argument("--precision", default=None, choices=["fp16", "fp32"],
                   help="TensorRT precision (default: the --params file's if fp16/fp32, else fp16)")
    p.add_argument("--verify", action="store_true", help="compare with eager fp32 through the Segmenter")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zs3_core.backends import BackendError
    from zs3_core.export import ExportError
    from zs3_core.segmenter import Segmenter

    try:
        config = _apply_params(args)
    except ExportError as err:
        log.error("%s", err)
        return 1
    device = args.device or ("cuda" if args.format == "tensorrt" else "cpu")
    if args.format == "tensorrt":
        from zs3_core.export.tensorrt import tensorrt_unavailable_reason
        reason = tensorrt_unavailable_reason(device)
        if reason:
            log.error("cannot build a TensorRT engine here: %s", reason)
            return 1
    reference = Segmenter.from_config(config, checkpoint=args.checkpoint, backend="torch",
                                      device=device, precision="fp32")
    model = reference.model
    try:
        make_backend, summary = _export(args, model, device)
        if args.verify:
            return _verify(reference, make_backend, args, summary)
    except (ExportError, BackendError) as err:
        log.error("%s", err)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def _apply_params(args: argparse.Namespace):
    """The model config to export; `--params` fills the config, checkpoint, input size and
    precision the command line leaves open, as the node reads them from that file."""
    from zs3_core.config import load_model_config, resolve_path
    from zs3_core.export import ExportError

    settings = None
    if args.params:
        from zs3_core.export.node_params import read_engine_settings
        settings = read_engine_settings(args.params)
        args.checkpoint = args.checkpoint or settings.checkpoint
        args.max_batch = args.max_batch or settings.max_batch
        if args.precision is None and settings.precision in ("fp16", "fp32"):
            args.precision = settings.precision
    args.precision = args.precision or "fp16"
    args.max_batch = args.max_batch or 1
    source = args.config or (resolve_path(settings.model_config, None) if settings else None)
    if source is None:
        raise ExportError("give a model config, or --params with the node's parameter file")
    config = load_model_config(source)
    if settings and settings.input_size:
        config = dataclasses.replace(config, input_size=settings.input_size)
    return config


def _export(args, model, device):
    """Write the artefact; returns (candidate backend, summary) for verification."""
    from zs3_core.backends import create_backend

    stem = Path(args.config or model.config.name).stem
    if args.format == "exported-program":
        from zs3_core.export.exported_program import (ExportedProgramBackend, export_image_path,
                                                      save_exported_program)
        out = save_exported_program(export_image_path(model, args.max_classes, device=device),
                                    args.out or f"{stem}.pt2")
        return (lambda: ExportedProgramBackend(out)), {"format": args.format, "out": str(out)}
    if args.format == "onnx":
        from zs3_core.export.onnx import export_onnx
        out = export_onnx(model, args.out or f"{stem}.onnx", args.max_classes)
        return (lambda: create_backend("onnxruntime", model, device, "fp32", onnx_path=out,
                                       max_classes=args.max_classes)), {"format": args.format, "out": str(out)}
    from zs3_core.export.tensorrt import compile_tensorrt
    cache_dir = Path(args.out) if args.out else None
    _, result = compile_tensorrt(model, args.precision, args.max_classes, device, cache_dir, args.max_batch)
    summary = {"format": args.format, "engine": str(result.path), "built": result.built,
               "build_seconds": round(result.build_seconds, 1), "reason": result.reason}
    return (lambda: create_backend("tensorrt", model, device, args.precision, cache_dir=cache_dir,
                                   max_classes=args.max_classes, max_batch=args.max_batch)), summary


def _verify(reference, make_backend, args, summary: dict) -> int:
    """Segment synthetic scenes with the new artefact and with eager fp32; 0 if within targets."""
    from zs3_core.export.verify import (MAX_ABS_DIFF, MIN_LABEL_AGREEMENT, MIN_LABEL_AGREEMENT_REDUCED,
                                        synthetic_images, verify)
    from zs3_core.segmenter import Segmenter

    candidate = Segmenter(reference.model, reference.config, backend=make_backend(), device=reference.device)
    reduced = args.format == "tensorrt" and args.precision != "fp32"
    tolerance = None if reduced else MAX_ABS_DIFF
    floor = MIN_LABEL_AGREEMENT_REDUCED if reduced else MIN_LABEL_AGREEMENT
    reports = verify(reference, candidate, synthetic_images(VERIFY_IMAGES, reference.config.input_size))
    for report in reports:
        log.info("verify: %s", report.row())
    ok = all(r.passed(tolerance, floor) for r in reports)
    summary["verify"] = {"passed": ok, "reports": [dataclasses.asdict(r) for r in reports]}
    print(json.dumps(summary, indent=2))
    if not ok:
        log.error("verification failed: targets are max|dp| <= %s and >= %.1f%% identical labels",
                  tolerance, 100 * floor)
    return 0 if ok else 1
