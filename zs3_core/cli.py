"""The `zs3` command: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing `add_parser(subparsers)`, which registers
the parser and sets `func(args) -> int` as its handler; this file only lists them.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from zs3_core.cli_errors import add_debug_argument, parse_with_debug_anywhere, run_reporting_errors

SUBCOMMAND_MODULES = [
    "zs3_core.commands.segment",
    "zs3_core.commands.bag_eval",
    "zs3_core.commands.make_bag",
    "zs3_core.commands.pretrain",
    "zs3_core.commands.train",
    "zs3_core.commands.eval",
    "zs3_core.commands.data",
    "zs3_core.commands.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zs3", description="Zero-shot semantic segmentation")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_debug_argument(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_with_debug_anywhere(build_parser(), argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_errors(args.func, args, prog=f"zs3 {args.command}")


if __name__ == "__main__":
    sys.exit(main())
