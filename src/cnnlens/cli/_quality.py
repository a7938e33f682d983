"""``cnnlens scorecard``: several methods judged by several quality metrics on the same images (table, CSV, MD, JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.errors import CnnlensError
from ..core.files import output_folder, write_json, write_text
from ._catalog import load
from ._data_flags import read_image
from ._explain import method_options
from ._model_flags import (
    add_model_options,
    add_run_options,
    check_digits_input,
    check_sizes,
    load_classifier,
    method_names,
    model_name,
    names_list,
    parse_target,
    repeated,
)


def _default_metrics() -> dict[str, dict[str, Any]]:
    """The scorecard's default metrics and settings, those registered (what ``scorecard(metrics=None)`` uses)."""
    from ..quality import scorecard_metrics

    return scorecard_metrics(None)


def metric_options(names: list[str] | None, pairs: list[str]) -> dict[str, dict[str, Any]]:
    """Chosen metrics (``None``: the defaults) -> options, with ``--metric-set metric.key=value`` applied and checked."""
    from ..quality import get_metric, metric_choices

    if names is None:
        options = _default_metrics()
    else:
        if not names:
            raise CnnlensError("--metrics is empty; name one or more metrics (see `cnnlens metrics`)")
        twice = repeated(names)
        if twice:
            raise CnnlensError(f"--metrics names {', '.join(twice)} more than once")
        options = {}
        for name in names:
            get_metric(name)  # unknown names: a clear error with close matches
            options[name] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        metric, dot, key = key.rpartition(".")
        if not sep or not dot or not metric or not key:
            raise CnnlensError(f"--metric-set expects metric.key=value (e.g. deletion.steps=10), got {pair!r}")
        if metric not in options:
            get_metric(metric)
            raise CnnlensError(f"--metric-set {pair}: {metric} is not among the chosen metrics ({', '.join(options)})")
        params = get_metric(metric).params
        if key not in params:
            raise CnnlensError(
                f"--metric-set {pair}: metric {metric} has no option {key!r}; its options are "
                f"{', '.join(params) or 'none'} (see `cnnlens metrics {metric}`)"
            )
        options[metric][key] = params[key].parse(text)
    for name, opts in options.items():
        try:
            metric_choices({name: opts})  # bad values fail here, before the model is loaded
        except CnnlensError as e:
            raise CnnlensError(f"--metric-set for {name}: {e}") from e
    return options


def _cmd_scorecard(args: argparse.Namespace) -> None:
    from ..quality import scorecard

    methods = method_names(args.methods) or []
    options = method_options(methods, args.set)  # names and options are checked before the model is loaded
    metrics = metric_options(names_list(args.metrics), args.metric_set)
    check_digits_input(args, args.images, "IMAGE")
    images = [read_image(text) for text in args.images]
    out = Path(args.out)
    with output_folder(out, "scorecard", model=model_name(args), images=list(args.images)) as folder:
        classifier = load_classifier(args)
        check_sizes(classifier, {text: im.size for text, im in zip(args.images, images, strict=True)})
        target = parse_target(classifier, args.target)
        card = scorecard(
            classifier,
            classifier.preprocess(images),
            options,
            target=target,
            metrics=metrics,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=not args.no_progress,
        )
        card.to_csv(folder.file("scorecard.csv"))
        write_text(folder.file("scorecard.md"), card.to_markdown() + "\n")
        summary = {"model": classifier.name, "images": list(args.images), "target": target, **card.to_dict()}
        write_json(folder.file("scorecard.json"), summary)
    print(card)
    for note in card.notes:
        print(f"note: {note}")
    print(f"↑ higher is better, ↓ lower is better; means over {len(images)} image(s)")
    print(f"wrote scorecard.csv, scorecard.md and scorecard.json to {out}")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``scorecard``."""
    defaults = ", ".join(load()["scorecard_metrics"])
    known = ", ".join(m["name"] for m in load()["metrics"])
    p = sub.add_parser(
        "scorecard",
        parents=[common],
        help="judge attribution methods with quality metrics on images: table, CSV, Markdown, JSON",
        description="Explain the images with each method, score every explanation with each metric, and print one "
        "row per method (means over the images; passes and seconds per image are always added). "
        "Writes scorecard.csv, scorecard.md and scorecard.json.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or digits:SPLIT:INDEX (e.g. digits:test:0)")
    p.add_argument(
        "--methods", required=True, metavar="A,B,...", help="comma-separated method names (see `cnnlens methods`)"
    )
    p.add_argument(
        "--metrics",
        default=None,
        metavar="A,B,...",
        help=f"comma-separated metric names (default: {defaults}, with modest settings); known: {known}",
    )
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="method option, repeatable")
    p.add_argument(
        "--metric-set",
        action="append",
        default=[],
        metavar="METRIC.KEY=VALUE",
        help="metric option, repeatable (e.g. deletion.steps=10; see `cnnlens metrics`)",
    )
    p.add_argument("--target", default=None, metavar="CLASS", help="class index or name (default: predicted class)")
    p.add_argument("--out", metavar="DIR", default="out/scorecard", help="output folder (default out/scorecard)")
    add_model_options(p)
    add_run_options(p)
    p.set_defaults(func=_cmd_scorecard)
