"""The pictures behind the notebook display of cnnlens results: an explanation's maps over its images, a
quality score's curves or values, a scorecard's columns side by side."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402
from ._legend import LABEL_PT, TITLE_PT  # noqa: E402
from ._panels import method_grid  # noqa: E402

if TYPE_CHECKING:
    from ..attribution import Explanation
    from ..models import Preprocessing
    from ..quality import Score, Scorecard


def _pixels(inputs: torch.Tensor, preprocessing: Preprocessing | None) -> np.ndarray:
    """(B, H, W, 3) in [0, 1]: through the preprocessing when known, else each image scaled to its own range."""
    if preprocessing is not None:
        return preprocessing.to_pixels(inputs)
    x = inputs.detach().float().cpu()
    lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = x.flatten(1).amax(1).view(-1, 1, 1, 1)
    pixels = ((x - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    return np.repeat(pixels, 3, axis=3) if pixels.shape[3] == 1 else pixels[..., :3]


def _named(names: list[str] | None, t: int) -> str:
    """``'tabby' (class 281)`` with names, else ``class 281``."""
    return f"{names[t]!r} (class {t})" if names is not None and 0 <= t < len(names) else f"class {t}"


def explanation_figure(e: Explanation, max_images: int = 6, view: str = "blended", sign: str | None = None) -> Figure:
    """The explanation's maps over its images (rows), with one colour bar; ``sign`` defaults to ``all`` (red for,
    blue against) when the maps have negative values, else ``positive``; a map whose sign is only a convention
    (``info["class_evidence"] is False``: Eigen-CAM) is drawn ``positive``, titled class-agnostic."""
    if e.inputs is None:
        raise CnnlensError("this Explanation does not hold its inputs; draw it with viz.method_grid(images, ...)")
    n = min(int(max_images), e.attributions.shape[0])
    attributions = e.attributions[:n].detach().float().cpu()
    agnostic = e.info.get("class_evidence") is False  # e.g. Eigen-CAM: its sign is a convention, not evidence
    if sign is None:
        sign = "positive" if agnostic or not bool((attributions < 0).any()) else "all"
    pixels = _pixels(e.inputs[:n], e.preprocessing)
    targets = e.target[:n].tolist() if isinstance(e.target, torch.Tensor) else [None] * n
    names = e.class_names
    labels = [f"image {i}" + ("" if t is None else f": {_named(names, t)} ({float(e.probabilities[i, t]):.0%})")
              for i, t in enumerate(targets)]  # fmt: skip
    more = f" (first {n} of {e.attributions.shape[0]} images)" if n < e.attributions.shape[0] else ""
    return method_grid(list(pixels), {e.method: attributions}, row_labels=labels, sign=sign, view=view,
                       title=f"{e.method}: " + ("a class-agnostic map (neither for nor against a class)"
                             if agnostic else "evidence for the explained class") + more)  # fmt: skip


def score_figure(s: Score) -> Figure:
    """A curve metric's curves (one thin line per image, the mean thick), else its value per image."""
    values = s.values.numpy()
    better = {True: "higher is better", False: "lower is better", None: "descriptive"}[s.higher_is_better]
    fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    if s.curve is not None:
        x = s.curve_x.numpy() if s.curve_x is not None else np.arange(s.curve.shape[1])
        for row in s.curve.numpy():
            ax.plot(x, row, color="#9e9e9e", lw=0.8)
        ax.plot(x, s.curve.numpy().mean(0), color="black", lw=2, label="mean over the images")
        ax.set_xlabel("step (fraction of the image changed, or stage)", fontsize=LABEL_PT)
        ax.set_ylabel("score", fontsize=LABEL_PT)
        ax.legend(fontsize=LABEL_PT)
    else:
        ax.bar(np.arange(len(values)), values, color="#4c78a8")
        ax.axhline(float(values.mean()), color="black", lw=1.5, ls="--", label=f"mean {values.mean():.3g}")
        ax.set_xlabel("image", fontsize=LABEL_PT)
        ax.set_ylabel(s.metric, fontsize=LABEL_PT)
        ax.legend(fontsize=LABEL_PT)
    ax.tick_params(labelsize=LABEL_PT)
    ax.set_title(f"{s.metric} of {s.method}: mean {s.mean:.3g} ({better})", fontsize=TITLE_PT)
    return fig


def scorecard_figure(card: Scorecard) -> Figure:
    """One panel per column: each method's mean as a bar, the best one (as the column says) dark."""
    columns = list(card.columns)
    cols = min(4, len(columns))
    rows = math.ceil(len(columns) / cols)
    height = 0.32 * len(card.methods) + 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols + 1.2, height * rows), squeeze=False,
                             layout="constrained")  # fmt: skip
    y = np.arange(len(card.methods))
    for k, ax in enumerate(axes.flat):
        if k >= len(columns):
            ax.set_axis_off()
            continue
        c = columns[k]
        values = [card.value(m, c) for m in card.methods]
        try:
            best = card.best(c) if card.higher_is_better[c] is not None else None
        except CnnlensError:
            best = None
        ax.barh(y, [0 if math.isnan(v) else v for v in values],
                color=["#1d4f91" if m == best else "#9fb7d9" for m in card.methods])  # fmt: skip
        ax.set_yticks(y, card.methods if k % cols == 0 else [""] * len(y), fontsize=LABEL_PT)
        ax.invert_yaxis()
        arrow = {True: " ↑", False: " ↓", None: ""}[card.higher_is_better[c]]
        ax.set_title(c.replace("_", " ") + arrow, fontsize=LABEL_PT)
        ax.tick_params(axis="x", labelsize=LABEL_PT)
    fig.suptitle("Scorecard: mean over the images (dark = best of the column)", fontsize=TITLE_PT)
    return fig
