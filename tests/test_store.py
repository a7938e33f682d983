"""Dataset runs into a store: exactly once after kill -9 at any moment, equal to an uninterrupted run, the same on
Ray, other settings refused, broken images as failed rows, and the report of a store equal to the direct one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import cnnlens
from _digits_session import trained_digits
from _store_child import IMAGES, SETTINGS, subset
from cnnlens.core.files import TMP_PREFIX
from cnnlens.store import open_store

pytestmark = pytest.mark.usefixtures("one_thread")
CHILD = Path(__file__).with_name("_store_child.py")
MOMENTS = ("manifest", "maps", "table")


@pytest.fixture(scope="module")
def model() -> cnnlens.Classifier:
    return trained_digits()


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory) -> Path:
    """The store of one uninterrupted run of the test settings."""
    out = tmp_path_factory.mktemp("store") / "reference"
    summary = cnnlens.run(model, subset(), out=out, progress=False, **SETTINGS)
    assert (summary.images, summary.already, summary.computed) == (IMAGES, 0, IMAGES)
    return out


def _arrays(root: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(root / "maps", mode="r")
    return {f"{m}/{k}": np.asarray(group[m][k][:]) for m in group.group_keys() for k in group[m].array_keys()}


def assert_same_store(a: Path, b: Path) -> None:
    """Same manifest settings, table rows, scores and maps (timings aside; passes up to the default layer's probe
    pass, which a process runs once per model and shares among the images of the shard it ran in)."""
    sa, sb = open_store(a), open_store(b)
    manifest = {k: v for k, v in sa.manifest.items() if k not in ("created", "run")}
    assert manifest == {k: v for k, v in sb.manifest.items() if k not in ("created", "run")}
    assert sa.images.equals(sb.images)
    cost = ["seconds", "passes"]
    assert sa.explanations.drop_columns(cost).equals(sb.explanations.drop_columns(cost))
    passes_a, passes_b = (np.asarray(s.explanations["passes"]) for s in (sa, sb))
    assert np.all(np.abs(passes_a - passes_b) <= 1.0)
    maps_a, maps_b = _arrays(a), _arrays(b)
    assert sorted(maps_a) == sorted(maps_b) and len(maps_a) == 2 * len(SETTINGS["methods"])
    for key in maps_a:
        assert np.array_equal(maps_a[key], maps_b[key], equal_nan=True), key


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.startswith(TMP_PREFIX) or p.name.endswith(".partial")]


def test_reference_store_holds_every_image_once_with_its_numbers(model, reference: Path) -> None:
    store = open_store(reference)
    data = subset()
    assert store.complete and store.ids == data.ids and not store.failed
    t = store.images.to_pydict()
    x = model.preprocess(list(data.images))
    with torch.no_grad():
        probs = torch.softmax(model.module(x).double(), 1).numpy()
    np.testing.assert_allclose([p[0] for p in t["top_probabilities"]], probs.max(1), rtol=1e-6)
    assert t["predicted"] == probs.argmax(1).tolist() and t["label"] == data.labels.tolist()
    pairs = list(zip(*(store.explanations.column(c).to_pylist() for c in ("id", "method", "explains")), strict=True))
    assert len(pairs) == len(set(pairs))  # each explanation once
    errors = int((probs.argmax(1) != data.labels).sum())
    assert errors > 3 and len(pairs) == len(SETTINGS["methods"]) * (IMAGES + errors)
    # a stored map is the method's map (float16 of map / max|map|); Grad-CAM at its layer's 8 x 8 resolution
    first = data.ids[0]
    truth = cnnlens.explain(model, x[:8], "saliency", target=torch.tensor(probs.argmax(1)[:8])).attributions[0]
    np.testing.assert_allclose(store.map(first, "saliency"), truth.numpy(), rtol=1e-3, atol=1e-3 * float(truth.max()))
    cam = cnnlens.explain(model, x[:8], "grad_cam", target=torch.tensor(probs.argmax(1)[:8]))
    assert store.map(first, "grad_cam").shape == (1, 8, 8)
    scale = float(cam.attributions[0].abs().max())
    np.testing.assert_allclose(store.map(first, "grad_cam", size="input"), cam.attributions[0], atol=2e-3 * scale)
    wrong = next(i for i in range(IMAGES) if probs[i].argmax() != data.labels[i])
    row = store.explanation(data.ids[wrong], "grad_cam", "label")
    assert row["target"] == data.labels[wrong] and row["explains"] == "label"


def _kill(moment: str, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(cnnlens.__file__).parents[1]), str(CHILD.parent)])}
    return subprocess.Popen(
        [sys.executable, str(CHILD), moment, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_killed_at_three_moments_then_resumed_equals_an_uninterrupted_run(model, reference: Path, tmp_path) -> None:
    children = {m: _kill(m, tmp_path / m) for m in MOMENTS}  # all three at once: the machine has two cores
    for moment, child in children.items():
        _, err = child.communicate(timeout=300)
        assert child.returncode == -9, f"{moment}: {err.decode()[-2000:]}"
    # what each kill left: a half-written file, never read as a finished shard
    assert not (tmp_path / "manifest" / "manifest.json").exists() and leftovers(tmp_path / "manifest")
    maps = open_store(tmp_path / "maps")
    assert maps.done == 16 and any(p.name.endswith(".partial") for p in (tmp_path / "maps").rglob("*"))
    table = open_store(tmp_path / "table")
    assert table.done == 24 and (tmp_path / "table" / "explanations" / "part-000003.parquet").exists()
    assert set(table.explanations.column("position").to_pylist()) == set(range(24))  # shard 3's rows not read
    with pytest.raises(cnnlens.CnnlensError, match="holds 24 of 40 images; finish the run first"):
        table.report(tmp_path / "report", model=model, data=subset())
    for moment in MOMENTS:
        summary = cnnlens.run(model, subset(), out=tmp_path / moment, progress=False, **SETTINGS)
        assert summary.already + summary.computed == IMAGES and summary.failed == 0
        assert leftovers(tmp_path / moment) == []
        assert_same_store(reference, tmp_path / moment)


def test_ray_backend_writes_the_same_store(model, reference: Path, tmp_path) -> None:
    pytest.importorskip("ray")
    summary = cnnlens.run(model, subset(), out=tmp_path / "ray", progress=False, backend="ray", workers=2, **SETTINGS)
    assert summary.backend == "ray" and summary.computed == IMAGES
    assert_same_store(reference, tmp_path / "ray")


def test_other_settings_are_refused_and_another_folder_works(model, reference: Path, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    again = cnnlens.run(model, subset(), out=copy, progress=False, **SETTINGS)
    assert (again.already, again.computed, again.passes) == (IMAGES, 0, 0)  # finished: nothing to do
    other = {**SETTINGS, "methods": ["saliency"], "seed": 4}
    with pytest.raises(cnnlens.CnnlensError, match=r"other settings.*methods\.grad_cam.*seed: store 3, this run 4"):
        cnnlens.run(model, subset(), out=copy, progress=False, **other)
    assert_same_store(reference, copy)  # untouched
    small = cnnlens.run(model, subset(), out=tmp_path / "other", progress=False, **{**other, "metrics": None})
    assert small.computed == IMAGES and open_store(tmp_path / "other").methods == ["saliency"]
    (tmp_path / "not-a-store").mkdir()
    (tmp_path / "not-a-store" / "notes.txt").write_text("mine")
    with pytest.raises(cnnlens.CnnlensError, match="holds no cnnlens store"):
        cnnlens.run(model, subset(), out=tmp_path / "not-a-store", methods=["saliency"], progress=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Digits in class folders (two per class) and one file that is not an image."""
    from PIL import Image

    from cnnlens.data import digits

    root = tmp_path_factory.mktemp("folder")
    data = digits("field")
    for c in data.classes:
        (root / c).mkdir()
        for i in np.flatnonzero(data.labels == int(c))[:2]:
            Image.fromarray(data.images[i]).save(root / c / f"{data.ids[i].replace('/', '_')}.png")
    (root / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_cli_run_records_a_broken_image_as_a_failed_row_and_report_store_equals_the_direct_report(
    model, folder: Path, tmp_path, monkeypatch, capsys
) -> None:
    from cnnlens.cli import main
    from cnnlens.report import model_report

    store = tmp_path / "store"
    args = ["run", "--model", "digits_cnn", "--data", str(folder), "--methods", "saliency,integrated_gradients", "--set", "steps=8",
            "--metrics", "deletion", "--metric-set", "deletion.steps=4", "--explain", "both", "--shard-size", "4",
            "--out", str(store), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "21 images" in capsys.readouterr().out
    s = open_store(store)
    ((broken, reason),) = s.failed
    assert broken.endswith("broken.png") and "Could not decode" in reason
    assert broken not in s.explanations.column("id").to_pylist()
    with pytest.raises(cnnlens.CnnlensError, match="failed"):
        s.map(broken, "saliency")
    assert s.model().name == "digits_cnn" and s.dataset().ids == [i for i in s.ids]  # reopened from the manifest
    from cnnlens.models import Classifier, DigitsCNN

    with pytest.raises(cnnlens.CnnlensError, match="weights differ"):
        s.model(Classifier(DigitsCNN(), model.preprocessing, model.class_names))
    options = {"max_groups": 1, "per_group": 2, "progress": False}
    s.report(tmp_path / "from_store", **options)  # model and data reopened from the manifest
    methods = {"saliency": {}, "integrated_gradients": {"steps": 8}}
    with pytest.warns(cnnlens.CnnlensWarning, match="unreadable"):
        model_report(
            model, str(folder), tmp_path / "direct", methods=methods, perturbation_methods={},
            metrics={"deletion": {"steps": 4}}, **options,
        )  # fmt: skip
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("from_store", "direct"))
    assert a["data"] == b["data"] and a["groups"] == b["groups"] and a["notes"] == b["notes"]
    assert a["explanations"]["images"] == b["explanations"]["images"] and len(a["explanations"]["images"]) == 4
    for pair, value in b["explanations"]["agreement"].items():  # float16 maps: at most a pixel of the top 10% moves
        assert abs(a["explanations"]["agreement"][pair] - value) <= 0.02
    for method, info in b["explanations"]["methods"].items():
        assert a["explanations"]["methods"][method]["passes"] == info["passes"]
    rows = {r["method"]: r for r in a["scorecard"]["rows"]}
    for r in b["scorecard"]["rows"]:
        for column in ("deletion", "passes_per_image"):
            assert rows[r["method"]][column] == pytest.approx(r[column], rel=1e-6)
    assert main(["report", "--store", str(store), "--methods", "saliency"]) == 2
    assert "leave out --methods" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"explain": "target"}, "explain must be one of predicted, label, both"),
        ({"backend": "spark"}, "backend must be 'local' or 'ray'"),
        ({"address": "auto"}, "give it with backend='ray'"),
        ({"top_k": 0}, "top_k must be a positive int or None"),
        ({"shard_size": 2.5}, "shard_size must be a positive int"),
        ({"methods": {"deeplift": {"baseline": torch.zeros(1, 3, 32, 32)}}}, "must be plain values"),
        ({"metrics": ["deletion", "deletion"]}, "listed twice|more than once"),
    ],
)
def test_run_refuses_bad_options_before_any_work(model, tmp_path, options: dict, phrase: str) -> None:
    settings = {"methods": ["saliency"], **options}
    with pytest.raises(cnnlens.CnnlensError, match=phrase):
        cnnlens.run(model, subset(), out=tmp_path / "s", progress=False, **settings)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--metric-set", "deletion.steps=3"], "--metric-set sets options of the --metrics chosen; give --metrics too"),
        (["--address", "auto"], "--address names a Ray cluster; give it with --backend ray"),
        (["--workers", "2"], "--workers sizes the Ray actor pool; give it with --backend ray"),
        (["--set", "stepz=3"], "no chosen method has an option 'stepz'"),
    ],
)
def test_cli_run_usage_errors_name_the_flag(argv: list[str], phrase: str, tmp_path, capsys) -> None:
    from cnnlens.cli import main

    base = ["run", "--data", "digits:field", "--methods", "saliency", "--out", str(tmp_path / "s")]
    assert main(base + argv) == 2
    assert phrase in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_downsample_and_top_k_keep_less(model, tmp_path) -> None:
    data = subset()
    cnnlens.run(model, data, ["saliency"], out=tmp_path / "s", downsample=4, top_k=3, shard_size=8, progress=False)
    store = open_store(tmp_path / "s")
    x = model.preprocess(list(data.images[:8]))
    truth = torch.nn.functional.avg_pool2d(cnnlens.explain(model, x, "saliency").attributions, 4)
    got = store.maps("saliency", store.ids[:8])
    assert got.shape == (8, 3, 8, 8) and store.resolution("saliency")["resolution"] == "downsampled"
    np.testing.assert_allclose(got, truth.numpy(), atol=1e-3 * float(truth.abs().max()))
    with torch.no_grad():
        probs = torch.softmax(model.module(x).double(), 1)
    top = probs.topk(3)
    row = store.images.to_pylist()[:8]
    assert [r["top_classes"] for r in row] == top.indices.tolist()
    np.testing.assert_allclose([r["top_probabilities"] for r in row], top.values.numpy(), rtol=1e-6)
    with pytest.raises(cnnlens.CnnlensError, match="keeps the top 3 of 10 class probabilities.*top_k=10"):
        store.evaluation()


def test_attributions_to_a_layer_are_kept_as_the_method_gives_them(model, tmp_path) -> None:
    data = subset()
    methods = {"layer_lrp": {"layer": "features.1"}}
    cnnlens.run(model, data, methods, out=tmp_path / "s", shard_size=8, progress=False)
    store = open_store(tmp_path / "s")
    truth = cnnlens.explain(model, model.preprocess(list(data.images[:8])), "layer_lrp", layer="features.1")
    got = store.maps("layer_lrp", store.ids[:8])
    assert got.shape == tuple(truth.attributions.shape) == (8, 16, 8, 8)
    assert store.resolution("layer_lrp")["resolution"] == "layer_attribution"
    scale = truth.attributions.flatten(1).abs().amax(1)[:, None, None, None]
    assert float(((torch.from_numpy(got) - truth.attributions).abs() / scale).max()) <= 1e-3  # float16 of map/max
