"""``cnnlens report`` (one self-contained HTML report for a model and data) and ``cnnlens demo``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ..core.errors import CnnlensError
from ..core.files import output_folder
from ._data_flags import DATA_HELP, add_class_map, add_on_error, open_data
from ._model_flags import (
    add_model_options,
    add_run_options,
    check_digits_input,
    load_classifier,
    method_names,
    model_name,
    needs_hooks,
    repeated,
)

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


def _report_store(args: argparse.Namespace) -> None:
    """``report --store``: the report of a finished ``cnnlens run`` store, nothing recomputed."""
    from ..store import open_store

    if args.methods is not None or args.perturbation_methods is not None:
        raise CnnlensError("--store reports the store's own methods; leave out --methods and --perturbation-methods")
    if args.data is not None and len(args.data) > 1:
        raise CnnlensError("with --store give at most one --data (where the store's images are, if they moved)")
    store = open_store(args.store)
    with output_folder(args.out, "report", store=str(args.store)) as folder:  # held before any work
        classifier = load_classifier(args) if args.model is not None else None  # None: the store's own model
        path = store.report(
            folder,
            model=classifier,
            data=args.data[0] if args.data else None,
            scorecard=not args.no_scorecard,
            concepts=not args.no_concepts,
            progress=not args.no_progress,
            title=args.title,
        )
    print(f"report: {path}")


def _cmd_report(args: argparse.Namespace) -> None:
    if args.store is not None:
        _report_store(args)
        return
    if not args.data:
        raise CnnlensError("give --data DATA (or --store STORE to report a cnnlens run store)")
    parsed = split_data(args.data)
    methods = method_names(args.methods)
    perturbation = method_names(args.perturbation_methods, "--perturbation-methods")
    check_digits_input(args, [spec for _, spec in parsed], "--data")
    specs = {name or "data": spec for name, spec in parsed}
    with output_folder(args.out, "report", model=model_name(args), data=specs) as folder:  # held before any work
        classifier = load_classifier(args)
        needs_hooks(classifier, "report")
        opened = {name: open_data(spec, classifier, args) for name, spec in parsed}
        from ..report import model_report  # imported here: only this command needs the report machinery

        path = model_report(
            classifier,
            opened.get(None, opened),
            folder,
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

    with output_folder(args.out, "demo") as folder:  # held before any work
        path = demo(out=folder, progress=not args.no_progress)
    print(f"report: {path}")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``report`` and ``demo``."""
    p = sub.add_parser("report", parents=[common], help="one self-contained HTML report: evaluation, errors, maps")
    p.add_argument(
        "--data",
        action="append",
        default=None,
        metavar="[NAME=]DATA",
        help=f"{DATA_HELP}; repeat as NAME=DATA to compare datasets (e.g. clean=digits:test field=digits:field)",
    )
    p.add_argument(
        "--store",
        default=None,
        metavar="STORE",
        help="report a finished `cnnlens run` store (its model, data, maps and scores; nothing recomputed)",
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
    add_class_map(p)
    add_model_options(p)
    add_run_options(p)
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("demo", parents=[common], help="the report on the bundled models and data (offline)")
    p.add_argument("--out", metavar="DIR", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.set_defaults(func=_cmd_demo)
