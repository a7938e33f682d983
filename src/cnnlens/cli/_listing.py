"""``cnnlens methods``, ``cnnlens metrics``, ``cnnlens models``: what the registries hold.

The method and metric listings are the registries' own text from the catalog (``_catalog.py``), so that they
start without importing torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import unknown_name
from ._catalog import load


def _listing(kind: str, names: list[str], options: bool, category: str | None = None) -> None:
    entries = load()[f"{kind}s"]
    known = [e["name"] for e in entries]
    for name in names:
        if name not in known:
            raise unknown_name(kind, name, known)  # the registry's own error, with close matches
    for entry in entries:
        if (not names or entry["name"] in names) and category in (None, entry.get("category")):
            print(entry["line"])
            if options and entry["options"]:
                print(entry["options"])


def _cmd_methods(args: argparse.Namespace) -> None:
    if args.markdown:
        print(load()["method_table"])
        return
    _listing("method", args.names, args.options, args.category)


def _cmd_metrics(args: argparse.Namespace) -> None:
    if args.markdown:
        print(load()["metric_table"])
        return
    _listing("metric", args.names, args.options)


def _cmd_models(args: argparse.Namespace) -> None:
    from ..models import bundled_models

    for name in bundled_models():
        print(name)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the listing commands."""
    p = sub.add_parser("methods", parents=[common], help="list the attribution methods (from the registry)")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these methods")
    p.add_argument("--category", default=None, choices=load()["categories"], help="only this category")
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
