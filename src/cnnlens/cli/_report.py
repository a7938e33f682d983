"""``cnnlens report`` (one self-contained HTML report for a model and data) and ``cnnlens demo``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .._errors import CnnlensError
from ._data import DATA_HELP, add_on_error, open_data
from ._options import add_model_options, add_run_options, load_classifier, method_names, needs_hooks, repeated

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def split_data(items: list[str]) -> list[tuple[str | None, str]]:
    """``--data`` values as ``(name or None, dataset text)``; ``NAME=DATA`` names a dataset for comparisons."""
    parsed: list[tuple[str | None, str]] = []
    for item in items:
        name, sep, spec = item.partition("=")
        if sep and _NAME.match(name) and spec and not Path(item).exists():
            parsed.append((name, spec))
        else:
            parsed.append((None, item))
    if len(parsed) > 1:
        if any(name is None for name, _ in parsed):
            raise CnnlensError(
                "several --data need a name each, e.g. --data clean=digits:test --data field=digits:field"
            )
        twice = repeated([str(name) for name, _ in parsed])
        if twice:
            raise CnnlensError(f"--data name(s) {', '.join(twice)} used twice; give each dataset its own name")
    return parsed


def _cmd_report(args: argparse.Namespace) -> None:
    parsed = split_data(args.data)
    methods = method_names(args.methods)
    perturbation = method_names(args.perturbation_methods, "--perturbation-methods")
    classifier = load_classifier(args)
    needs_hooks(classifier, "report")
    opened = {name: open_data(spec, classifier, args.on_error) for name, spec in parsed}
    data: Any = opened.get(None, opened)
    from ..report import model_report  # imported here: only this command needs the report machinery

    path = model_report(
        classifier,
        data,
        Path(args.out),
        methods=methods,
        perturbation_methods=perturbation,
        scorecard=not args.no_scorecard,
        concepts=not args.no_concepts,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        title=args.title,
    )
    print(f"report: {path}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from ..report import demo

    path = demo(out=args.out, progress=not args.no_progress)
    print(f"report: {path}")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``report`` and ``demo``."""
    p = sub.add_parser("report", parents=[common], help="one self-contained HTML report: evaluation, errors, maps")
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="[NAME=]DATA",
        help=f"{DATA_HELP}; repeat as NAME=DATA to compare datasets (e.g. clean=digits:test field=digits:field)",
    )
    p.add_argument("--out", metavar="DIR", default="out/report", help="output folder (default out/report)")
    p.add_argument(
        "--methods",
        default=None,
        metavar="A,B,...",
        help="comma-separated gradient/CAM methods (default: the report's)",
    )
    p.add_argument(
        "--perturbation-methods",
        default=None,
        metavar="A,B,...",
        help="comma-separated perturbation methods (default: the report's)",
    )
    p.add_argument("--no-scorecard", action="store_true", help="leave out the explanation-quality scorecard")
    p.add_argument(
        "--no-concepts", action="store_true", help="leave out the concepts of the most confused pair of classes"
    )
    p.add_argument("--title", default=None, help="report title")
    add_on_error(p)
    add_model_options(p, "digits_cnn")
    add_run_options(p)
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("demo", parents=[common], help="the report on the bundled models and data (offline)")
    p.add_argument("--out", metavar="DIR", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.set_defaults(func=_cmd_demo)
