"""The bundled digits data and model: disjoint splits, a field split that really lowers accuracy, weights shipped
with the package (checked by their SHA-256, the accuracy recorded when they were saved), and the training recipe
that made them: deterministic under its seed and still good enough."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import cnnlens.models._digits as digits_module
from _digits_session import trained_digits
from cnnlens import CnnlensError, load_model
from cnnlens.data import digits
from cnnlens.evaluation import evaluate
from cnnlens.models import bundled_models, digits_cnn
from cnnlens.models._digits import (
    DIGITS_PREPROCESSING,
    SHIPPED,
    WEIGHTS,
    digits_classifier,
    digits_tensors,
    train_digits_cnn,
)

# The shipped weights (seed 0): test accuracy 0.978 (351 of 359 images), field accuracy 0.519 (187 of 360); the
# train split has 1078 images.
MIN_TEST_ACCURACY = 0.95
MAX_FIELD_ACCURACY = 0.65


def test_splits_are_disjoint_stratified_and_sized() -> None:
    ids = {s: set(digits(s).ids) for s in ("train", "test", "field")}
    sizes = {s: len(v) for s, v in ids.items()}
    assert sizes == {"train": 1078, "test": 359, "field": 360}  # 60 / 20 / 20 % of sklearn's 1797 digits
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["field"] and not ids["test"] & ids["field"]
    counts = np.bincount(digits("test").labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: about 36 of each digit


def test_images_are_upsampled_uint8_and_field_differs() -> None:
    test, field = digits("test"), digits("field")
    assert test.images.shape[1:] == (32, 32) and test.images.dtype == np.uint8
    # the clean digits sit in the central 24x24 on a black background; field images have noise everywhere
    assert test.images[:, :4, :].max() == 0
    assert (field.images[:, :4, :] > 0).mean() > 0.3
    # same seed, same images (deterministic)
    assert np.array_equal(digits("field").images, field.images)
    with pytest.raises(CnnlensError, match="split"):
        digits("validation")


def test_training_tensors_match_the_classifier_preprocessing() -> None:
    test = digits("test")
    assert torch.allclose(digits_tensors(test.images[:5]), DIGITS_PREPROCESSING(list(test.images[:5])), atol=1e-6)


def test_accuracy_clean_test_split_and_field_split() -> None:
    model = trained_digits()
    acc_test = evaluate(model, digits("test"), progress=False).accuracy
    acc_field = evaluate(model, digits("field"), progress=False).accuracy
    assert acc_test >= MIN_TEST_ACCURACY, acc_test
    assert acc_field <= MAX_FIELD_ACCURACY, acc_field
    assert acc_test - acc_field >= 0.3


def test_shipped_weights_match_their_checksum_and_recorded_accuracy() -> None:
    assert WEIGHTS.stat().st_size < 100_000  # a small file in the package
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == SHIPPED["sha256"]
    model = trained_digits()
    assert model.info == {"weights": "shipped", "sha256": SHIPPED["sha256"], "seed": 0, "epochs": SHIPPED["epochs"]}
    for split in ("test", "field"):
        data = digits(split)
        correct = round(evaluate(model, data, progress=False).accuracy * len(data))
        assert correct == SHIPPED[f"{split}_correct"], split


def test_digits_cnn_loads_the_shipped_weights_without_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained although the weights ship with the package")

    monkeypatch.setattr(digits_module, "_train_steps", no_training)
    state = torch.random.get_rng_state()
    again = digits_cnn()
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert again.module is not trained_digits().module and not again.module.training
    for (k, a), b in zip(trained_digits().module.state_dict().items(), again.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_retraining_with_the_recipe_meets_the_accuracy_bound() -> None:
    state = torch.random.get_rng_state()
    model = digits_classifier(train_digits_cnn(seed=0))  # about 15 s: the whole recipe, once
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    acc_test = evaluate(model, digits("test"), progress=False).accuracy
    assert acc_test >= MIN_TEST_ACCURACY, acc_test
    assert SHIPPED["test_correct"] / len(digits("test")) >= MIN_TEST_ACCURACY  # the shipped model meets it too


def test_training_is_deterministic_under_its_seed() -> None:
    a, b = (train_digits_cnn(seed=1, epochs=1) for _ in range(2))  # one epoch each: the determinism, not the model
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    other = train_digits_cnn(seed=2, epochs=1)
    assert not torch.equal(a.classifier.weight, other.classifier.weight)


def test_registered_as_bundled_model() -> None:
    assert "digits_cnn" in bundled_models()
    model = load_model("digits_cnn")
    assert model.class_names == [str(d) for d in range(10)]
    assert model.info["weights"] == "shipped"
    assert model.predict(digits("test")[0][0], top_k=1)[0][0][1] == str(digits("test")[0][1])


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_damaged_weights_are_reported(tmp_path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    path = tmp_path / "digits_cnn.pt"
    if damage == "changed":
        path.write_bytes(WEIGHTS.read_bytes()[:-1] + b"x")
    monkeypatch.setattr(digits_module, "WEIGHTS", path)
    with pytest.raises(CnnlensError, match=r"digits_cnn\.pt.*package is damaged: reinstall") as caught:
        digits_cnn()
    assert str(path) in str(caught.value)
