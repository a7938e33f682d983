"""The command line: real files in, real files out, clear failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlens.cli import main
from cnnlens.data import sample_image


def test_methods_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--category", "gradient"]) == 0
    out = capsys.readouterr().out
    assert "integrated_gradients" in out and "deeplift_shap" in out


def test_models_lists_the_bundled_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out


def test_explain_writes_panels_maps_and_summary(tmp_path) -> None:
    image = tmp_path / "coffee.jpg"
    sample_image("coffee").save(image)
    out = tmp_path / "out"
    code = main(["explain", str(image), "--methods", "saliency,deeplift", "--set", "abs=False", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    item = summary["images"][0]
    assert item["explained_class"] == "espresso" == item["top3"][0]["class"]
    assert abs(item["methods"]["deeplift"]["completeness_delta"]) < 1e-3
    maps = np.load(out / "coffee.npz")
    assert maps["saliency"].shape == maps["deeplift"].shape == (3, 224, 224)
    assert (maps["saliency"] < 0).any(), "--set abs=False did not reach saliency"
    assert (out / "coffee.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--methods", "salency"], "Did you mean saliency"),
        (["--methods", "saliency", "--set", "steps=3"], "no chosen method has an option 'steps'"),
        (["--target", "not a class"], "unknown class"),
    ],
)
def test_explain_fails_clearly(tmp_path, capsys: pytest.CaptureFixture[str], argv: list[str], phrase: str) -> None:
    image = tmp_path / "cat.png"
    sample_image("chelsea").save(image)
    assert main(["explain", str(image), "--out", str(tmp_path / "o"), *argv]) == 2
    assert phrase in capsys.readouterr().err


def test_explain_names_an_unreadable_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    assert main(["explain", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "broken.jpg" in capsys.readouterr().err


def test_evaluate_and_inside_commands(tmp_path, monkeypatch, capsys) -> None:
    import json

    import cnnlens.models._digits as digits_module
    from _digits_session import digits_cache, trained_digits

    trained_digits()
    monkeypatch.setattr(digits_module, "DEFAULT_CACHE_DIR", digits_cache())
    assert main(["evaluate", "digits:field", "--out", str(tmp_path / "ev")]) == 0
    assert "no-information rate" in capsys.readouterr().out
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["samples"] == 360 and saved["accuracy"] < 0.65
    assert (tmp_path / "ev" / "errors.png").exists() and (tmp_path / "ev" / "probabilities.csv").exists()
    assert main(["inside", "digits:field:7", "--layers", "features.0.0", "--out", str(tmp_path / "in")]) == 0
    assert (tmp_path / "in" / "filters_features.0.0.png").exists()
    assert main(["inside", "digits:field:999", "--out", str(tmp_path / "x")]) == 2
    assert "INDEX in 0..359" in capsys.readouterr().err
