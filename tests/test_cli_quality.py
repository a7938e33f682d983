"""``cnnlens scorecard`` and ``cnnlens report`` end to end on the bundled digits model: real files in and out."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

import cnnlens
from cnnlens.cli import main
from cnnlens.data import digits
from cnnlens.quality import metrics, scorecard
from test_report import _decoded, _Parsed

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def digits_model(monkeypatch: pytest.MonkeyPatch) -> cnnlens.Classifier:
    """The session's digits_cnn; ``--model digits_cnn`` loads the same shipped weights."""
    from _digits_session import trained_digits

    return trained_digits()


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    assert err.count("cnnlens: error:") == 1 and err.endswith("\n") and len(err.splitlines()) == 1
    return err.strip()


# -- scorecard ----------------------------------------------------------------------------------------------


def test_scorecard_files_equal_the_library_scorecard(digits_model, tmp_path: Path, capsys) -> None:
    test = digits("test")
    Image.fromarray(test[3][0]).save(tmp_path / "three.png")  # a file, next to the digits:SPLIT:INDEX form
    out = tmp_path / "card"
    argv = [
        "scorecard", "digits:test:0", str(tmp_path / "three.png"), "--model", "digits_cnn",
        "--methods", "saliency, grad_cam", "--metrics", "deletion,insertion,detail", "--set", "saliency.abs=False",
        "--metric-set", "deletion.steps=4", "--metric-set", "insertion.steps=5", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    x = digits_model.preprocess([test[0][0], test[3][0]])
    chosen = {"deletion": {"steps": 4}, "insertion": {"steps": 5}, "detail": {}}
    expected = scorecard(digits_model, x, {"saliency": {"abs": False}, "grad_cam": {}}, metrics=chosen, progress=False)
    assert expected.columns == [
        "deletion", "insertion", "detail", "passes_per_image", "seconds_per_image", "setup_seconds",
    ]  # fmt: skip
    exact = [c for c in expected.columns if "seconds" not in c]  # the seconds are measured again, so they differ
    with open(out / "scorecard.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["saliency", "grad_cam"]
    for row, want in zip(rows, expected.rows, strict=True):
        assert {c: float(row[c]) for c in exact} == {c: want[c] for c in exact}
        assert float(row["seconds_per_image"]) > 0
    saved = json.loads((out / "scorecard.json").read_text(encoding="utf-8"))
    want = expected.to_dict()
    assert saved["model"] == "digits_cnn" and saved["images"] == ["digits:test:0", str(tmp_path / "three.png")]
    assert saved["columns"] == want["columns"] and saved["options"] == want["options"] == {
        "deletion": {"steps": "4"}, "insertion": {"steps": "5"}, "detail": {},
    }  # fmt: skip
    for m in expected.methods:
        for c in exact:
            assert saved["per_image"][m][c] == want["per_image"][m][c] and len(want["per_image"][m][c]) == 2
    assert [{c: r[c] for c in exact} for r in saved["rows"]] == [{c: r[c] for c in exact} for r in want["rows"]]
    # --set reached the method: saliency with its default abs=True scores differently
    default = scorecard(digits_model, x, ["saliency"], metrics={"deletion": {"steps": 4}}, progress=False)
    assert default.value("saliency", "deletion") != expected.value("saliency", "deletion")
    header = str(expected).splitlines()[0]
    assert stdout.splitlines()[0] == header and header.split()[:3] == ["method", "deletion", "↓"]
    assert stdout.splitlines()[1].split()[0] == "saliency" and stdout.splitlines()[2].split()[0] == "grad_cam"
    assert f"wrote scorecard.csv, scorecard.md and scorecard.json to {out}" in stdout
    markdown = (out / "scorecard.md").read_text(encoding="utf-8").splitlines()
    assert markdown[:2] == expected.to_markdown().splitlines()[:2] and len(markdown) == 4


BAD = {
    "unknown metric": (["--metrics", "deletion,delition"], "unknown metric 'delition'. Did you mean deletion"),
    "unknown metric option": (["--metrics", "deletion", "--metric-set", "deletion.stepz=3"],
                              "metric deletion has no option 'stepz'; its options are steps, baseline"),
    "metric not chosen": (["--metrics", "deletion", "--metric-set", "insertion.steps=3"],
                          "insertion is not among the chosen metrics (deletion)"),
    "metric-set form": (["--metric-set", "steps=3"], "--metric-set expects metric.key=value"),
    "metric option value": (["--metrics", "deletion", "--metric-set", "deletion.steps=0"], "steps must be"),
    "empty metrics": (["--metrics", ","], "--metrics is empty"),
    "unknown method": (["--methods", "salency"], "unknown method 'salency'. Did you mean saliency"),
    "unknown method option": (["--set", "steps=3"], "no chosen method has an option 'steps'"),
    "method twice": (["--methods", "saliency,grad_cam,saliency"], "--methods names saliency more than once"),
    "digits index": (["digits:test:999"], "INDEX in 0..358"),
    "digits form": (["digits:test"], "expected digits:SPLIT:INDEX"),
    "missing image": (["{tmp}/none.png"], "Image file not found"),
    "unknown class": (["--target", "10"], "unknown class 10: the model has classes 0..9"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_scorecard_bad_input_is_one_clear_line(case: str, digits_model, tmp_path: Path, capsys) -> None:
    extra, phrase = BAD[case]
    images = [] if extra[0].startswith(("digits:", "{tmp}")) else ["digits:test:0"]
    argv = ["scorecard", *images, "--model", "digits_cnn", "--methods", "saliency", "--metrics", "detail"]
    argv += [a.format(tmp=tmp_path) for a in extra] + ["--out", str(tmp_path / "o"), "--no-progress"]
    assert main(argv) == 2
    assert phrase in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()  # nothing written


def test_scorecard_help_lists_every_metric(capsys) -> None:
    assert main(["scorecard", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    known = text.split("known: ", 1)[1]
    for info in metrics():
        assert re.search(rf"\b{info.name}\b", known), info.name
    assert "--metric-set METRIC.KEY=VALUE" in text and "digits:SPLIT:INDEX" in text
    assert main(["scorecard", "digits:test:0"]) == 2  # --methods is required
    assert "the following arguments are required: --methods" in capsys.readouterr().err


# -- report -------------------------------------------------------------------------------------------------


def test_report_end_to_end_on_the_field_digits(digits_model, tmp_path: Path, capsys) -> None:
    argv = [
        "report", "--model", "digits_cnn", "--data", "digits:field", "--methods", "saliency",
        "--perturbation-methods", "occlusion", "--no-scorecard", "--out", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == f"report: {tmp_path / 'report.html'}\n"
    doc = _Parsed((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert doc.stack == []  # every tag closed
    images = doc.all("img")
    assert len(images) >= 6
    for img in images:
        with Image.open(io.BytesIO(_decoded(img["src"]))) as im:
            assert im.format == "PNG" and im.size == (int(img["width"]), int(img["height"]))
            im.load()  # the whole image decodes
    ev = cnnlens.evaluate(cnnlens.load_model("digits_cnn"), digits("field"), progress=False)
    overview = doc.sections["overview"]
    assert overview[overview.index("model") + 1] == "digits_cnn"
    assert f"{100 * ev.accuracy:.1f}%" in overview
    cells = doc.sections["results-per-class"]
    start = cells.index("class")
    table = cells[start + 6 : start + 6 + 6 * len(ev.classes)]
    for k, name in enumerate(ev.classes):
        row = table[6 * k : 6 * k + 6]
        assert row[0] == name and row[1] == f"{100 * ev.report[name]['recall']:.1f}%"
        assert row[5] == str(ev.report[name]["support"])
    assert ev.classes == [str(d) for d in range(10)]
    counts = {(t, p): len(ev.groups.confused(t, p)) for t in ev.classes for p in ev.classes if t != p}
    top = max(counts.values())
    t, p = min((k for k, v in counts.items() if v == top), key=lambda k: (int(k[0]), int(k[1])))
    text = " ".join(doc.text)
    assert f"{t} read as {p} ({top} case{'s' * (top != 1)})" in text
    assert doc.sections["where-it-fails"][2].startswith(f"{t} read as {p} ({top}): errors")
    assert "how-much-to-trust-the-explanations" not in doc.sections  # --no-scorecard
