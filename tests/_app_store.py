"""One store of the digits field split for the app's tests, made once per test session (each module works on its
own copy: the app adds explanations to it)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from _digits_session import trained_digits

METHODS = ["saliency", "grad_cam"]
METRICS = {"deletion": {"steps": 5}}


@functools.lru_cache(maxsize=1)
def digits_store() -> Path:
    """`cnnlens.run` of the digits model on the 360 field digits: saliency and Grad-CAM for the predicted and the
    true class, scored by deletion."""
    from cnnlens.store import run

    folder = Path(tempfile.mkdtemp(prefix="cnnlens-app-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    run(trained_digits(), "digits:field", METHODS, out=folder / "store", metrics=METRICS, explain="both",
        progress=False)  # fmt: skip
    return folder / "store"


def store_copy(folder: Path) -> Path:
    """A fresh copy of `digits_store` in ``folder``."""
    return Path(shutil.copytree(digits_store(), Path(folder) / "store"))


def many_classes_store(folder: Path, names: list[str] | None = None):
    """A store of predictions only (no maps) of a linear model with 1,000 classes on 240 random 8 x 8 images, as
    a real model errs: it answers among the first 60 classes; half the labels are its answer, most others the
    next class (a few strong confusions), some any of the 60. Returns (root, model, data)."""
    import numpy as np
    import torch

    from cnnlens.data import ArrayImages
    from cnnlens.models import Classifier, Preprocessing
    from cnnlens.store import run

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1000))
    with torch.no_grad():
        module[1].bias[60:] -= 100.0
    names = names or [f"class {i}" for i in range(1000)]
    model = Classifier(module, Preprocessing(input_size=(8, 8), resize=None, mean=(0.5,) * 3, std=(0.25,) * 3), names)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (240, 8, 8, 3), dtype=np.uint8)
    with torch.no_grad():
        predicted = module(model.preprocess(list(images))).argmax(1).numpy()
    u = rng.random(240)
    labels = np.where(u < 0.5, predicted, np.where(u < 0.85, (predicted + 1) % 60, rng.integers(0, 60, 240)))
    data = ArrayImages(images, labels, names)
    run(model, data, [], out=Path(folder) / "s", progress=False)
    return Path(folder) / "s", model, data


def named_store(folder: Path, class_names: list[str], ids: list[str], name: str):
    """A saliency store of the first ``len(ids)`` digits of the field split, the trained digits model renamed:
    its classes ``class_names`` (ten), the images ``ids``, the data set ``name`` (e.g. HTML that must stay text).
    Returns (root, model, data)."""
    from cnnlens.data import ArrayImages, digits
    from cnnlens.models import Classifier
    from cnnlens.store import run

    base = trained_digits()
    model = Classifier(base.module, base.preprocessing, class_names=class_names, name="evil")
    field = digits("field")
    n = len(ids)
    data = ArrayImages(field.images[:n], field.labels[:n], class_names, ids=ids, name=name)
    run(model, data, ["saliency"], out=Path(folder) / "s", progress=False)
    return Path(folder) / "s", model, data
