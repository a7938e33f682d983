"""The command line: real files in, real files out, clear failures."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens.cli import main
from cnnlens.data import ImageFolder, sample_image

pytestmark = pytest.mark.usefixtures("one_thread")
MEAN, STD = (0.2, 0.3, 0.4), (0.5, 0.25, 2.0)


def _image(path: Path, seed: int, size: tuple[int, int] = (28, 20)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A 3-class TinyCNN as TorchScript and as a state dict, a photo, class files and image folders."""
    from _tiny_models import TinyCNN

    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    net = TinyCNN(num_classes=3).eval()
    with torch.no_grad():
        net.fc.weight.mul_(8)  # confident, distinct outputs so that preprocessing changes show
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; saving still works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(net).save(str(root / "tiny.pt"))
        torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))).save(
            str(root / "flat.pt")
        )
    torch.save(net.state_dict(), root / "tiny_state.pt")
    (root / "classes.txt").write_text("a\nb\n\nc\n")
    data = root / "data"
    for k, name in enumerate("abc"):
        (data / name).mkdir(parents=True)
        for j in range(3):
            _image(data / name / f"{j}.png", 10 * k + j)
    shutil.copytree(data, root / "messy")
    (root / "messy" / "a" / "notes.txt").write_text("not an image")
    (root / "messy" / "c" / "broken.png").write_bytes(b"\x89PNG not really")
    shutil.copytree(data, root / "broken_data")
    (root / "broken_data" / "c" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "broken.jpg").write_text("not an image")
    return SimpleNamespace(
        root=root, net=net, ts=root / "tiny.pt", state=root / "tiny_state.pt", classes=root / "classes.txt",
        img=_image(root / "photo.png", 99), data=data, messy=root / "messy",
    )  # fmt: skip


def _by_hand(path: Path, size: tuple[int, int], mean=MEAN, std=STD) -> torch.Tensor:
    """The input ``--input-size HxW --mean --std`` must give: a straight bilinear resize, /255, normalize."""
    im = Image.open(path).convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / np.float32(255)).permute(2, 0, 1)
    return ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)).unsqueeze(0)


# -- listings -----------------------------------------------------------------------------------------------


def test_methods_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--category", "gradient"]) == 0
    out = capsys.readouterr().out
    assert "integrated_gradients" in out and "deeplift_shap" in out and "grad_cam" not in out
    assert main(["methods", "--category", "layer"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [m.name for m in cnnlens.methods("layer")] and "layer_conductance" in names
    assert main(["methods", "--category", "neuron"]) == 0
    assert "neuron_conductance" in capsys.readouterr().out
    assert main(["methods", "saliency", "grad_cam"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["saliency", "grad_cam"]


def test_models_lists_the_bundled_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == cnnlens.models.bundled_models()


def test_metrics_lists_the_quality_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlens.quality import metric_table, metrics

    assert main(["metrics"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [m.name for m in metrics()] and len(names) >= 1
    assert main(["metrics", "--markdown"]) == 0
    assert capsys.readouterr().out == metric_table() + "\n"
    assert main(["metrics", names[-1]]) == 0
    assert capsys.readouterr().out.split()[0] == names[-1]


COMMANDS = [
    "methods", "metrics", "models", "explain", "scorecard", "evaluate", "inside", "report", "demo", "run", "concepts",
    "view",
]  # fmt: skip


def test_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("COMMAND ...", 1)[1].split("options:")[0]
    assert re.findall(r"^    (\w+)", listed, re.M) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert f"usage: cnnlens {command}" in capsys.readouterr().out


# -- explain ------------------------------------------------------------------------------------------------


def test_explain_writes_panels_maps_and_summary(tmp_path: Path, lite0: cnnlens.Classifier) -> None:
    image = tmp_path / "coffee.jpg"
    sample_image("coffee").save(image)
    out = tmp_path / "out"
    argv = ["explain", str(image), "--methods", "saliency,deeplift", "--set", "abs=False", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    item = summary["images"][0]
    assert item["explained_class"] == "espresso" == item["top3"][0]["class"]
    assert abs(item["methods"]["deeplift"]["completeness_delta"]) < 1e-3
    maps = np.load(out / "coffee.npz")
    x = lite0.preprocess([image])
    for method in ("saliency", "deeplift"):
        options = {"abs": False} if method == "saliency" else {}
        expected = cnnlens.explain(lite0, x, method, **options).attributions[0].numpy()
        np.testing.assert_allclose(maps[method], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert (maps["saliency"] < 0).any(), "--set abs=False did not reach saliency"
    assert (out / "coffee.png").stat().st_size > 10_000


@pytest.mark.parametrize("kind", ["torchscript", "state_dict"])
def test_explain_a_user_model_with_its_classes_and_preprocessing(tiny, tmp_path: Path, kind: str) -> None:
    model = ["--model", str(tiny.ts)] if kind == "torchscript" else ["--model", str(tiny.state)]
    model += ["--arch", "_tiny_models:TinyCNN", "--classes", str(tiny.classes)] if kind == "state_dict" else []
    model += ["--classes", "a,b,c"] if kind == "torchscript" else []
    prep = ["--input-size", "12x20", "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))]
    out = tmp_path / "o"
    argv = ["explain", str(tiny.img), "--methods", "saliency", "--set", "abs=False", "--out", str(out)]
    assert main([*argv, *model, *prep, "--no-progress"]) == 0
    x = _by_hand(tiny.img, (12, 20)).requires_grad_(True)
    logits = tiny.net(x)
    probs = torch.softmax(logits, 1)[0].detach()
    plain = torch.softmax(tiny.net(_by_hand(tiny.img, (12, 20), (0, 0, 0), (1, 1, 1))), 1)[0].detach()
    assert (probs - plain).abs().max() > 0.01, "the test image does not tell the normalizations apart"
    order = probs.argsort(descending=True).tolist()
    item = json.loads((out / "summary.json").read_text())["images"][0]
    assert [t["class"] for t in item["top3"]] == ["abc"[i] for i in order]
    assert [t["probability"] for t in item["top3"]] == pytest.approx(probs[order].tolist(), abs=1e-4)
    assert item["explained_class"] == "abc"[order[0]]
    (grad,) = torch.autograd.grad(logits[0, order[0]], x)
    saliency = np.load(out / "photo.npz")["saliency"]
    assert saliency.shape == (3, 12, 20)
    np.testing.assert_allclose(saliency, grad[0].numpy(), rtol=1e-5, atol=1e-7)


STATE_TINY = ["--arch", "_tiny_models:TinyCNN", "--input-size", "16", "--classes", "a,b,c", "--no-progress"]


def test_explain_at_a_layer_writes_layer_maps_and_ranked_channels(tiny, tmp_path: Path) -> None:
    from cnnlens.models import Classifier, Preprocessing
    from cnnlens.viz import ranked_channels

    out = tmp_path / "o"
    argv = ["explain", str(tiny.img), "--model", str(tiny.state), *STATE_TINY, "--layer", "features.2"]
    assert main([*argv, "--methods", "layer_gradient_x_activation,grad_cam", "--out", str(out)]) == 0
    item = json.loads((out / "summary.json").read_text())["images"][0]
    maps = np.load(out / "photo.npz")
    classifier = Classifier(tiny.net, Preprocessing((16, 16), None, (0, 0, 0), (1, 1, 1)), ["a", "b", "c"])
    x = classifier.preprocess([tiny.img])
    expected = cnnlens.explain(classifier, x, "layer_gradient_x_activation", layer="features.2").attributions[0]
    np.testing.assert_allclose(maps["layer_gradient_x_activation"], expected.numpy(), rtol=1e-5, atol=1e-7)
    assert maps["layer_gradient_x_activation"].shape == (8, 8, 8)  # the layer's output: 8 channels at 8x8
    row = item["methods"]["layer_gradient_x_activation"]
    assert row["layer"] == "features.2"
    assert [(c["channel"], c["attribution"]) for c in row["top_channels"]] == [
        (c, pytest.approx(v, abs=1e-6)) for c, v in ranked_channels(expected, 5)
    ]
    assert (out / "photo-layer_gradient_x_activation-channels.png").stat().st_size > 5_000
    assert not (out / "photo-grad_cam-channels.png").exists()  # a CAM's map is not layer-shaped


def test_explain_a_neuron(tiny, tmp_path: Path, capsys) -> None:
    from cnnlens.models import Classifier, Preprocessing

    out = tmp_path / "o"
    argv = ["explain", str(tiny.img), "--model", str(tiny.state), *STATE_TINY, "--layer", "features.2"]
    assert main([*argv, "--neuron", "5,3,4", "--target", "b", "--out", str(out)]) == 0  # --target: not for neurons
    assert "explained neuron (5, 3, 4)" in capsys.readouterr().out
    item = json.loads((out / "summary.json").read_text())["images"][0]
    assert item["explained_class"] is None
    assert set(item["methods"]) == {"neuron_gradient", "neuron_integrated_gradients"}
    assert item["methods"]["neuron_gradient"]["neuron"] == [5, 3, 4]
    classifier = Classifier(tiny.net, Preprocessing((16, 16), None, (0, 0, 0), (1, 1, 1)), ["a", "b", "c"])
    x = classifier.preprocess([tiny.img]).requires_grad_(True)
    (grad,) = torch.autograd.grad(tiny.net.features[:3](x)[0, 5, 3, 4], x)  # features.2: the conv, before its ReLU
    np.testing.assert_allclose(np.load(out / "photo.npz")["neuron_gradient"], grad[0].numpy(), rtol=1e-5, atol=1e-7)


def test_explain_target_by_name_and_resize_crop(tiny, tmp_path: Path) -> None:
    """``--resize 30 --input-size 16`` resizes the short side to 30, then center-crops 16x16."""
    out = tmp_path / "o"
    argv = ["explain", str(tiny.img), "--model", str(tiny.ts), "--classes", "a,b,c", "--input-size", "16"]
    argv += ["--resize", "30", "--methods", "saliency", "--target", "b", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    im = Image.open(tiny.img).convert("RGB").resize((42, 30), Image.Resampling.BILINEAR)  # 28x20 -> 42x30
    crop = np.asarray(im.crop((13, 7, 29, 23)), dtype=np.float32) / 255
    x = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).requires_grad_(True)
    (grad,) = torch.autograd.grad(tiny.net(x)[0, 1], x)
    item = json.loads((out / "summary.json").read_text())["images"][0]
    assert item["explained_class"] == "b" and item["explained_index"] == 1
    np.testing.assert_allclose(np.load(out / "photo.npz")["saliency"], grad[0].abs().numpy(), rtol=1e-5, atol=1e-7)


def test_preprocessing_options_change_only_what_they_name() -> None:
    """As ``--help`` says: ``--input-size`` alone drops the model's own resize-then-crop; ``--resize`` keeps one;
    ``--mean`` / ``--std`` leave the sizes (and the interpolation) alone; one value stands for all three channels."""
    from cnnlens.cli import build_parser
    from cnnlens.cli._model_flags import _preprocessing
    from cnnlens.models import Preprocessing

    own = Preprocessing((224, 224), 256, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), interpolation="bicubic")

    def changed(*options: str) -> Preprocessing:
        return _preprocessing(build_parser().parse_args(["inside", "x.png", *options]), own, "m")

    assert changed() is own
    assert changed("--input-size", "32x48") == Preprocessing((32, 48), None, own.mean, own.std, "bicubic")
    assert changed("--input-size", "40", "--resize", "50") == Preprocessing((40, 40), 50, own.mean, own.std, "bicubic")
    assert changed("--resize", "300") == Preprocessing((224, 224), 300, own.mean, own.std, "bicubic")
    assert changed("--mean", "0.1", "--std", "1,2,3") == Preprocessing(
        (224, 224), 256, (0.1,) * 3, (1, 2, 3), "bicubic"
    )


def test_arch_is_also_looked_up_in_the_current_folder(tiny, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "r1_user_nets.py").write_text("from _tiny_models import TinyCNN as Net\n")
    monkeypatch.chdir(tmp_path)
    path = list(sys.path)
    common = ["explain", str(tiny.img), "--input-size", "16", "--methods", "saliency", "--no-progress"]
    assert main([*common, "--model", str(tiny.state), "--arch", "r1_user_nets:Net", "--out", "a"]) == 0
    assert sys.path == path, "sys.path not restored"
    assert main([*common, "--model", str(tiny.ts), "--out", "b"]) == 0
    top = [json.loads(Path(d, "summary.json").read_text())["images"][0]["top3"] for d in "ab"]
    assert top[0] == top[1] and top[0][0]["probability"] > 0.34


# -- evaluate and inside ------------------------------------------------------------------------------------


def test_evaluate_and_inside_on_the_digits(tmp_path: Path, monkeypatch, capsys) -> None:
    from _digits_session import trained_digits
    from cnnlens.data import digits

    model = trained_digits()
    argv = ["evaluate", "--data", "digits:field", "--out", str(tmp_path / "ev"), "--no-progress"]
    assert main(argv) == 2  # the default model takes photos: the digits need the digits model, as the error says
    assert capsys.readouterr().err.rstrip().endswith("Pass --model digits_cnn")
    assert not (tmp_path / "ev").exists()
    assert main([*argv, "--model", "digits_cnn"]) == 0
    assert "no-information rate" in capsys.readouterr().out
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    expected = cnnlens.evaluate(model, digits("field"), progress=False)
    assert saved["samples"] == 360 and saved["accuracy"] == round(expected.accuracy, 6) < 0.65
    with open(tmp_path / "ev" / "metrics.csv", newline="") as f:
        rows = {row["class"]: row for row in csv.DictReader(f)}
    assert float(rows["3"]["recall"]) == pytest.approx(expected.report["3"]["recall"], abs=1e-6)
    assert float(rows["macro"]["f1"]) == pytest.approx(expected.averages["macro"]["f1"], abs=1e-6)
    assert (tmp_path / "ev" / "errors.png").exists() and (tmp_path / "ev" / "probabilities.csv").exists()
    inside = ["inside", "digits:field:7", "--layers", "features.0.0", "--out", str(tmp_path / "in")]
    assert main(inside) == 2 and "Pass --model digits_cnn" in capsys.readouterr().err
    assert main([*inside, "--model", "digits_cnn"]) == 0
    assert (tmp_path / "in" / "filters_features.0.0.png").exists()
    assert main(["inside", "digits:field:999", "--model", "digits_cnn", "--out", str(tmp_path / "x")]) == 2
    assert "INDEX in 0..359" in capsys.readouterr().err


def test_evaluate_a_user_model_on_a_folder(tiny, tmp_path: Path, capsys) -> None:
    model = ["--model", str(tiny.ts), "--input-size", "16", "--no-progress"]
    assert main(["evaluate", "--data", str(tiny.data), "--out", str(tmp_path / "a"), *model]) == 0
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    prep = {"input_size": (16, 16), "resize": None, "mean": (0, 0, 0), "std": (1, 1, 1)}
    expected = cnnlens.evaluate(cnnlens.load_model(tiny.ts, preprocessing=prep), ImageFolder(tiny.data), progress=False)
    assert saved["classes"] == ["a", "b", "c"] and saved["samples"] == 9
    assert saved["accuracy"] == round(expected.accuracy, 6)
    assert saved["confusion_matrix"] == expected.confusion_matrix.tolist()
    capsys.readouterr()
    # The positional form, on the same images plus a text file and a broken PNG, skipped and listed on request.
    argv = ["evaluate", str(tiny.messy), "--out", str(tmp_path / "b"), "--batch-size", "2", "--on-error", "report"]
    assert main([*argv, *model]) == 0
    captured = capsys.readouterr()
    assert f"cnnlens: warning: skipped 1 file(s) that are not used: {tiny.messy / 'a' / 'notes.txt'}" in captured.err
    assert f"skipped {tiny.messy / 'c' / 'broken.png'}: Could not decode" in captured.out
    messy = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert messy["samples"] == 9 and messy["skipped"][0]["id"] == str(tiny.messy / "c" / "broken.png")
    assert messy["confusion_matrix"] == saved["confusion_matrix"]


def test_inside_a_user_model(tiny, tmp_path: Path, capsys) -> None:
    from cnnlens.inside import layer_summary

    out = tmp_path / "in"
    argv = ["inside", str(tiny.img), "--model", str(tiny.state), "--arch", "_tiny_models:TinyCNN"]
    assert main([*argv, "--input-size", "16", "--layers", "features.0,features.2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [
        "filters_features.0.png", "filters_features.2.png", "maps_features.0.png", "maps_features.2.png",
    ]  # fmt: skip
    prep = {"input_size": (16, 16), "resize": None, "mean": 0, "std": 1}
    model = cnnlens.load_model(tiny.state, spec="_tiny_models:TinyCNN", preprocessing=prep)
    assert (out / "layers.txt").read_text() == str(layer_summary(model, model.preprocess(tiny.img))) + "\n"
    assert "features.2" in capsys.readouterr().out


# -- report and demo (their functions replaced by fakes that record the call) -----------------------------


@pytest.fixture
def fake_report(monkeypatch, tmp_path: Path) -> list[tuple[str, tuple, dict]]:
    calls: list[tuple[str, tuple, dict]] = []

    def model_report(*args, **kwargs):  # the command line holds the output folder and passes it on
        calls.append(("model_report", args, kwargs))
        return args[2].path / "report.html"

    def demo(*args, **kwargs):
        calls.append(("demo", args, kwargs))
        return kwargs["out"].path / "report.html"

    fake = ModuleType("cnnlens.report")
    fake.model_report, fake.demo = model_report, demo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cnnlens.report", fake)
    return calls


def test_report_passes_the_model_data_and_options(tiny, fake_report, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rep"
    argv = ["report", "--model", str(tiny.state), "--arch", "_tiny_models:TinyCNN", "--input-size", "16"]
    argv += ["--data", str(tiny.data), "--out", str(out)]
    argv += ["--methods", "saliency,grad_cam", "--no-scorecard", "--no-concepts", "--batch-size", "4", "--seed", "3"]
    argv += ["--title", "T"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.html'}"
    (name, (model, data, where), kwargs) = fake_report[0]
    assert name == "model_report" and where.path == out and where.info["command"] == "report"
    assert isinstance(model, cnnlens.Classifier) and model.preprocessing.input_size == (16, 16)
    assert isinstance(data, ImageFolder) and data.classes == ["a", "b", "c"] and len(data) == 9
    assert kwargs == {
        "methods": ["saliency", "grad_cam"], "perturbation_methods": None, "scorecard": False, "concepts": False,
        "batch_size": 4, "seed": 3, "progress": True, "title": "T",
    }  # fmt: skip


def test_report_compares_named_datasets(fake_report, monkeypatch, tmp_path: Path) -> None:
    from _digits_session import trained_digits

    trained_digits()
    argv = [
        "report",
        "--data",
        "clean=digits:test",
        "--data",
        "field=digits:field",
        "--no-progress",
        "--model",
        "digits_cnn",
    ]
    assert main([*argv, "--out", str(tmp_path), "--perturbation-methods", "occlusion"]) == 0
    (_, (model, data, _), kwargs) = fake_report[0]
    assert model.name == "digits_cnn" and list(data) == ["clean", "field"]
    assert len(data["field"]) == 360 and kwargs["perturbation_methods"] == ["occlusion"]
    assert kwargs["methods"] is None and kwargs["scorecard"] is True and kwargs["progress"] is False


def test_demo_calls_the_report_demo(fake_report, tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    [(name, args, kwargs)] = fake_report
    assert name == "demo" and args == () and kwargs["progress"] is True and kwargs["out"].path == tmp_path / "d"
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'd' / 'report.html'}"


def test_report_and_demo_match_the_report_signatures() -> None:
    import inspect

    import cnnlens.report as report  # the fakes above stand in for these: a renamed keyword must fail here

    inspect.signature(report.model_report).bind(
        None, None, None, methods=None, perturbation_methods=None, scorecard=True, concepts=True, batch_size=None, seed=0,
        progress=True, title=None,
    )  # fmt: skip
    inspect.signature(report.demo).bind(out="out/demo", progress=True)


# -- failures -----------------------------------------------------------------------------------------------

TS = ["--model", "{ts}", "--input-size", "16"]
EXPLAIN = ["explain", "{img}", "--methods", "saliency", "--out", "{tmp}/o", "--no-progress"]
STATE = ["--model", "{state}", "--input-size", "16", "--arch"]
BAD_INPUT = {
    "missing image": (["explain", "{tmp}/nowhere.png", *TS], "Image file not found: '{tmp}/nowhere.png'"),
    "unreadable image": (["explain", "{root}/broken.jpg", *TS], "Could not decode the image file '{root}/broken.jpg'"),
    "missing model file": ([*EXPLAIN, "--model", "{tmp}/nope.pt"], "Model file not found: '{tmp}/nope.pt'"),
    "unknown model": ([*EXPLAIN, "--model", "efficientnet_lite1"], "Did you mean 'efficientnet_lite0'"),
    "unknown method": ([*EXPLAIN, *TS, "--methods", "salency"], "unknown method 'salency'. Did you mean saliency"),
    "unknown option": ([*EXPLAIN, *TS, "--set", "steps=3"], "no chosen method has an option 'steps'"),
    "method twice": ([*EXPLAIN, *TS, "--methods", "saliency,deeplift,saliency"], "--methods names saliency more than once"),
    "empty methods": ([*EXPLAIN, *TS, "--methods", " , "], "--methods is empty; name one or more methods"),
    "unknown listed method": (["methods", "salency"], "unknown method 'salency'"),
    "unknown metric": (["metrics", "delition"], "unknown metric 'delition'. Did you mean deletion"),
    "unknown layer": (["inside", "{img}", *STATE, "_tiny_models:TinyCNN", "--layers", "features.9"], "No layer named 'features.9'"),
    "empty layers": (["inside", "{img}", *STATE, "_tiny_models:TinyCNN", "--layers", ","], "--layers is empty"),
    "rule on torchscript": ([*EXPLAIN, *TS, "--methods", "guided_backprop"],
                            "guided_backprop changes the backward pass of the model's activations, which it cannot reach inside TorchScript"),
    "cam on torchscript": ([*EXPLAIN, *TS, "--methods", "grad_cam", "--set", "layer=features.0"],
                           "is TorchScript code, which takes no forward hooks"),
    "inside torchscript": (["inside", "{img}", *TS], "cnnlens inside looks inside the model with forward hooks"),
    "report torchscript": (["report", "--data", "{root}/data", *TS], "TorchScript models do not support"),
    "unknown class": ([*EXPLAIN, *TS, "--classes", "a,b,c", "--target", "zebra"], "unknown class 'zebra'"),
    "class index": ([*EXPLAIN, *TS, "--target", "3"], "unknown class 3: the model has classes 0..2"),
    "class count": ([*EXPLAIN, *TS, "--classes", "a,b"], "returns 3 scores but has 2 class names; give --classes with one name per output."),
    "classes twice": ([*EXPLAIN, *TS, "--classes", "a,b,a"], "--classes names a more than once"),
    "classes file": ([*EXPLAIN, *TS, "--classes", "{tmp}/c.txt"], "--classes '{tmp}/c.txt': no such file"),
    "arch missing": ([*EXPLAIN, "--model", "{state}", "--input-size", "16"], "holds a state dict"),
    "arch class": ([*EXPLAIN, *STATE, "_tiny_models:NoSuchNet"], "has no attribute 'NoSuchNet'"),
    "arch module": ([*EXPLAIN, *STATE, "nosuchpkg.nets:Net"], "cannot import module 'nosuchpkg.nets'"),
    "arch weights": ([*EXPLAIN, *STATE, "_tiny_models:OtherCNN"], "does not match OtherCNN"),
    "arch form": ([*EXPLAIN, *STATE, "TinyCNN"], "--arch must look like 'package.module:ClassName'"),
    "mean values": ([*EXPLAIN, *TS, "--mean", "0.5,0.5"], "--mean expects 3 values (one per RGB channel)"),
    "mean text": ([*EXPLAIN, *TS, "--mean", "half"], "--mean expects numbers separated by commas"),
    "std zero": ([*EXPLAIN, *TS, "--std", "1,0,1"], "--std values must be positive"),
    "input size": ([*EXPLAIN, "--model", "{ts}", "--input-size", "12x"], "--input-size expects N or HxW"),
    "input size model": ([*EXPLAIN, "--model", "{root}/flat.pt", "--input-size", "16"], "fails on a (1, 3, 16, 16) input"),
    "no preprocessing": ([*EXPLAIN, "--model", "{ts}"], "carries no preprocessing: give --input-size"),
    "no cuda": ([*EXPLAIN, *TS, "--device", "cuda"], "--device cuda: CUDA is not available here"),
    "device name": ([*EXPLAIN, *TS, "--device", "gpu0"], "--device 'gpu0' is not a device name"),
    "non-image file": (["evaluate", "{root}/messy", *TS], "not an image file in a class folder, or a file beside the class folders: {root}/messy/a/notes.txt; remove it, or pass --on-error report"),
    "broken data image": (["evaluate", "{root}/broken_data", *TS], "broken.png"),
    "broken data hint": (["evaluate", "{root}/broken_data", *TS], "(or pass --on-error report to skip unreadable files)"),
    "unknown data": (["evaluate", "--data", "{tmp}/none", *TS], "Cannot open dataset '{tmp}/none'"),
    "data twice": (["evaluate", "{root}/data", "--data", "{root}/data", *TS], "give the data once"),
    "no data": (["evaluate", *TS], "no data: pass --data DATA"),
    "unnamed datasets": (["report", "--data", "digits:test", "--data", "digits:field"], "need a name each"),
    "out is a file": ([*EXPLAIN[:-3], "--out", "{img}", *TS], "{img} is a file, not a folder; choose another output folder (--out)"),
    "report method": (["report", "--data", "digits:test", "--methods", "gradcam"], "Did you mean grad_cam"),
    "report methods empty": (["report", "--data", "digits:test", "--methods", ","], "--methods is empty"),
    "report method twice": (["report", "--data", "digits:test", "--perturbation-methods", "rise,occlusion,rise"],
                            "--perturbation-methods names rise more than once"),
    "report perturbation method": (["report", "--data", "digits:test", "--perturbation-methods", "oclusion"],
                                   "unknown method 'oclusion'. Did you mean occlusion"),
    "dataset name twice": (["report", "--data", "a=digits:test", "--data", "a=digits:field"], "--data name(s) a used twice"),
    "neuron text": ([*EXPLAIN, *TS, "--neuron", "3,x"], "--neuron expects C or C,Y,X"),
    "layer without layer methods": ([*EXPLAIN, *TS, "--layer", "features.2"], "--layer: none of the chosen methods (saliency) works at a layer"),
    "neuron without neuron methods": ([*EXPLAIN, *TS, "--methods", "layer_gradient", "--neuron", "1"], "--neuron: none of the chosen methods"),
    "neuron method without neuron": ([*EXPLAIN, *TS, "--methods", "neuron_gradient"], "neuron_gradient explain(s) a neuron: give --neuron"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_with_one_clear_line(case: str, tiny, tmp_path: Path, capsys) -> None:
    argv, phrase = BAD_INPUT[case]
    fill = {"ts": tiny.ts, "state": tiny.state, "img": tiny.img, "root": tiny.root, "tmp": tmp_path}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.count("cnnlens: error:") == 1 and err.endswith("\n") and err.splitlines()[-1].startswith("cnnlens: error:")
    )
    assert phrase.format(**fill) in err.splitlines()[-1]
    assert not API_WORDS.search(err), f"the command line speaks API: {err}"


API_WORDS = re.compile(r"\b(on_error|spec|class_names|num_classes|batch_size|classes|class_map|preprocessing|"
                       r"input_shape|layer|target|retrain|cache_dir)=|Evaluation\.|\.skipped|\.ignored")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["explain"], "the following arguments are required: IMAGE"),
        (["evaluate", "--batch-size", "0"], "expected a number >= 1, got 0"),
        (["report"], "give --data DATA (or --store STORE"),
        (["methods", "--category", "magic"], "invalid choice: 'magic'"),
        (["explian", "x.png"], "invalid choice: 'explian'"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], phrase: str, capsys) -> None:
    assert main(argv) == 2
    assert phrase in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch, capsys) -> None:
    def boom() -> list[str]:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cnnlens.models, "bundled_models", boom)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err == "cnnlens: error: unexpected RuntimeError: boom second line (rerun with --debug for the traceback)\n"
    assert main(["models", "--debug"]) == 1
    err = capsys.readouterr().err
    assert (
        "Traceback" in err
        and "in boom" in err
        and err.endswith("cnnlens: error: unexpected RuntimeError: boom second line\n")
    )
    assert main(["--debug", "models"]) == 1 and "Traceback" in capsys.readouterr().err


def test_the_installed_entry_point(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "cnnlens"
    done = subprocess.run(
        [str(exe), "explain", str(tmp_path / "none.png")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == f"cnnlens: error: Image file not found: '{tmp_path / 'none.png'}'. Check the path and try again.\n"
    )
