"""`zs3 train CONFIG [--max-iters N] [--dry-run] [--resume] [--data-root R] [--out DIR] [--set K=V]`.

Multi-GPU: `torchrun --nproc_per_node=N -m zs3.cli train CONFIG` — the loop reads the
torchrun environment itself. The training loop lives in the `training` package (installed
with `pip install -e .[train]`); this is only its command line.
"""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model (LDVC, DeOP) with the GZS3 protocol")
    p.add_argument("config", help="run config YAML with model/data/train/eval sections")
    add_run_arguments(p)
    p.add_argument("--dry-run", action="store_true",
                   help="build everything, run one forward/backward, write nothing")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output folder")
    p.add_argument("--data-root", default=None, help="dataset root (overrides data.root)")
    p.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--max-iters, --out and --set: what every training-loop command (train, pretrain) takes."""
    parser.add_argument("--max-iters", type=int, default=None,
                        help="stop at this iteration (the LR schedule still spans train.iterations)")
    parser.add_argument("--out", default=None, help="output folder (overrides train.out_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any config field, e.g. --set train.batch_size=4 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from zs3_core.config import ConfigError
    from zs3_core.datasets import DatasetLayoutError
    from zs3_core.model_checkpoint import CheckpointError
    from training.config import load_run_config
    from training.train import end_distributed, train

    finished = False
    try:
        run_config = load_run_config(args.config, data_root=args.data_root, out_dir=args.out,
                                     overrides=args.set)
        result = train(run_config, max_iters=args.max_iters, dry_run=args.dry_run, resume=args.resume)
        finished = True
    except (ConfigError, DatasetLayoutError, CheckpointError) as err:
        log.error("%s", err)
        return 2
    finally:
        end_distributed(wait_for_peers=finished)
    if result.losses:
        log.info("last loss %.4f at step %d; outputs in %s", result.losses[-1], result.steps[-1], result.out_dir)
    return 0
