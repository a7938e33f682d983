"""``make bench``: every benchmark suite in turn (start-up, gradient methods, CAMs, layer methods, perturbation,
LRP, quality, dataset runs, concepts, the app, the zoo
conformance suite).

``--quick`` is passed on to each suite; ``--suites`` picks some. A suite's own options: run it alone,
``.venv/bin/python benchmarks/X.py --help``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

SUITES = (
    "startup",
    "gradient",
    "cam",
    "layer",
    "perturbation",
    "incremental",
    "propagation",
    "quality",
    "store",
    "concepts",
    "app",
    "zoo",
)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a fast check: fewer repeats and smaller ladders")
    p.add_argument("--suites", nargs="*", default=list(SUITES), choices=SUITES)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    code = 0
    for name in args.suites:
        if not (Path(__file__).parent / f"{name}.py").exists():
            continue
        print(f"\n==== {name} ====", flush=True)
        code |= importlib.import_module(name).main(["--quick"] if args.quick else [])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
