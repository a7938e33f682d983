"""``cnnlens explain``: PNG panels, raw attributions (NPZ) and a JSON summary for images."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import CnnlensError, CnnlensWarning
from ..core.files import OutputFolder, atomic_open, output_folder, save_figure, write_json
from ..core.progress import honours_progress
from ._catalog import load
from ._model_flags import (
    add_model_options,
    add_run_options,
    check_sizes,
    load_classifier,
    method_names,
    model_name,
    parse_target,
)

DEFAULT_METHODS = "saliency,integrated_gradients"
LAYER_METHODS = "layer_gradient_x_activation,layer_integrated_gradients"  # the default with --layer
NEURON_METHODS = "neuron_gradient,neuron_integrated_gradients"  # the default with --neuron
PARTIAL = 3
"""Exit code of ``explain`` when some of several methods refused and were skipped (the others were written)."""


def parse_neuron(text: str) -> int | tuple[int, ...]:
    """``--neuron``: ``"3"`` (channel 3) or ``"3,2,1"`` (channel 3 at y=2, x=1)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise CnnlensError(f"--neuron expects C or C,Y,X (non-negative integers: a channel, or a unit); got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def layer_options(methods: list[str], layer: str | None, neuron: Any) -> dict[str, dict[str, Any]]:
    """The ``layer`` and ``neuron`` option of every chosen method that takes them, from ``--layer`` / ``--neuron``."""
    from ..attribution import get_method

    params = {m: get_method(m).params for m in methods}
    options: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for flag, key, value in (("--layer", "layer", layer), ("--neuron", "neuron", neuron)):
        if value is None:
            continue
        takers = [m for m in methods if key in params[m]]
        if not takers:
            kind = "at a layer" if key == "layer" else "on a neuron"
            raise CnnlensError(
                f"{flag}: none of the chosen methods ({', '.join(methods)}) works {kind}; choose some with "
                f"--methods (see `cnnlens methods --category {key}`)"
            )
        for m in takers:
            options[m][key] = value
    missing = [m for m in methods if "neuron" in params[m] and neuron is None]
    if missing:
        raise CnnlensError(f"{', '.join(missing)} explain(s) a neuron: give --neuron C or C,Y,X")
    return options


def method_options(
    methods: list[str], pairs: list[str], given: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """``--set key=value`` goes to every chosen method with that option; ``--set method.key=value`` to one.
    ``given``: options already set per method (``--layer``, ``--neuron``), which ``--set`` may override."""
    from ..attribution import SMOOTH_OPTIONS, MethodChoice, get_method

    params = {m: {**get_method(m).params, **SMOOTH_OPTIONS} for m in methods}
    options: dict[str, dict[str, Any]] = {m: dict((given or {}).get(m, {})) for m in methods}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise CnnlensError(f"--set expects key=value or method.key=value, got {pair!r}")
        method, _, key = key.rpartition(".")
        chosen = [method] if method else [m for m in methods if key in params[m]]
        if not chosen or any(m not in options or key not in params[m] for m in chosen):
            raise CnnlensError(f"--set {pair}: no chosen method has an option {key!r} (see `cnnlens methods`)")
        for m in chosen:
            options[m][key] = params[m][key].parse(text)
    for m, opts in options.items():
        try:
            MethodChoice(m, m, opts).check()  # bad values fail here, before the model is loaded
        except CnnlensError as e:
            raise CnnlensError(f"--set: {e}") from e
    return options


@honours_progress
def explain_images(
    classifier: Any,
    images: list[Any],
    names: list[str],
    methods: dict[str, dict[str, Any]],
    out: str | os.PathLike[str] | OutputFolder,
    *,
    target: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    sign: str = "absolute",
    view: str = "blended_heat_map",
) -> dict[str, Any]:
    """Explain ``images`` with each method; write ``<name>.png`` panels (`cnnlens.viz.compare_panel`: the image,
    each method's ``view`` of the map with ``sign``, the top-5 classes), ``<name>.npz`` maps and ``summary.json``
    to ``out``, held as one run (`cnnlens.core.files.output_folder`: atomic files, a manifest, an earlier run's files
    replaced; other files, symlinks, a concurrent run and two images with one name refused). A method that refuses
    (`CnnlensError`) while others run is skipped with a warning and listed with its reason under
    ``"failed_methods"`` in ``summary.json``, in the returned summary and in the manifest; when every method
    refuses, or the only one does, the error is raised and nothing is written."""
    import numpy as np
    import torch

    from ..viz import compare_panel

    if len({n.casefold() for n in names}) != len(names):
        raise CnnlensError(f"two images have one output name in {list(names)}; give each its own (see output_names)")
    x = classifier.preprocess(images)
    with output_folder(out, "explain", model=classifier.name, images=list(names), methods=list(methods)) as folder:
        results, failed = _run_methods(
            classifier, x, methods, target=target, batch_size=batch_size, seed=seed, progress=progress
        )
        if failed:
            folder.info["failed_methods"] = failed  # in the manifest from its next write on
        first = next(iter(results.values()))
        classes = next((e.target for e in results.values() if isinstance(e.target, torch.Tensor)), None)
        probs = first.probabilities
        pixels = classifier.preprocessing.to_pixels(x)
        summary: dict[str, Any] = {"model": classifier.name, "failed_methods": failed, "images": []}
        for i, name in enumerate(names):
            top = probs[i].topk(min(5, probs.shape[1]))
            tops = [(classifier.class_name(int(j)), float(p)) for p, j in zip(top.values, top.indices, strict=True)]
            explained = None if classes is None else classifier.class_name(int(classes[i]))
            what = f"evidence for '{explained}'" if explained is not None else f"evidence for neuron {first.neuron}"
            maps = {m: e.attributions[i].detach().cpu() for m, e in results.items()}
            fig = compare_panel(pixels[i], maps, top_k=tops, sign=sign, view=view, title=f"{name}: {what}")
            save_figure(fig, folder.file(f"{name}.png"))
            with atomic_open(folder.file(f"{name}.npz"), "wb") as f:
                np.savez_compressed(f, **{m: a.numpy() for m, a in maps.items()})
            for m, e in results.items():
                if _layer_shaped(m):
                    path = folder.file(f"{name}-{m}-channels.png")
                    _channels_figure(e, i, pixels[i], path, f"{name}: {m} at {e.layer}")
            summary["images"].append(
                {
                    "image": name,
                    "explained_class": explained,
                    "explained_index": None if classes is None else int(classes[i]),
                    "top3": [{"class": c, "probability": round(p, 4)} for c, p in tops[:3]],
                    "methods": {m: _method_summary(m, e, i) for m, e in results.items()},
                }
            )
        write_json(folder.file("summary.json"), summary)
    return summary


def _run_methods(
    classifier: Any, x: Any, methods: dict[str, dict[str, Any]], *, target: int | None, batch_size: int | None,
    seed: int, progress: bool,
) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    """Each method's `Explanation`, and the reason of each method that refused (a `CnnlensError`: it cannot
    explain this model or these inputs), which is skipped with a warning when others run. Any other error (one
    raised in the model's own code, say) propagates as it is; so does the refusal when every method refuses."""
    import warnings

    from ..attribution import explain
    from ..core.progress import progress_bar

    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for method, options in progress_bar(methods.items(), desc="methods", unit="method", disable=not progress):
        t = None if _explains_neuron(method) else target  # a neuron is explained instead of a class
        try:
            results[method] = explain(classifier, x, method, target=t, batch_size=batch_size, seed=seed, **options)
        except CnnlensError as err:
            if len(methods) == 1:
                raise
            failed[method] = " ".join(str(err).split())
    if not results:
        raise CnnlensError("no method could run: " + "; ".join(f"{m}: {why}" for m, why in failed.items()))
    for method, why in failed.items():
        warnings.warn(f"{method} was skipped: {why}", CnnlensWarning, stacklevel=3)
    return results, failed


def _explains_neuron(method: str) -> bool:
    from ..attribution import get_method

    return not get_method(method).explains_class


def _layer_shaped(method: str) -> bool:
    from ..attribution import get_method

    return get_method(method).output == "layer"


def _channels_figure(e: Any, i: int, pixels: Any, path: Path, title: str) -> None:
    """The layer attribution's top channels with their feature maps (when the method kept them)."""
    from ..viz import layer_channels_figure

    acts = e.info.get("activations")
    fig = layer_channels_figure(e.attributions[i], None if acts is None else acts[i], pixels, top=8, title=title)
    save_figure(fig, path, dpi=100)


def _method_summary(m: str, e: Any, i: int) -> dict[str, Any]:
    from ..viz import ranked_channels

    row: dict[str, Any] = {
        "passes_per_batch": e.passes,
        "seconds_per_batch": round(e.seconds, 3),
        "completeness_delta": None if e.delta is None else float(e.delta[i]),
        "relative_delta": None if e.delta is None else _relative(e, i),
    }
    if e.layer is not None:
        row["layer"] = e.layer
    if e.neuron is not None:
        row["neuron"] = list(e.neuron) if isinstance(e.neuron, tuple) else e.neuron
    if _layer_shaped(m):
        row["top_channels"] = [
            {"channel": c, "attribution": round(v, 6)} for c, v in ranked_channels(e.attributions[i], 5)
        ]
    return row


def _relative(e: Any, i: int) -> float:
    """delta / (f(x) - f(baseline)), where f(x) - f(baseline) = sum(attributions) - delta."""
    delta = float(e.delta[i])
    gap = float(e.attributions[i].sum()) - delta
    return delta / gap if gap else float("inf")


def output_names(paths: list[str]) -> list[str]:
    """One output name per input: the file stem; stems that several inputs share get their extension
    (``a.png``, ``a.jpg`` -> ``a-png``, ``a-jpg``), then a number (``cat``, ``cat-2``) when still shared. Names are
    compared without case, as case-insensitive file systems do."""
    stems = [Path(p).stem or Path(p).name for p in paths]
    shared = {s.casefold() for s in stems if sum(t.casefold() == s.casefold() for t in stems) > 1}
    wanted = [
        f"{s}-{Path(p).suffix.lstrip('.')}" if s.casefold() in shared and Path(p).suffix else s
        for s, p in zip(stems, paths, strict=True)
    ]
    taken: set[str] = set()
    names = []
    for name in wanted:
        unique, k = name, 2
        while unique.casefold() in taken or (unique != name and unique.casefold() in {w.casefold() for w in wanted}):
            unique, k = f"{name}-{k}", k + 1
        taken.add(unique.casefold())
        names.append(unique)
    return names


def _cmd_explain(args: argparse.Namespace) -> int:
    from ..data import load_image

    neuron = None if args.neuron is None else parse_neuron(args.neuron)
    default = NEURON_METHODS if neuron is not None else LAYER_METHODS if args.layer is not None else DEFAULT_METHODS
    methods = method_names(args.methods or default) or []
    given = layer_options(methods, args.layer, neuron)
    options = method_options(methods, args.set, given)  # names and options are checked before the model is loaded
    images = [load_image(p) for p in args.images]
    out = Path(args.out)
    names = output_names(args.images)
    with output_folder(out, "explain", model=model_name(args), images=names, methods=methods) as folder:
        classifier = load_classifier(args)
        check_sizes(classifier, {p: im.size for p, im in zip(args.images, images, strict=True)})
        target = parse_target(classifier, args.target)
        run = {"target": target, "batch_size": args.batch_size, "seed": args.seed, "progress": not args.no_progress}
        summary = explain_images(classifier, images, names, options, folder, sign=args.sign, view=args.view, **run)
    for item in summary["images"]:
        tops = ", ".join(f"{t['class']} {t['probability']:.0%}" for t in item["top3"])
        what = f"class '{item['explained_class']}'" if item["explained_class"] is not None else f"neuron {neuron}"
        print(f"{item['image']}: top-3 {tops}; explained {what}")
    print(f"wrote {len(summary['images'])} panel(s) (PNG), maps (NPZ) and summary.json to {out}")
    if summary["failed_methods"]:
        print(
            f"cnnlens: error: {len(summary['failed_methods'])} of {len(methods)} methods failed and were skipped: "
            f"{', '.join(summary['failed_methods'])} (reasons above and in summary.json)",
            file=sys.stderr,
        )
        return PARTIAL
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``explain``."""
    p = sub.add_parser(
        "explain", parents=[common], help="explain images with one or more methods: PNG panels, NPZ maps, JSON"
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument(
        "--methods",
        default=None,
        metavar="A,B,...",
        help=f"comma-separated method names (default {DEFAULT_METHODS}; with --layer {LAYER_METHODS}; with "
        f"--neuron {NEURON_METHODS}; see `cnnlens methods`)",
    )
    p.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help="the layer of layer, neuron and CAM methods (a dotted name, see `cnnlens inside --layers`); layer "
        "methods also write <image>-<method>-channels.png",
    )
    p.add_argument(
        "--neuron",
        default=None,
        metavar="C[,Y,X]",
        help="the unit neuron methods explain: channel C (its spatial mean) or the unit at (C, Y, X) of --layer",
    )
    p.add_argument("--target", default=None, metavar="CLASS", help="class index or name (default: predicted class)")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="method option, repeatable")
    p.add_argument(
        "--sign", default="absolute", choices=load()["signs"], help="which evidence the panels show (default absolute)"
    )
    p.add_argument(
        "--view", default="blended_heat_map", choices=load()["views"], help="how maps are drawn (default blended)"
    )
    p.add_argument("--out", metavar="DIR", default="out/explain", help="output folder (default out/explain)")
    add_model_options(p)
    add_run_options(p)
    p.set_defaults(func=_cmd_explain)
