"""Several methods in one call: a method that refuses (a CnnlensError: guided backprop on a SiLU net, a stable
refusal) is reported and skipped, the others are still written, and the exit code says some failed. The user's
own errors still propagate unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlens
from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.cli import explain_images, main
from cnnlens.models import Classifier, Preprocessing

pytestmark = pytest.mark.usefixtures("one_thread")
PREP = Preprocessing((16, 16), None, (0.5,) * 3, (0.25,) * 3)
REFUSAL = "guided_backprop is defined for ReLU-like activations"


class SiluNet(nn.Module):
    """A conv net with SiLU: guided backprop and deconvnet refuse it (without generalize=True)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.silu(self.conv(x)).mean((2, 3)))


class UserBug(Exception):
    pass


class Broken(SiluNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise UserBug("a bug in the user's forward")


def _model(cls: type[nn.Module] = SiluNet) -> Classifier:
    torch.manual_seed(0)
    return Classifier(cls().eval(), PREP, ["a", "b", "c"], "silu")


def _image(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def test_a_refusing_method_is_skipped_and_reported(tmp_path: Path) -> None:
    clf = _model()
    img = Image.open(_image(tmp_path / "x.png"))
    methods: dict[str, dict] = {"saliency": {}, "guided_backprop": {}, "grad_cam": {}}
    with pytest.warns(CnnlensWarning, match=f"guided_backprop was skipped: {REFUSAL}"):
        summary = explain_images(clf, [img], ["x"], methods, tmp_path / "o", progress=False)
    assert list(summary["failed_methods"]) == ["guided_backprop"]
    assert REFUSAL in summary["failed_methods"]["guided_backprop"]
    written = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert written["failed_methods"] == summary["failed_methods"]
    assert set(written["images"][0]["methods"]) == {"saliency", "grad_cam"}
    maps = np.load(tmp_path / "o" / "x.npz")
    assert set(maps.files) == {"saliency", "grad_cam"}
    direct = cnnlens.explain(clf, clf.preprocess([img]), "saliency", progress=False).attributions[0]
    assert np.array_equal(maps["saliency"], direct.numpy())  # the others are what they are alone
    manifest = json.loads((tmp_path / "o" / "cnnlens-run.json").read_text())
    assert manifest["status"] == "complete" and "guided_backprop" in manifest["failed_methods"]


def test_one_method_or_every_method_refusing_raises_and_writes_nothing(tmp_path: Path) -> None:
    clf = _model()
    img = Image.open(_image(tmp_path / "x.png"))
    with pytest.raises(cnnlens.UnsupportedOperationError, match=REFUSAL):
        explain_images(clf, [img], ["x"], {"guided_backprop": {}}, tmp_path / "one", progress=False)
    with pytest.raises(CnnlensError, match=f"no method could run: guided_backprop: {REFUSAL}.*; deconvnet: "):
        explain_images(clf, [img], ["x"], {"guided_backprop": {}, "deconvnet": {}}, tmp_path / "all", progress=False)
    assert not (tmp_path / "one").exists() and not (tmp_path / "all").exists()


def test_the_users_own_error_propagates(tmp_path: Path) -> None:
    clf = _model(Broken)
    img = Image.open(_image(tmp_path / "x.png"))
    with pytest.raises(UserBug, match="a bug in the user's forward"):
        explain_images(clf, [img], ["x"], {"guided_backprop": {}, "saliency": {}}, tmp_path / "o", progress=False)


def test_cli_exit_code_says_some_failed(tmp_path: Path, monkeypatch, capsys) -> None:
    torch.save(_model().module.state_dict(), tmp_path / "silu.pt")
    _image(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    model = ["--model", "silu.pt", "--arch", f"{__name__}:SiluNet", "--input-size", "16", "--mean", "0.5"]
    argv = ["explain", "x.png", *model, "--std", "0.25", "--classes", "a,b,c", "--no-progress"]
    assert main([*argv, "--methods", "saliency,guided_backprop,grad_cam", "--out", "o"]) == 3
    err = capsys.readouterr().err
    assert f"cnnlens: warning: guided_backprop was skipped: {REFUSAL}" in err
    assert "cnnlens: error: 1 of 3 methods failed and were skipped: guided_backprop" in err
    assert set(np.load(tmp_path / "o" / "x.npz").files) == {"saliency", "grad_cam"}
    assert "guided_backprop" in json.loads((tmp_path / "o" / "summary.json").read_text())["failed_methods"]
    assert main([*argv, "--methods", "saliency,grad_cam", "--out", "ok"]) == 0
    assert main([*argv, "--methods", "guided_backprop", "--out", "bad"]) == 2  # a lone refusal: as before
    assert REFUSAL in capsys.readouterr().err and not (tmp_path / "bad").exists()
