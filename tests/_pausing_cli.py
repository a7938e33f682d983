"""Run the ``cnnlens`` command line in a child process and pause it at a chosen moment, so that a test can kill it
(``kill -9``) or start a second run while it holds its output folder.

``python _pausing_cli.py MOMENT N GO ARGV...``: MOMENT ``file`` pauses at the N-th output file the run asks for
(before it is written), ``replace`` at the N-th rename of a finished temporary file (the file complete beside
its final name, manifests included). While paused the child writes ``GO.paused``; it goes on once ``GO`` exists.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cnnlens.core.files as files

moment, count, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
calls = {"file": 0, "replace": 0}
real_file, real_replace = files.OutputFolder.file, os.replace


def _maybe_pause(kind: str) -> None:
    calls[kind] += 1
    if kind == moment and calls[kind] == count:
        go.with_suffix(".paused").write_text(str(os.getpid()))
        while not go.exists():
            time.sleep(0.02)


def _file(self: files.OutputFolder, name: str) -> Path:
    _maybe_pause("file")
    return real_file(self, name)


def _replace(src: str, dst: str) -> None:
    _maybe_pause("replace")
    real_replace(src, dst)


files.OutputFolder.file = _file  # type: ignore[method-assign]
files.os.replace = _replace  # type: ignore[assignment]

from cnnlens.cli import main  # noqa: E402

sys.exit(main(sys.argv[4:]))
