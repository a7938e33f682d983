"""Any number of classes: figures and report sections show the classes in the data (and the most confused ones)
and summarise the rest, so their size and memory stay bounded from 2 to 10,000 classes; a 1,000-class model
evaluated and reported on a small folder stays under 1 GB (measured in a separate process,
above what the imports take: see `WORK`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from cnnlens.evaluation import Evaluation
from cnnlens.viz import confusion_matrix_figure, metrics_figure, roc_figure

ROOT = Path(__file__).resolve().parents[1]
GB = 1 << 30
WORK = 800 << 20
"""Memory the work may take above what importing torch, matplotlib and cnnlens takes (about 220 MB with a CPU
build of torch, about 700 MB with a CUDA build): with the CPU build, 1 GB in all."""


def _evaluation(k: int, seed: int = 0) -> Evaluation:
    """30 images of 6 classes out of ``k``; predictions hand-placed: 18 right, the rest spread over other classes."""
    rng = np.random.default_rng(seed)
    present = [3, 17, 250, 600, k - 2, k - 1]
    y = np.repeat(present, 5)
    pred = y.copy()
    wrong = rng.choice(len(y), 12, replace=False)
    pred[wrong[:6]] = 17  # a strongly confused class
    pred[wrong[6:]] = rng.choice(k, 6)  # scattered mistakes, some into classes absent from the data
    probs = np.full((len(y), k), 0.1 / k)
    probs[np.arange(len(y)), pred] += 0.9
    return Evaluation(y, probs / probs.sum(1, keepdims=True), [f"c{i}" for i in range(k)])


def test_confused_pairs_and_cells_match_the_dense_matrix() -> None:
    ev = _evaluation(1000)
    cm = np.zeros((1000, 1000), dtype=int)
    np.add.at(cm, (ev.y_true, ev.y_pred), 1)  # an independent dense count
    assert ev.confusion_cells() == [(t, p, int(cm[t, p])) for t, p in zip(*np.nonzero(cm), strict=True)]
    off = [(int(cm[t, p]), t, p) for t, p in zip(*np.nonzero(cm), strict=True) if t != p]
    expected = [(f"c{t}", f"c{p}", n) for n, t, p in sorted(off, key=lambda c: (-c[0], c[1], c[2]))]
    assert ev.confused_pairs() == expected and ev.confused_pairs(2) == expected[:2]
    assert np.array_equal(ev.confusion_matrix, cm)  # still there, made on first use
    small = ev.to_dict()
    assert small["confusion_matrix"] is None and small["confusion_cells"] == [list(c) for c in ev.confusion_cells()]
    assert len(json.dumps(small)) < 200_000  # per-class entries grow with K; the matrix does not


def test_classes_to_show_ranks_mistakes_then_images() -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 5])
    pred = np.array([0, 0, 4, 1, 4, 2, 5])  # class 4 is never true but predicted twice
    probs = np.eye(8)[pred] * 0.9 + 0.1 / 8
    ev = Evaluation(y, probs, list("abcdefgh"))
    assert ev.classes_to_show(8) == list(range(8))  # few classes: all of them
    # mistakes: 4 -> 2 (predicted wrongly twice), 0 and 1 -> 1 each; then images: 2 and 5 have one each
    assert ev.classes_to_show(3) == [0, 1, 4]
    assert ev.classes_to_show(5) == [0, 1, 2, 4, 5]
    assert ev.classes_to_show(7) == [0, 1, 2, 4, 5]  # classes neither in the data nor answered never appear


@pytest.mark.parametrize("k", [2, 12, 1000, 10_000])
def test_figures_stay_bounded_and_summarise_the_rest(k: int, tmp_path: Path) -> None:
    ev = _evaluation(k) if k >= 1000 else Evaluation(np.arange(20) % k, np.eye(k)[(np.arange(20) + 1) % k], range(k))
    fig = confusion_matrix_figure(ev)
    ax = fig.axes[0]
    shown = ev.classes_to_show(20)
    cells = np.asarray(ax.get_images()[0].get_array())
    if k > 20:
        names = [t.get_text() for t in ax.get_yticklabels()]
        assert names == [ev.classes[c] for c in shown] + [f"other {k - len(shown)} classes"]
        dense = np.zeros((len(shown) + 1,) * 2, dtype=int)  # an independent count into shown + "other"
        index = {c: i for i, c in enumerate(shown)}
        for t, p in zip(ev.y_true, ev.y_pred, strict=True):
            dense[index.get(int(t), len(shown)), index.get(int(p), len(shown))] += 1
        assert np.array_equal(cells, dense) and cells.sum() == len(ev.y_true)
        assert f"{k - len(shown)} of the {k} classes not shown" in ax.get_title()
    else:
        assert np.array_equal(cells, ev.confusion_matrix)
    for make in (lambda: fig, lambda: metrics_figure(ev), lambda: roc_figure(ev)):
        f = make()
        width, height = f.get_size_inches() * 96
        assert width <= 11.5 * 96 + 1 and height <= 11.5 * 96 + 1  # fits the report page, whatever k
        assert min(t.get_fontsize() for t in f.findobj(plt.Text) if t.get_text().strip()) >= 9
        plt.close(f)
    bars = metrics_figure(ev)
    assert len(bars.axes[0].patches) == 3 * min(k, len(ev.classes_to_show(25)))
    plt.close("all")


def _run(script: str, cwd: Path, timeout: float = 600) -> dict:
    """Run ``script`` in a fresh Python (this checkout's package first) and return the JSON it prints last,
    with the process's own peak resident memory in bytes: ``VmHWM`` of /proc/self/status, which belongs to the
    process's memory map (``ru_maxrss`` is not used: across the vfork + exec that starts a subprocess, Linux
    carries the parent's peak over to it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(cwd)]), "OMP_NUM_THREADS": "1"}
    code = (
        "import json, sys\n"
        + textwrap.dedent(script)
        + textwrap.dedent(
            """
        status = open("/proc/self/status").read()
        peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
        print(json.dumps({"peak": peak, "code": code}))
        """
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _imports(cwd: Path) -> int:
    """Peak resident memory of a process that only imports torch, matplotlib and cnnlens's command line."""
    return _run("import torch, matplotlib.pyplot, cnnlens.cli\ncode = 0\n", cwd)["peak"]


NET = '''
from torch import nn

class ThousandNet(nn.Sequential):
    """A tiny CNN with a 1,000-class head (random weights)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
'''


def _folder(root: Path, classes: list[str], per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for j in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / c / f"{j}.png")
    return root


def _png_sizes(folder: Path) -> list[tuple[int, int]]:
    sizes = []
    for p in folder.glob("*.png"):
        with Image.open(p) as im:
            sizes.append(im.size)
    return sizes


def test_a_1000_class_model_on_a_small_folder_stays_under_1_gb(tmp_path: Path) -> None:
    """`cnnlens evaluate` and `cnnlens report` of a 1,000-class model on 24 images, each in its own process
    (before: 23 GB and killed; the 1000 x 1000 confusion-matrix figure alone took 7 GB)."""
    import torch

    (tmp_path / "thousand_net.py").write_text(NET)
    sys.path.insert(0, str(tmp_path))
    try:
        from thousand_net import ThousandNet
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    torch.save(ThousandNet().state_dict(), tmp_path / "net.pt")
    names = [f"class{i:04d}" for i in range(1000)]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    _folder(tmp_path / "data", names[10:16])
    base = _imports(tmp_path)
    model = "--model net.pt --arch thousand_net:ThousandNet --num-classes 1000 --classes classes.txt --input-size 32"
    for command in (
        f"evaluate --data data --out ev {model} --no-progress",
        f"report --data data --out rep {model} --methods saliency,grad_cam --perturbation-methods occlusion "
        "--no-progress",
    ):
        result = _run(f"from cnnlens.cli import main\ncode = main({command.split()!r})\n", tmp_path)
        assert result["code"] == 0 and result["peak"] - base < WORK, (command, result["peak"] / GB, base / GB)
    assert all(w <= 1400 and h <= 1400 for w, h in _png_sizes(tmp_path / "ev"))
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(saved["classes"]) == 1000 and saved["confusion_matrix"] is None
    assert sum(c[2] for c in saved["confusion_cells"]) == 24
    assert (tmp_path / "ev" / "metrics.json").stat().st_size < 400_000
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert len(html) < 3_000_000 and "1,000; 6 of them in the data" in html
    assert "6 of 1,000 classes" in html or "of 1,000 classes" in html


def test_efficientnet_lite0_evaluated_on_four_photos_stays_under_1_gb(tmp_path: Path) -> None:
    """The real case: the bundled ImageNet model on a folder of photos named by their classes."""
    from cnnlens.data import sample_image

    for folder, photo in (("tabby", "chelsea"), ("espresso", "coffee"), ("space shuttle", "rocket")):
        (tmp_path / "photos" / folder).mkdir(parents=True)
        sample_image(photo).save(tmp_path / "photos" / folder / f"{photo}.png")
    args = ["evaluate", "--data", "photos", "--out", "ev", "--model", "efficientnet_lite0", "--no-progress"]
    result = _run(f"from cnnlens.cli import main\ncode = main({args!r})\n", tmp_path)
    base = _imports(tmp_path)
    assert result["code"] == 0 and result["peak"] - base < WORK, (result["peak"] / GB, base / GB)
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["samples"] == 3 and len(saved["classes"]) == 1000
    assert all(w <= 1400 and h <= 1400 for w, h in _png_sizes(tmp_path / "ev"))
