"""Writing an evaluation to a folder: figures (PNG), probability tables (CSV) and the metrics (JSON)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnlens._progress import honours_progress, progress_bar
from cnnlens.evaluate._evaluation import Evaluation


@honours_progress
def save_evaluation(
    evaluation: Evaluation, out: str | os.PathLike[str], dataset: Any = None, per_class: int = 6, progress: bool = True
) -> dict[str, Path]:
    """Write ``confusion_matrix.png``, ``roc.png``, ``metrics.png``, ``probabilities.csv`` (every sample),
    ``errors.csv`` (misclassified, most confident first) and ``metrics.json`` to ``out``; with the evaluated
    ``dataset`` also ``samples.png`` (samples per class) and ``errors.png`` (the most confident errors).
    Figures with many classes show those in the data and the most confused (see `Evaluation.classes_to_show`).
    Every file is written whole or not at all (`cnnlens._files`); ``progress=False`` hides the figures' progress
    bar. Returns ``{name: path}``."""
    from cnnlens._files import save_figure, write_json
    from cnnlens.viz import confusion_matrix_figure, metrics_figure, roc_figure, samples_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "confusion_matrix": lambda: confusion_matrix_figure(evaluation),
        "roc": lambda: roc_figure(evaluation),
        "metrics": lambda: metrics_figure(evaluation),
    }
    if dataset is not None:
        figures["samples"] = lambda: samples_figure(dataset, per_class=per_class, evaluation=evaluation)
        errors = evaluation.groups.most_confident_errors
        if len(errors):
            figures["errors"] = lambda: samples_figure(dataset, errors, per_class=per_class, evaluation=evaluation)
    written: dict[str, Path] = {}
    for name, make in progress_bar(figures.items(), desc="figures", unit="fig", delay=2.0, leave=False):
        written[name] = save_figure(make(), out / f"{name}.png")
    written["probabilities"] = evaluation.to_csv(out / "probabilities.csv")
    written["errors_table"] = evaluation.to_csv(out / "errors.csv", rows=evaluation.groups.most_confident_errors)
    written["metrics_json"] = write_json(out / "metrics.json", evaluation.to_dict())
    return written
