"""How long the command line takes to start: ``cnnlens --help``, ``cnnlens methods``, ``cnnlens metrics`` and
``import cnnlens``, beside a bare ``python -c pass`` and ``import torch`` (what a command that runs a model pays
anyway). Each in a fresh process, best of ``--repeats`` wall-clock times; the target is under 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import log

SRC = str(Path(__file__).resolve().parents[1] / "src")
CASES = {
    "python -c pass": ["-c", "pass"],
    "import cnnlens": ["-c", "import cnnlens"],
    "cnnlens --help": ["-m", "cnnlens", "--help"],
    "cnnlens methods": ["-m", "cnnlens", "methods"],
    "cnnlens metrics": ["-m", "cnnlens", "metrics"],
    "import torch": ["-c", "import torch"],
}


def _seconds(args: list[str], repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one run each instead of --repeats")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    print(f"{'start-up (best of ' + str(repeats) + ')':28s} {'seconds':>8s}")
    for name, case in CASES.items():
        log(f"timing {name}")
        seconds = _seconds(case, repeats)
        mark = "" if name.startswith(("python", "import torch")) else ("  ok" if seconds < 1.5 else "  over 1.5 s")
        print(f"{name:28s} {seconds:8.2f}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
