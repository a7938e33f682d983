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
