"""One digits_cnn trained per test session (in a temporary cache folder), shared by the test modules."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from cnnlens.models import Classifier, digits_cnn


@functools.lru_cache(maxsize=1)
def digits_cache() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cnnlens-digits-test-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.lru_cache(maxsize=1)
def trained_digits() -> Classifier:
    """Trained on first use (seed 0), then the same Classifier object; tests must not modify it."""
    return digits_cnn(cache_dir=digits_cache(), seed=0, progress=False)
