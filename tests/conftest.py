"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

import cnnlens


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: with two, OpenMP barriers make every pass many times slower whenever
    another process is busy on a 2-core machine (measured here); with one, the runtime is predictable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lite0() -> cnnlens.Classifier:
    """EfficientNet-Lite0 with its real weights, loaded afresh for each test module."""
    return cnnlens.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def x(lite0: cnnlens.Classifier) -> torch.Tensor:
    """The chelsea photo preprocessed for Lite0 (modules with their own ``x`` fixture override this)."""
    from cnnlens.data import sample_image

    return lite0.preprocess([sample_image("chelsea")])


@pytest.fixture(scope="module")
def target(lite0: cnnlens.Classifier, x: torch.Tensor) -> int:
    """Lite0's predicted class for ``x``."""
    with torch.no_grad():
        return int(lite0.module(x).argmax(1))
