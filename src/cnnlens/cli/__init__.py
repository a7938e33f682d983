"""The ``cnnlens`` command line. Every command has ``--help``.

Exit codes: 0 done; 2 usage or bad input (one ``cnnlens: error: ...`` line on stderr); 1 an unexpected error (one
line and a hint to rerun with ``--debug``, which prints the traceback); 3 done in part (``explain`` with several
methods, some of which refused: the others are written, the refusals are on stderr and in ``summary.json``); 130
interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.errors import CnnlensError, CnnlensWarning, cli_words
from ..core.files import command_line
from . import _concepts, _data, _explain, _listing, _quality, _report, _run, _view
from ._explain import explain_images

__all__ = ["build_parser", "explain_images", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser for every command (``--debug`` is accepted before or after the command name)."""
    parser = argparse.ArgumentParser(prog="cnnlens", description="See inside CNN image classifiers.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback when something fails")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _listing.add_parsers(sub, common)
    _explain.add_parsers(sub, common)
    _quality.add_parsers(sub, common)
    _data.add_parsers(sub, common)
    _report.add_parsers(sub, common)
    _run.add_parsers(sub, common)
    _concepts.add_parsers(sub, common)
    _view.add_parsers(sub, common)
    return parser


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """cnnlens warnings become ``cnnlens: warning: ...`` lines on stderr; others keep Python's format."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", CnnlensWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            if issubclass(category, CnnlensWarning):
                print(f"cnnlens: warning: {_one_line(message)}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (the ``cnnlens`` entry point exits with it)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0), or a usage error already printed by argparse (2)
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    debug = bool(getattr(args, "debug", False))
    try:
        with _warnings_as_lines(), cli_words(), command_line(sys.argv[1:] if argv is None else argv):
            code = args.func(args)
    except CnnlensError as err:
        return _fail(_one_line(err), 2, debug)
    except KeyboardInterrupt:
        print("cnnlens: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, traceback only on request
        if isinstance(err, OSError) and err.filename is not None:  # e.g. --out names a file, or no permission
            return _fail(f"{err.strerror or _one_line(err)}: {str(err.filename)!r}; check the path", 2, debug)
        hint = "" if debug else " (rerun with --debug for the traceback)"
        return _fail(f"unexpected {type(err).__name__}: {_one_line(err)}{hint}", 1, debug)
    return code if isinstance(code, int) else 0


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"cnnlens: error: {message}", file=sys.stderr)
    return code
