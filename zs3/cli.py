"""The `zs3` command: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing `add_parser(subparsers)`, which registers
the parser and sets `func(args) -> int` as its handler; this file only lists them. It sits
above both packages it dispatches to: the inference and bag commands in `zs3_core.commands`,
the training ones in `training.commands` (imports only point down, see docs/architecture.md).
Command modules import their heavy dependencies inside the handler, so `zs3 bag-eval` needs
only the `[bag]` extra.
"""
from __future__ import annotations

import argparse
import logging
import sys

from training.commands import eval as eval_command
from training.commands import pretrain, train
from zs3_core.commands import bag_eval, data, export, make_bag, segment
from zs3.cli_errors import add_debug_argument, parse_with_debug_anywhere, run_reporting_errors

SUBCOMMAND_MODULES = [segment, bag_eval, make_bag, pretrain, train, eval_command, data, export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zs3", description="Zero-shot semantic segmentation")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_debug_argument(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_with_debug_anywhere(build_parser(), argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_errors(args.func, args, prog=f"zs3 {args.command}")


if __name__ == "__main__":
    sys.exit(main())
