"""The bundled digits data and model: disjoint splits, a field split that really lowers accuracy, training that
is deterministic under its seed, cached and reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnlens.models._digits as digits_module
from _digits_session import digits_cache, trained_digits
from cnnlens import CnnlensError, load_model
from cnnlens.data import digits
from cnnlens.evaluation import evaluate
from cnnlens.models import bundled_models, digits_cnn
from cnnlens.models._digits import DIGITS_PREPROCESSING, digits_tensors

# Measured with seed 0: test accuracy 0.978, field accuracy 0.519 (train 1078 / test 359 / field 360 images).
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


def test_cache_is_reused_without_training(monkeypatch: pytest.MonkeyPatch) -> None:
    first = trained_digits()
    assert first.info["cached"] is False
    assert list(digits_cache().glob("digits_cnn-v*-seed0.pt"))

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained again although the cache holds the weights")

    monkeypatch.setattr(digits_module, "_train", no_training)
    again = digits_cnn(cache_dir=digits_cache(), seed=0, progress=False)
    assert again.info["cached"] is True
    assert again.module is not first.module
    for (k, a), b in zip(first.module.state_dict().items(), again.module.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_training_is_deterministic_under_its_seed(tmp_path) -> None:
    state = torch.random.get_rng_state()
    retrained = digits_cnn(cache_dir=tmp_path, seed=0, retrain=True, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert retrained.info["cached"] is False
    for (k, a), b in zip(
        trained_digits().module.state_dict().items(), retrained.module.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


def test_registered_as_bundled_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "digits_cnn" in bundled_models()
    # load_model("digits_cnn") uses the default cache; point it at the session cache to avoid training again
    monkeypatch.setattr(digits_module, "DEFAULT_CACHE_DIR", digits_cache())
    model = load_model("digits_cnn")
    assert model.class_names == [str(d) for d in range(10)]
    assert model.info["cached"] is True
    assert model.predict(digits("test")[0][0], top_k=1)[0][0][1] == str(digits("test")[0][1])


def test_unreadable_cache_is_reported(tmp_path) -> None:
    (tmp_path / "digits_cnn-v1-seed3.pt").write_bytes(b"not a torch file")
    with pytest.raises(CnnlensError, match="retrain=True"):
        digits_cnn(cache_dir=tmp_path, seed=3, progress=False)
