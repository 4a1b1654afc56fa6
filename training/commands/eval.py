"""`zs3 eval CONFIG --checkpoint C [--data-root R] [--out DIR] [--max-images N]
[--templates imagenet] [--synonyms "name|synonym"]`:
GZS3 metrics as a table on stdout plus metrics.json, metrics.md and per_class_iou.png."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zs3_core.commands.segment import add_templates_argument

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="GZS3 evaluation: mIoU seen/unseen, hIoU, pAcc, per-class IoU")
    p.add_argument("config", help="run config YAML (model/data/eval sections)")
    p.add_argument("--checkpoint", default=None, help="trained checkpoint (.safetensors); none: the "
                   "model as configured (e.g. the training-free baseline)")
    p.add_argument("--data-root", default=None, help="dataset root (overrides data.root)")
    p.add_argument("--out", default=None, help="report folder (default: eval.out_dir or <train.out_dir>/eval)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--device", default="cpu")
    add_templates_argument(p)
    p.add_argument("--synonyms", action="append", default=[], metavar='"NAME|SYNONYM|..."',
                   help="a dataset class with the other names it is also asked by (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field, e.g. --set train.batch_size=4 (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from zs3_core.config import ConfigError
    from zs3_core.datasets import DatasetLayoutError
    from zs3_core.model_checkpoint import CheckpointError
    from zs3_core.vocabulary import VocabularyError
    from zs3_core.models import build_model
    from training.config import load_run_config
    from training.evaluate import evaluate_model, write_report

    try:
        run_config = load_run_config(args.config, data_root=args.data_root, overrides=args.set)
        if args.max_images is not None:
            run_config.eval = dataclasses.replace(run_config.eval, max_images=args.max_images)
        if args.checkpoint:  # replaces the config's own model.checkpoint
            run_config.model = dataclasses.replace(run_config.model, checkpoint=args.checkpoint)
        model = build_model(run_config.model).to(args.device)
        result = evaluate_model(model, run_config, device=args.device, templates=args.templates,
                                synonyms=args.synonyms)
    except (ConfigError, DatasetLayoutError, CheckpointError, VocabularyError) as err:
        log.error("%s", err)
        return 2
    out_dir = Path(args.out or run_config.eval.out_dir or Path(run_config.train.out_dir) / "eval")
    paths = write_report(result, out_dir)
    print(result.markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
