"""The shipped digits_cnn, loaded once per test session and shared by the test modules."""

from __future__ import annotations

import functools

from cnnlens.models import Classifier, digits_cnn


@functools.lru_cache(maxsize=1)
def trained_digits() -> Classifier:
    """The shipped weights (the same on every machine), then the same Classifier object; tests must not modify it."""
    return digits_cnn()
