"""``--on-error`` and ``--no-concepts`` reach every step: the concepts of a class skip (and name) an unreadable file
of a data set opened with ``on_error="report"``, or stop naming it and the fix; ``report --store`` passes
``--no-concepts`` on."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlens.concepts as concepts
from cnnlens import Classifier, CnnlensError, CnnlensWarning
from cnnlens.cli import main
from cnnlens.data import ImageFolder
from cnnlens.models import Preprocessing


class _AvgNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.act, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def _folder(root: Path) -> Path:
    """Two classes of 10 noisy 8x8 images; one truncated PNG in class ``b``."""
    rng = np.random.default_rng(0)
    for name in "ab":
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    bad = root / "b" / "broken.png"
    bad.write_bytes((root / "b" / "0.png").read_bytes()[:20])
    return bad


def _classifier() -> Classifier:
    return Classifier(_AvgNet().eval(), Preprocessing((8, 8), None, 0.5, 0.5), ["a", "b"])


def test_concepts_skip_and_name_an_unreadable_file_only_when_asked(tmp_path: Path) -> None:
    bad = _folder(tmp_path)
    clf = _classifier()
    options = {"n_concepts": 2, "designs": 16, "importance_images": 4, "crops_per_scale": 1, "progress": False}
    with pytest.raises(CnnlensError, match=r"broken\.png.*on_error='report'"):
        concepts.extract(clf, ImageFolder(tmp_path, on_error="raise"), "b", **options)
    with pytest.warns(CnnlensWarning, match=r"skipped 1 unreadable sample\(s\): .*broken\.png"):
        found = concepts.extract(clf, ImageFolder(tmp_path, on_error="report"), "b", **options)
    assert str(bad) not in found.ids and len(found.ids) == 10 == len(found.inputs)  # the readable ten, all kept


def test_cli_concepts_with_on_error_report_writes_its_files(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = _folder(tmp_path / "data")
    model_file = tmp_path / "net.pt"
    torch.save(_AvgNet().state_dict(), model_file)
    monkeypatch.setattr(sys.modules[__name__], "_AvgNet", _AvgNet)
    argv = ["concepts", "--data", str(tmp_path / "data"), "--class", "b", "--model", str(model_file)]
    argv += ["--arch", f"{__name__}:_AvgNet", "--input-size", "8", "--mean", "0.5", "--std", "0.5", "--no-progress"]
    argv += ["--concepts", "2", "--designs", "16", "--importance-images", "4", "--out", str(tmp_path / "out")]
    assert main(argv) != 0  # stops at the unreadable file, naming it and the fix
    err = capsys.readouterr().err
    assert "broken.png" in err and "pass --on-error report to skip it" in err
    assert main([*argv, "--on-error", "report"]) == 0
    assert "warning: concepts of class b: skipped 1 unreadable sample(s)" in capsys.readouterr().err
    assert (tmp_path / "out" / "concepts.json").is_file() and bad.name not in (
        tmp_path / "out" / "concepts.json"
    ).read_text()


def test_report_of_a_store_passes_no_concepts_on(tmp_path: Path, monkeypatch) -> None:
    calls: list[dict] = []

    class _Store:
        def report(self, out, **options):
            calls.append(options)
            return out.path / "report.html"

    fake = ModuleType("cnnlens.store")
    fake.open_store = lambda root: _Store()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cnnlens.store", fake)
    for flags, wanted in (([], True), (["--no-concepts"], False)):
        assert main(["report", "--store", str(tmp_path / "s"), "--out", str(tmp_path / f"r{len(flags)}"), *flags]) == 0
        assert calls[-1]["concepts"] is wanted
    assert SimpleNamespace(**calls[-1]).scorecard is True
