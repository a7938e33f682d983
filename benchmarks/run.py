"""``make bench``: every benchmark suite in turn (gradient methods, CAMs, perturbation methods if present).

``--quick`` is passed on to each suite. Each suite can also be run alone: ``.venv/bin/python benchmarks/X.py``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SUITES = ("gradient", "cam", "perturbation")


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    code = 0
    for name in SUITES:
        if not (Path(__file__).parent / f"{name}.py").exists():
            continue
        print(f"\n==== {name} ====", flush=True)
        code |= importlib.import_module(name).main(list(argv))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
