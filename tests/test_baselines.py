"""Baselines live in the model's input space: a black baseline is the normalized value of a black pixel."""

from __future__ import annotations

import pytest
import torch

import cnnlens
from _nets import residual_cnn
from cnnlens.attribution._baselines import baseline_distribution, single_baseline
from cnnlens.models import Classifier, Preprocessing

IMAGENET = Preprocessing(input_size=(8, 8), resize=None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
X = torch.randn(2, 3, 8, 8)


def test_black_white_mean_are_normalized_pixel_values() -> None:
    black = single_baseline("black", X, IMAGENET)
    assert black.shape == X.shape
    torch.testing.assert_close(black[0, :, 0, 0], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    assert abs(black[1, 0, 5, 5].item() - (-2.1179)) < 1e-4
    white = single_baseline("white", X, IMAGENET)
    torch.testing.assert_close(white[0, :, 3, 3], torch.tensor([0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225]))
    torch.testing.assert_close(single_baseline("mean", X, IMAGENET), torch.zeros_like(X))


def test_blur_keeps_constant_images_and_smooths_noise() -> None:
    flat = torch.full((1, 3, 16, 16), 0.7)
    torch.testing.assert_close(single_baseline("blur", flat), flat)
    noisy = torch.randn(1, 3, 32, 32)
    assert single_baseline("blur", noisy).std() < 0.3 * noisy.std()


def test_numbers_and_tensors() -> None:
    torch.testing.assert_close(single_baseline(0.5, X), torch.full_like(X, 0.5))
    one = torch.randn(3, 8, 8)
    assert torch.equal(single_baseline(one, X)[1], one)
    per_image = torch.randn(2, 3, 8, 8)
    assert torch.equal(single_baseline(per_image, X), per_image)


def test_distributions() -> None:
    shared = torch.randn(5, 3, 8, 8)
    d = baseline_distribution(shared, X)
    assert d.shape == (2, 5, 3, 8, 8) and torch.equal(d[1, 4], shared[4])
    mixed = baseline_distribution(["black", 0.0, shared[0]], X, IMAGENET)
    assert mixed.shape == (2, 3, 3, 8, 8)
    assert torch.equal(mixed[0, 2], shared[0]) and (mixed[:, 1] == 0).all()
    assert torch.equal(baseline_distribution(None, X), torch.zeros(2, 1, 3, 8, 8))  # one zero baseline


def test_explain_uses_the_classifier_normalization() -> None:
    clf = Classifier(residual_cnn(), preprocessing=IMAGENET)
    x = torch.randn(1, 3, 8, 8)
    named = cnnlens.explain(clf, x, "integrated_gradients", baseline="black", steps=8)
    explicit = cnnlens.explain(clf, x, "integrated_gradients", baseline=single_baseline("black", x, IMAGENET), steps=8)
    torch.testing.assert_close(named.attributions, explicit.attributions)
    with pytest.raises(cnnlens.CnnlensError, match="normalization"):
        cnnlens.explain(clf.module, x, "integrated_gradients", baseline="black")
