"""A store reopens the user's own model and data from any folder: the weights' path is absolute, the folder the
architecture's module was imported from is recorded (and put on ``sys.path`` only while the model is rebuilt), and
the data's ``--class-map`` is kept."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens import CnnlensError
from cnnlens.cli import main
from cnnlens.store import open_store

MYNET = """
import torch
from torch import nn


class MyNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
"""


@pytest.fixture
def own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``cnnlens run`` from the folder ``work`` that holds ``mynet.py``, ``mynet.pt`` and images in folders named
    otherwise than the classes (mapped with ``--class-map``); returns the store's path."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mynet.py").write_text(MYNET)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    sys.modules.pop("mynet", None)
    import mynet  # noqa: PLC0415  (the user's module, as the CLI imports it from the working folder)

    torch.manual_seed(0)
    torch.save(mynet.MyNet().state_dict(), work / "mynet.pt")
    rng = np.random.default_rng(0)
    for folder in ("round", "boxy", "pointy"):
        (work / "data" / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(work / "data" / folder / f"{i}.png")
    (work / "classes.txt").write_text("circle\nsquare\ntriangle\n")
    argv = ["run", "--data", "data", "--model", "mynet.pt", "--arch", "mynet:MyNet", "--input-size", "16"]
    argv += ["--mean", "0.5", "--std", "0.25", "--classes", "classes.txt", "--out", "store", "--no-progress"]
    argv += ["--class-map", "round=circle,boxy=square,pointy=triangle", "--methods", "saliency"]
    assert main(argv) == 0
    del sys.modules["mynet"]
    sys.path.remove(str(work))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    yield work / "store"
    sys.modules.pop("mynet", None)


def test_a_store_reopens_its_own_model_and_class_mapped_data_from_another_folder(own_store: Path) -> None:
    store = open_store(own_store)
    model = store.model()
    assert model.class_names == ["circle", "square", "triangle"] and model.preprocessing.input_size == (16, 16)
    assert str(own_store.parent) not in sys.path and "mynet" in sys.modules  # imported, the path taken off again
    data = store.dataset()
    assert len(data) == 6 and sorted(set(data.labels)) == [0, 1, 2]
    image, label = data[0]
    assert np.asarray(image).shape[:2] == (16, 16)
    assert Path(store.manifest["model"]["source"]).is_absolute()


def test_a_store_whose_model_module_is_gone_says_what_to_add(own_store: Path, monkeypatch) -> None:
    moved = own_store.parent.parent / "moved"
    moved.mkdir()
    (own_store.parent / "mynet.py").rename(moved / "mynet.py")
    with pytest.raises(CnnlensError, match=r"mynet:MyNet, imported from .*work.*PYTHONPATH"):
        open_store(own_store).model()
    monkeypatch.syspath_prepend(str(moved))  # the fix the error names: the module's folder on the path
    assert open_store(own_store).model().class_names == ["circle", "square", "triangle"]


def test_run_ends_with_both_next_steps(capsys: pytest.CaptureFixture[str], own_store: Path) -> None:
    printed = capsys.readouterr().out
    assert "next: cnnlens view store" in printed and "cnnlens report --store store" in printed
