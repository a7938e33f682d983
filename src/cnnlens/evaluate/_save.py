"""Writing an evaluation to a folder: figures (PNG), probability tables (CSV) and the metrics (JSON)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cnnlens.evaluate._evaluation import Evaluation


def save_evaluation(
    evaluation: Evaluation, out: str | os.PathLike[str], dataset: Any = None, per_class: int = 6
) -> dict[str, Path]:
    """Write ``confusion_matrix.png``, ``roc.png``, ``metrics.png``, ``probabilities.csv`` (every sample),
    ``errors.csv`` (misclassified, most confident first) and ``metrics.json`` to ``out``; with the evaluated
    ``dataset`` also ``samples.png`` (samples per class) and ``errors.png`` (the most confident errors).
    Returns ``{name: path}``."""
    import matplotlib.pyplot as plt

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
    for name, make in figures.items():
        fig = make()
        written[name] = out / f"{name}.png"
        fig.savefig(written[name], dpi=110, bbox_inches="tight")
        plt.close(fig)
    written["probabilities"] = evaluation.to_csv(out / "probabilities.csv")
    written["errors_table"] = evaluation.to_csv(out / "errors.csv", rows=evaluation.groups.most_confident_errors)
    written["metrics_json"] = out / "metrics.json"
    written["metrics_json"].write_text(json.dumps(evaluation.to_dict(), indent=2))
    return written
