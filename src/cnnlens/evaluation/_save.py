"""Writing an evaluation to a folder: figures (PNG), probability tables (CSV) and the metrics (JSON)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlens.core.files import OutputFolder, output_folder, save_figure, write_json
from cnnlens.core.progress import honours_progress, progress_bar
from cnnlens.evaluation._evaluation import Evaluation

if TYPE_CHECKING:
    from cnnlens.data import ImageDataset, ImageInput


@honours_progress
def save_evaluation(
    evaluation: Evaluation,
    out: str | os.PathLike[str] | OutputFolder,
    dataset: ImageDataset[ImageInput] | None = None,
    per_class: int = 6,
    progress: bool = True,
) -> dict[str, Path]:
    """Write ``confusion_matrix.png``, ``roc.png``, ``metrics.png``, ``probabilities.csv`` (every sample),
    ``errors.csv`` (misclassified, most confident first) and ``metrics.json`` to ``out``; with the evaluated
    ``dataset`` also ``samples.png`` (samples per class) and ``errors.png`` (the most confident errors).
    Figures with many classes show those in the data and the most confused (see `Evaluation.classes_to_show`);
    a bar (stderr) follows the figures, ``progress=False`` hides it.

    ``out`` is held as one run (`cnnlens.core.files.output_folder`): every file is written atomically, a manifest
    ``cnnlens-run.json`` lists them, the files of an earlier run in ``out`` are replaced, and a folder holding
    other files, symlinks, or being written by another run is refused (``CnnlensError``). Returns ``{name: path}``.
    """
    from cnnlens.viz import confusion_matrix_figure, metrics_figure, roc_figure, samples_figure

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
    data = getattr(dataset, "name", None) or getattr(dataset, "root", None)
    with output_folder(out, "save_evaluation", data=None if data is None else str(data)) as folder:
        for name, make in progress_bar(figures.items(), desc="figures", unit="fig", delay=2.0, leave=False):
            written[name] = save_figure(make(), folder.file(f"{name}.png"))
        written["probabilities"] = evaluation.to_csv(folder.file("probabilities.csv"))
        errors_csv = folder.file("errors.csv")
        written["errors_table"] = evaluation.to_csv(errors_csv, rows=evaluation.groups.most_confident_errors)
        written["metrics_json"] = write_json(folder.file("metrics.json"), evaluation.to_dict())
    return written
