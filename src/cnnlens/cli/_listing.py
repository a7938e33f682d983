"""``cnnlens methods``, ``cnnlens metrics``, ``cnnlens models``: what the registries hold."""

from __future__ import annotations

import argparse
from typing import Any


def _print(info: Any, options: bool) -> None:
    from .._options import describe

    print(info)
    if options and info.options:
        print("\n".join("  " + line for line in describe(info.options).splitlines()[1:]))


def _cmd_methods(args: argparse.Namespace) -> None:
    from ..attribution import get_method, method_table, methods

    if args.markdown:
        print(method_table())
        return
    for name in args.names:
        get_method(name)  # a clear error, with close matches, for an unknown name
    for info in methods(args.category):
        if not args.names or info.name in args.names:
            _print(info, args.options)


def _cmd_metrics(args: argparse.Namespace) -> None:
    from ..quality import get_metric, metric_table, metrics

    if args.markdown:
        print(metric_table())
        return
    for name in args.names:
        get_metric(name)
    for info in metrics():
        if not args.names or info.name in args.names:
            _print(info, args.options)


def _cmd_models(args: argparse.Namespace) -> None:
    from ..models import bundled_models

    for name in bundled_models():
        print(name)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the listing commands."""
    from ..attribution._registry import CATEGORIES

    p = sub.add_parser("methods", parents=[common], help="list the attribution methods (from the registry)")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these methods")
    p.add_argument("--category", default=None, choices=CATEGORIES, help="only this category")
    p.add_argument("--markdown", action="store_true", help="print the README's method table")
    p.add_argument("--options", action="store_true", help="also list each option: default, accepted values, meaning")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("metrics", parents=[common], help="list the explanation-quality metrics (from the registry)")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these metrics")
    p.add_argument("--markdown", action="store_true", help="print the metrics as a Markdown table")
    p.add_argument("--options", action="store_true", help="also list each option: default, accepted values, meaning")
    p.set_defaults(func=_cmd_metrics)
    p = sub.add_parser("models", parents=[common], help="list the bundled models")
    p.set_defaults(func=_cmd_models)
