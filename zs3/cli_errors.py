"""How the `zs3` command reports a failure: one line and exit code 2 for an error the user
can fix, a traceback only when asked for with `--debug`.

A *known* error is an exception whose class the project defines (a ``ConfigError``,
``CheckpointError``, ``DatasetLayoutError``, ... anywhere under ``zs3_core``, ``zs3_ros`` or
``training``: their messages already name the file and what is wrong) or an ``OSError``
(a file that is missing, unreadable or not writable). Anything else is a defect of the
program and keeps its traceback. Exit code 2 is what argparse already uses for a bad
command line, so scripts tell "your input" (2) from "the program failed" (1) the same way.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable, Optional, Sequence

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130          # the shell's value for a process ended by Ctrl-C
PROJECT_PACKAGES = ("zs3_core", "zs3_ros", "training")
DEBUG_FLAG = "--debug"


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show the full traceback of an error (also accepted after the command)")


def parse_with_debug_anywhere(parser: argparse.ArgumentParser,
                              argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, also taking ``--debug`` after the subcommand
    (``zs3 segment ... --debug``), where a user types it after seeing the error."""
    args, extra = parser.parse_known_args(argv)
    if DEBUG_FLAG in extra:
        args.debug = True
        extra = [a for a in extra if a != DEBUG_FLAG]
    if extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    return args


def is_known_error(err: BaseException) -> bool:
    """True for errors about the user's input or files (see the module docstring)."""
    if isinstance(err, OSError):
        return True
    return any(cls.__module__.split(".")[0] in PROJECT_PACKAGES for cls in type(err).__mro__)


def one_line(err: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined with '; ')."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run_reporting_errors(func: Callable[[argparse.Namespace], Optional[int]], args: argparse.Namespace,
                         prog: str) -> int:
    """Run a subcommand handler; a known error becomes ``<prog>: error: <message>`` on stderr
    and exit code 2 (with the traceback first when ``args.debug``)."""
    debug = bool(getattr(args, "debug", False))
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if not is_known_error(err):
            raise
        if debug:
            traceback.print_exc()
        hint = "" if debug else f" (run with {DEBUG_FLAG} for the traceback)"
        print(f"{prog}: error: {one_line(err)}{hint}", file=sys.stderr)
        return EXIT_USER_ERROR
