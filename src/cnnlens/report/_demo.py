"""`demo`: the whole story on the bundled material, offline: digits (clean vs field) and Lite0 on four photos."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.files import OutputFolder, output_folder
from ..core.progress import honours_progress
from ._html import Report
from ._method_choice import Methods
from ._photos import photo_report
from ._story import add_model_story

# Demo-sized options on Lite0 (over `sized_options`): the one-pass-per-channel CAMs on _blocks.10 (112 channels,
# 14x14; the last conv has 1280), feature permutation on 16 cells, GradientSHAP with 4 samples.
PHOTO_OPTIONS: dict[str, dict[str, Any]] = {
    "score_cam": {"layer": "_blocks.10"},
    "ablation_cam": {"layer": "_blocks.10"},
    "feature_permutation": {"mask": "grid:56"},
    "gradient_shap": {"samples": 4},
}


@honours_progress
def demo(
    out: str | os.PathLike[str] | OutputFolder = "out/demo",
    progress: bool = True,
    *,
    photos: Sequence[str] | None = None,
    methods: Methods = None,
    digits_methods: Methods = None,
    digits_perturbation_methods: Methods = None,
    max_groups: int = 2,
    per_group: int = 4,
    scorecard: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``out/report.html``: the digits model on clean and field digits, then EfficientNet-Lite0 on the
    scikit-image photos (``photos``: names, default all four) with ``methods`` (default: every registered
    method with input-sized maps, expensive ones with demo-sized options). ``out`` is held as one run (see
    `model_report`). Returns the report's path and prints it."""
    with output_folder(out, "demo") as folder:
        path = _demo(
            folder, progress, photos=photos, methods=methods, digits_methods=digits_methods,
            digits_perturbation_methods=digits_perturbation_methods, max_groups=max_groups, per_group=per_group,
            scorecard=scorecard, seed=seed,
        )  # fmt: skip
    return path


def _demo(
    folder: OutputFolder, progress: bool, *, photos: Sequence[str] | None, methods: Methods, digits_methods: Methods,
    digits_perturbation_methods: Methods, max_groups: int, per_group: int, scorecard: bool, seed: int,
) -> Path:  # fmt: skip
    from ..attribution import methods as registry
    from ..data import digits, sample_image
    from ..models import load_model

    started = time.perf_counter()
    timings: dict[str, float] = {}
    report = Report(
        "cnnlens demo: a digits reader in the field, and a photo classifier",
        "Everything here was computed offline from material bundled with cnnlens.",
    )
    report.section(
        "About this report",
        "Part 1 follows a small digits reader (trained on clean scans) to the field, where the digits are thicker, "
        "tilted, fainter and noisy: how much worse does it get, which digits does it confuse, and what does it "
        "look at when it is wrong? Part 2 shows EfficientNet-Lite0, an ImageNet photo classifier, on four photos, "
        "explained by every method cnnlens has, so the methods can be compared on the same pictures.",
    ).text(
        "Maps are heat maps over the image: bright = the pixels that move the explained score most. Different "
        "methods answer slightly different questions, so when several agree the finding is more trustworthy."
    )
    t = time.perf_counter()
    add_model_story(
        report, load_model("digits_cnn"), {"test digits": digits("test"), "field digits": digits("field")},
        methods=digits_methods, perturbation_methods=digits_perturbation_methods, scorecard=scorecard,
        max_groups=max_groups, per_group=per_group, seed=seed, progress=progress,
    )  # fmt: skip
    timings["digits"] = time.perf_counter() - t
    t = time.perf_counter()
    names = list(photos) if photos is not None else ["chelsea", "coffee", "astronaut", "rocket"]
    if methods is None:
        methods = {m.name: PHOTO_OPTIONS.get(m.name, {}) for m in registry() if m.maps_pixels}
    elif not isinstance(methods, Mapping):
        methods = {m: PHOTO_OPTIONS.get(m, {}) for m in ([methods] if isinstance(methods, str) else methods)}
    photo_report(
        load_model("efficientnet_lite0"), {n: sample_image(n) for n in names}, report, methods=methods,
        seed=seed, progress=progress,
    )  # fmt: skip
    timings["photos"] = time.perf_counter() - t
    path = report.write(folder.file("report.html"))
    total = time.perf_counter() - started
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    print(f"demo report: {path} ({total:.0f} s: {parts})", file=sys.stderr)
    return path
