"""`evaluate`: run a classifier over a dataset in batches and return an `Evaluation`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cnnlens.core.errors import CnnlensError, CnnlensWarning, say
from cnnlens.core.model_guard import frozen, model_device
from cnnlens.data import open_dataset
from cnnlens.evaluation._evaluation import Evaluation
from cnnlens.models import Classifier, class_count, class_probabilities, default_class_names

from ..core.progress import progress_bar

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from cnnlens.data import ImageDataset, ImageInput


def evaluate(
    model: Classifier | nn.Module,
    dataset: ImageDataset[ImageInput | torch.Tensor] | tuple[torch.Tensor, ArrayLike] | str | os.PathLike[str],
    *,
    batch_size: int = 64,
    classes: Sequence[str] | None = None,
    on_error: str | None = None,
    progress: bool = True,
) -> Evaluation:
    """Predict every sample of ``dataset`` with ``model`` (in eval mode, restored after) and compute metrics.

    ``dataset``: anything with ``len`` and ``dataset[i] -> (image or (C, H, W) tensor, label)`` (e.g.
    ``ImageFolder``, ``CsvImages``, ``digits("test")``), a tuple ``(inputs (N, C, H, W), labels)``, or what the
    command line takes (a folder with one sub-folder per class, a ``.csv`` of ``path,label`` rows, ``"digits:test"``;
    opened by ``cnnlens.data.open_dataset`` with the model's class names). Images need a ``Classifier`` with
    preprocessing. Class names come from ``classes``, the dataset or the model (a model with one output logit
    ``z`` has two classes, ``["negative", "positive"]`` unless named, with probabilities ``sigmoid(-z)`` and
    ``sigmoid(z)``). ``on_error``: ``"report"`` skips samples that cannot be read (listed in ``Evaluation.skipped``),
    ``"raise"`` stops at the first; default: the dataset's own ``on_error``, else ``"raise"``.
    """
    if int(batch_size) < 1:
        raise CnnlensError(f"batch_size must be at least 1; got {batch_size}.")
    module = model.module if isinstance(model, Classifier) else model
    if not isinstance(module, nn.Module):
        raise CnnlensError(f"model must be a Classifier or an nn.Module; got {type(model).__name__}.")
    if isinstance(dataset, str | os.PathLike):
        names = model.class_names if isinstance(model, Classifier) else None
        dataset = open_dataset(os.fspath(dataset), classes=names, on_error=on_error or "raise")
    if isinstance(dataset, tuple) and len(dataset) == 2:
        dataset = _TensorPairs(*dataset)
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise CnnlensError(
            f"dataset must support len() and dataset[i] -> (image, label), or be an (inputs, labels) tuple; "
            f"got {type(dataset).__name__}."
        )
    on_error = on_error or getattr(dataset, "on_error", "raise")
    if on_error not in ("report", "raise"):
        raise CnnlensError(f"on_error must be 'report' or 'raise'; got {on_error!r}.")
    names = _class_names(model, dataset, classes)
    ids = list(getattr(dataset, "ids", [str(i) for i in range(len(dataset))]))
    skipped = list(getattr(dataset, "skipped", []))
    newly_skipped: list[tuple[str, str]] = []
    probs, labels, kept = [], [], []
    device = model_device(module) or torch.device("cpu")
    bar = progress_bar(total=len(dataset), desc="evaluating", unit="img", disable=not progress)
    with frozen(module), bar:
        for start in range(0, len(dataset), int(batch_size)):
            items, batch_ids = [], []
            for i in range(start, min(start + int(batch_size), len(dataset))):
                try:
                    item, label = dataset[i]
                except CnnlensError as e:
                    if on_error == "raise":
                        fix = say(
                            "on_error='report' to skip unreadable samples", "--on-error report to skip unreadable files"
                        )
                        raise CnnlensError(f"Sample {ids[i]!r} cannot be read: {e} (or pass {fix})") from e
                    newly_skipped.append((ids[i], str(e)))
                    continue
                items.append(item)
                labels.append(int(label))
                batch_ids.append(i)
            if items:
                logits = _logits(model, module, items, device)
                names = names if names is not None else default_class_names(logits.shape[1])
                probs.append(_probabilities(logits, len(names)))
                kept.extend(batch_ids)
            bar.update(min(int(batch_size), len(dataset) - start))
    if newly_skipped:
        listing = "; ".join(i for i, _ in newly_skipped[:10]) + (" ..." if len(newly_skipped) > 10 else "")
        warnings.warn(
            f"Skipped {len(newly_skipped)} unreadable sample(s) ({say('listed in Evaluation.skipped', 'listed below')}): "
            f"{listing}",
            CnnlensWarning,
            stacklevel=2,
        )
    if not kept or names is None:
        raise CnnlensError(f"No sample could be evaluated; {len(skipped) + len(newly_skipped)} were skipped.")
    ids = [ids[i] for i in kept]
    return Evaluation(np.asarray(labels), np.concatenate(probs), names, ids, skipped + newly_skipped, np.asarray(kept))


class _TensorPairs:
    def __init__(self, inputs: torch.Tensor, labels: ArrayLike) -> None:
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
            raise CnnlensError("An (inputs, labels) dataset needs inputs as a (N, C, H, W) tensor.")
        self.inputs, self.labels = inputs, np.asarray(labels).astype(np.int64).ravel()
        if len(self.labels) != len(inputs):
            raise CnnlensError(f"{len(inputs)} inputs but {len(self.labels)} labels; give one label per input.")

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.inputs[i], int(self.labels[i])


def _class_names(model: Classifier | nn.Module, dataset: object, classes: Sequence[str] | None) -> list[str] | None:
    """The class names from ``classes``, the dataset or the model; ``None``: named after the model's outputs."""
    if classes is not None:
        return [str(c) for c in classes]
    data_names = getattr(dataset, "classes", None)
    model_names = model.class_names if isinstance(model, Classifier) else None
    if data_names is not None and model_names is not None and list(data_names) != list(model_names):
        raise CnnlensError(
            f"The dataset's classes {list(data_names)[:10]} differ from the model's {list(model_names)[:10]}; "
            "label index i must mean the model's output i. "
            + say(
                "Build the dataset with classes=model.class_names (ImageFolder/CsvImages take classes=), or pass "
                "classes= to evaluate.",
                "Name the class folders (or CSV labels) after the model's classes, or map them with --class-map.",
            )
        )
    names = data_names if data_names is not None else model_names
    return None if names is None else [str(c) for c in names]


def _logits(
    model: Classifier | nn.Module, module: nn.Module, items: list[ImageInput | torch.Tensor], device: torch.device
) -> torch.Tensor:
    """The model's ``(batch, outputs)`` logits of one batch of samples (images preprocessed, tensors as they are)."""
    tensors = [it for it in items if isinstance(it, torch.Tensor)]
    images = [it for it in items if not isinstance(it, torch.Tensor)]
    if not images:
        x = torch.stack(tensors).to(device)
    elif tensors:
        raise CnnlensError("The dataset yields both images and tensors; give it one kind of sample.")
    elif isinstance(model, Classifier):
        x = model.preprocess(images)
    else:
        raise CnnlensError(
            "The dataset yields images, which need preprocessing: pass a Classifier "
            "(cnnlens.load_model(module, preprocessing=...)) instead of a bare nn.Module."
        )
    with torch.no_grad():
        logits = module(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise CnnlensError(f"The model must return (batch, classes) logits; got {shape}.")
    return logits


def _probabilities(logits: torch.Tensor, k: int) -> np.ndarray:
    """``(batch, k)`` class probabilities: softmax, or ``[sigmoid(-z), sigmoid(z)]`` for one logit ``z``."""
    if class_count(logits.shape[1]) != k:
        fix = say(
            "give the model its class names (load_model(..., class_names=[...])) and build the dataset with "
            "classes=model.class_names, or pass classes= to evaluate",
            "give --classes with the model's class names (one per output): class folders are matched to them",
        )
        what = "one logit (two classes: negative, positive)" if logits.shape[1] == 1 else f"{logits.shape[1]} scores"
        raise CnnlensError(f"The model returns {what} per image but there are {k} classes; {fix}.")
    return class_probabilities(logits.double()).cpu().numpy()
