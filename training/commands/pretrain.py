"""`zs3 pretrain CONFIG [--max-iters N] [--out DIR] [--set K=V]`: contrastive CLIP pre-training
on the captioned synthetic world (the loop lives in `training.pretrain`)."""
from __future__ import annotations

import argparse
import logging

from training.commands.train import add_run_arguments

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="pre-train a (tiny) CLIP on captioned synthetic scenes")
    p.add_argument("config", help="pretrain config YAML with clip/data/train sections")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zs3_core.config import ConfigError
    from training.pretrain import load_pretrain_config, pretrain

    try:
        config = load_pretrain_config(args.config, out_dir=args.out, overrides=args.set)
        result = pretrain(config, max_iters=args.max_iters)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    log.info("weights: %s", result.weights)
    return 0
