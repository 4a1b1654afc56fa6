"""`zs3 data check ROOT --dataset voc|cocostuff`: what a dataset root is missing."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="dataset utilities")
    actions = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="list what a dataset root lacks for training and evaluation")
    check.add_argument("root", help="dataset root folder")
    check.add_argument("--dataset", required=True, choices=["voc", "cocostuff"])
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from zs3_core.datasets.check import check_dataset

    result = check_dataset(args.root, args.dataset)
    print(result.report())
    return 0 if result.ok else 1
