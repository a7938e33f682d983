"""Concepts shown and told: the CLI command, the figures, and the error-in-concepts logic on hand-made numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlens.cli import main
from cnnlens.concepts import ErrorConcepts, ImageConcepts

QUICK = [
    "--model",
    "digits_cnn",
    "--concepts",
    "3",
    "--designs",
    "16",
    "--importance-images",
    "2",
    "--images",
    "20",
    "--no-progress",
]


def test_cli_concepts_writes_gallery_json_and_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c7"
    code = main(
        ["concepts", "--data", "digits:test", "--class", "7", *QUICK, "--image", "digits:test:0", "--out", str(out)]
    )
    assert code == 0
    written = {"gallery.png", "concepts.json", "image_0.png"}
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == written | {"cnnlens-run.json"}
    manifest = json.loads((out / "cnnlens-run.json").read_text())
    assert manifest["command"] == "concepts" and set(manifest["files"]) == written
    summary = json.loads((out / "concepts.json").read_text())
    assert summary["class"] == "7" and summary["layer"] == "features" and summary["images"] == 20
    importance = [c["importance"] for c in summary["concepts"]]
    assert importance == sorted(importance, reverse=True) and len(importance) == 3
    assert all(len(c["typical_crops"]) == 8 and c["typical_crops"][0]["image"].startswith("digits/test/")
               for c in summary["concepts"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "concepts of class 7 at layer features from 20 images" in printed and "concept 2: importance" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--class", "zebra"], "unknown class 'zebra'"),
        (["--class", "3", "--layer", "features.2.0"], "pass --layer a layer such as features "),
        (["--class", "3", "--concepts", "0"], "--concepts must be at least 1"),
        (["--class", "3", "--concepts", "40"], r"at most that many concepts \(--concepts\)"),
    ],
)
def test_cli_concepts_errors_speak_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["concepts", "--model", "digits_cnn", "--data", "digits:test", *args, "--out", str(tmp_path / "x")]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlens: error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err)


class _Fake:
    """Just what ErrorConcepts reads of a Concepts."""

    def __init__(self, importance: list[float]) -> None:
        self.importance = np.asarray(importance)


def _image(importance: list[float], presence: list[float], contributions: list[float]) -> ImageConcepts:
    k = len(presence)
    return ImageConcepts(_Fake(importance), torch.zeros(1, 2, 2), np.zeros((k, 2, 2)),  # type: ignore[arg-type]
                         np.asarray(presence), np.asarray(contributions), 0.0)  # fmt: skip


def test_error_in_concepts_shown_and_lacked() -> None:
    # wrong class: concepts 0 and 2 present (1 absent), concept 2 contributes most -> shown [2, 0]
    wrong = _image([0.5, 0.3, 0.2], presence=[0.9, 0.2, 1.4], contributions=[0.1, 0.6, 0.3])
    # true class: concepts 1 and 3 absent (< 0.5); concept 3 more important for the class -> lacked [3, 1]
    true = _image([0.4, 0.1, 0.2, 0.3], presence=[1.0, 0.3, 0.8, 0.49], contributions=[0.0] * 4)
    error = ErrorConcepts(true, wrong)
    assert error.shown.tolist() == [2, 0]
    assert error.lacked.tolist() == [3, 1]


def test_concept_figures_show_one_row_per_concept() -> None:
    import cnnlens.concepts as concepts
    from cnnlens.viz import concept_gallery_figure, concept_overlay_figure

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(2))
    model = torch.nn.Sequential(*model[:2], torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 2))
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    found = concepts.extract(model, x, 1, n_concepts=4, designs=16, crops_per_scale=1, progress=False)
    from cnnlens.viz import LABEL_PT, figure_layout

    def parts(fig):  # noqa: ANN001, ANN202
        bars = [ax for ax in fig.axes if ax.get_gid() == "cnnlens-colorbar"]
        assert min(t[4] for t in figure_layout(fig, 100)["texts"]) >= LABEL_PT
        return [ax for ax in fig.axes if ax not in bars], bars

    axes, bars = parts(concept_gallery_figure(found, crops=3))
    assert len(axes) == 4 * (3 + 2) and len(bars) == 1  # bar, strongest image, 3 crops per concept; one scale
    titles = [a.get_title(loc="left") for a in axes[::5]]
    assert titles == [f"concept {c}: {found.importance[c]:.2f}" for c in range(4)]
    np.testing.assert_allclose([a.patches[0].get_width() for a in axes[::5]], found.importance)
    one = concepts.explain_image(found, x[0])
    axes, bars = parts(concept_overlay_figure(one, top=2))
    assert len(axes) == 4 and len(bars) == 1 and one.maps.shape == (4, 12, 12)
    top = np.argsort(-one.contributions, kind="stable")[:2]
    assert [a.get_title() for a in axes[1:3]] == [f"concept {c}\npresence {one.presence[c]:.2f}" for c in top]
