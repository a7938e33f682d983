"""Folder names that are not the model's classes: say which folders were found, which class names are close
(ImageNet synonyms too), and how to map them; the class map and the unlabelled mode then work. One default model
for every command, and no silent photo-into-digits-model or file-for-bundled-name mix-ups."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.cli import build_parser, main
from cnnlens.core.errors import cli_words
from cnnlens.data import CsvImages, ImageFolder
from cnnlens.data._classes import close_classes, imagenet_names, read_class_map

pytestmark = pytest.mark.usefixtures("one_thread")
PREP = {"input_size": (16, 16), "resize": None, "mean": 0, "std": 1}


def _png(path: Path, seed: int, size: tuple[int, int] = (20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _tree(root: Path, folders: dict[str, int]) -> Path:
    for k, (name, n) in enumerate(folders.items()):
        for j in range(n):
            _png(root / name / f"{j}.png", 10 * k + j)
    return root


# -- suggestions -------------------------------------------------------------------------------------------


def test_close_class_names_include_imagenet_synonyms() -> None:
    names = imagenet_names()
    cat = close_classes("cat", names)
    assert cat[:5] == ["tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "Madagascar cat"]
    assert "tabby" in cat  # only a synonym, "tabby, tabby cat", holds the word
    assert close_classes("cats", names) == cat
    assert close_classes("Golden_Retriever", names)[0] == "golden retriever"
    assert close_classes("coffee", names)[:2] == ["coffee mug", "coffeepot"]
    assert close_classes("Dogs", ["cat", "dog"]) == ["dog"]
    assert close_classes("xyzzy", ["cat", "dog"]) == []


def test_folders_that_are_no_class_are_listed_with_close_names_and_the_fix_works(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"cat": 2, "coffee": 2, "rocket": 1})
    names = imagenet_names()
    with pytest.raises(CnnlensError) as caught:
        ImageFolder(root, classes=names)
    text = str(caught.value)
    assert "none of the folders in" in text and "is one of the 1000 class names (tench, goldfish" in text
    assert "Found (images): cat (2), coffee (2), rocket (1)" in text
    assert "cat: tiger cat, Persian cat, Siamese cat, Egyptian cat, Madagascar cat, tabby;" in text
    assert "rocket: racket, cricket." in text  # spelled alike: listed, but not put in the example
    assert "class_map={'cat': 'tiger cat', 'coffee': 'coffee mug', 'rocket': 'CLASS'}" in text
    assert "model.predict(images, top_k=5)" in text and "--" not in text  # API words for API callers
    data = ImageFolder(root, classes=names, class_map={"cat": "tabby", "coffee": "espresso", "rocket": 744})
    by_folder = {Path(p).parent.name: label for p, label in zip(data.ids, data.labels, strict=True)}
    assert by_folder == {"cat": 281, "coffee": 967, "rocket": 744} and len(data) == 5
    assert data.class_map == {"cat": "tabby", "coffee": "espresso", "rocket": "projectile"}


def test_one_stray_folder_is_left_out_with_a_warning_or_raises(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"a": 1, "b": 1, "zebras": 2})
    with pytest.warns(CnnlensWarning, match=r"1 folder\(s\) in .* are not among the classes: zebras \(2 images\). "
                      r"Close class names: zebras: zebra. Map them with class_map=\{folder: class\}, or remove "
                      r"them; they are left out \(listed in .ignored\)"):  # fmt: skip
        data = ImageFolder(root, classes=["a", "b", "zebra"])
    assert data.labels == [0, 1] and data.ignored == [str(root / "zebras")]
    with pytest.raises(CnnlensError, match="on_error='report' leaves them out"):
        ImageFolder(root, classes=["a", "b", "zebra"], on_error="raise")
    fixed = ImageFolder(root, classes=["a", "b", "zebra"], on_error="raise", class_map={"zebras": "zebra"})
    assert fixed.labels == [0, 1, 2, 2] and fixed.ignored == []


@pytest.mark.parametrize(
    ("class_map", "phrase"),
    [
        ({"a": "bb"}, r"class_map a=bb: 'bb' is neither a class name nor a class index. Did you mean 'b'\?"),
        ({"a": 7}, r"class index 7 is out of range; the classes are 0..2"),
        ({"wolves": "a"}, r"class_map names wolves, which is not a folder in .* \(its folders: a, b\)"),
        (["a"], "class_map must map folder names to class names or indices"),
    ],
)
def test_bad_class_maps(tmp_path: Path, class_map, phrase: str) -> None:
    root = _tree(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(CnnlensError, match=phrase):
        ImageFolder(root, classes=["a", "b", "c"], class_map=class_map)


def test_class_map_text_and_files(tmp_path: Path) -> None:
    assert read_class_map("cat=tabby, mug = 504") == {"cat": "tabby", "mug": "504"}
    (tmp_path / "map.txt").write_text("# folder = class\ncat = tabby cat  # the striped ones\n\nmug=504\n")
    assert read_class_map(str(tmp_path / "map.txt")) == {"cat": "tabby cat", "mug": "504"}
    with pytest.raises(CnnlensError, match="expected folder=class .* got 'cat'; and there is no file 'cat'"):
        read_class_map("cat")
    with pytest.raises(CnnlensError, match="class_map maps 'cat' twice"):
        read_class_map("cat=a,cat=b")
    with cli_words(), pytest.raises(CnnlensError, match="--class-map maps 'cat' twice"):
        read_class_map("cat=a,cat=b")


def test_csv_labels_that_are_no_class(tmp_path: Path) -> None:
    for k in range(4):
        _png(tmp_path / f"{k}.png", k)
    (tmp_path / "list.csv").write_text("0.png,kitty\n1.png,kitty\n2.png,pup\n3.png,pup\n")
    with pytest.raises(CnnlensError, match=r"none of the labels in .* Found \(images\): kitty \(2\), pup \(2\)"):
        CsvImages(tmp_path / "list.csv", classes=["cat", "dog"])
    data = CsvImages(tmp_path / "list.csv", classes=["cat", "dog"], class_map={"kitty": "cat", "pup": 1})
    assert data.labels == [0, 0, 1, 1]


# -- the command line --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A 3-class TinyCNN (state dict) whose classes are not the folder names cat/, coffee/, rocket/."""
    from _tiny_models import TinyCNN

    root = tmp_path_factory.mktemp("classmap")
    torch.manual_seed(0)
    net = TinyCNN(num_classes=3).eval()
    with torch.no_grad():
        net.fc.weight.mul_(8)
    torch.save(net.state_dict(), root / "net.pt")
    classes = ["tabby cat", "coffee mug", "space shuttle"]
    model = ["--model", str(root / "net.pt"), "--arch", "_tiny_models:TinyCNN", "--classes", ",".join(classes)]
    data = _tree(root / "data", {"cat": 3, "coffee": 3, "rocket": 3})
    renamed = root / "renamed"  # the same images in folders named after the classes: the truth to compare with
    for folder, cls in zip(("cat", "coffee", "rocket"), classes, strict=True):
        shutil.copytree(data / folder, renamed / cls)
    return SimpleNamespace(root=root, data=data, renamed=renamed, model=[*model, "--input-size", "16"], net=net)


API_WORDS = re.compile(r"\b(on_error|spec|class_names|num_classes|batch_size|classes|class_map|preprocessing)=|"
                       r"Evaluation\.|\.skipped|\.ignored|\.empty_classes|model\.predict")  # fmt: skip


def test_the_cli_names_the_folders_and_the_fixes_work(photos, tmp_path: Path, capsys) -> None:
    argv = ["evaluate", str(photos.data), *photos.model, "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "Found (images): cat (3), coffee (3), rocket (3)" in err
    assert "Close class names: cat: tabby cat; coffee: coffee mug; rocket: none" in err
    assert "--class-map 'cat=tabby cat,coffee=coffee mug,rocket=CLASS'" in err
    assert f"cnnlens evaluate {photos.data} --unlabelled" in err  # the command that has the flag, from any command
    assert not API_WORDS.search(err), err
    assert not (tmp_path / "x").exists()
    # fix 1: the class map the message suggests (rocket by index), inline or as a file
    assert main([*argv, "--out", str(tmp_path / "a"), "--class-map", "cat=tabby cat,coffee=coffee mug,rocket=2"]) == 0
    (tmp_path / "map.txt").write_text("cat = tabby cat\ncoffee = coffee mug\nrocket = space shuttle\n")
    assert main([*argv, "--out", str(tmp_path / "b"), "--class-map", str(tmp_path / "map.txt")]) == 0
    truth = ["evaluate", str(photos.renamed), *photos.model, "--no-progress", "--out", str(tmp_path / "t")]
    assert main(truth) == 0
    saved = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b", "t")]
    for key in ("classes", "confusion_matrix", "accuracy", "samples"):
        assert saved[0][key] == saved[1][key] == saved[2][key], key
    assert saved[0]["samples"] == 9
    # fix 2: no labels, each image's top classes
    out = tmp_path / "u"
    assert main([*argv, "--out", str(out), "--unlabelled"]) == 0
    printed = capsys.readouterr().out
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    model = cnnlens.load_model(photos.net, preprocessing=PREP, class_names=["tabby cat", "coffee mug", "space shuttle"])
    assert len(rows) == 9
    for row in rows:
        (_, name, p), *_ = model.predict([row["id"]], top_k=3)[0]
        assert row["folder"] == Path(row["id"]).parent.name and row["top1"] == name
        assert float(row["p_top1"]) == pytest.approx(p, abs=1e-6)
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["images"] == 9 and sum(f["images"] for f in summary["folders"].values()) == 9
    first = max(summary["folders"]["cat"]["top1"].items(), key=lambda kv: kv[1])
    assert f"cat: 3 image(s); most often first: {first[0]} {first[1]}" in printed


def test_the_cli_on_a_stray_folder(photos, tmp_path: Path, capsys) -> None:
    data = tmp_path / "d"
    shutil.copytree(photos.renamed, data)
    shutil.copytree(photos.data / "rocket", data / "rockets")
    argv = ["evaluate", str(data), *photos.model, "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "1 folder(s) in" in err and "rockets (3 images)" in err and "--class-map folder=class" in err
    assert "--on-error report leaves them out" in err and not API_WORDS.search(err)
    assert main([*argv, "--out", str(tmp_path / "a"), "--on-error", "report"]) == 0
    err = capsys.readouterr().err
    assert "they are left out" in err and not API_WORDS.search(err)
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["samples"] == 9
    assert main([*argv, "--out", str(tmp_path / "b"), "--class-map", "rockets=space shuttle"]) == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["report"]["space shuttle"]["support"] == 6


# -- one default model -------------------------------------------------------------------------------------


def test_every_command_has_one_default_model_stated_in_its_help() -> None:
    from cnnlens.cli._model_flags import DEFAULT_MODEL

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    takers = {name: p for name, p in sub.choices.items() if any("--model" in a.option_strings for a in p._actions)}
    assert sorted(takers) == ["concepts", "evaluate", "explain", "inside", "report", "run", "scorecard", "view"]
    for parser in takers.values():
        action = next(a for a in parser._actions if "--model" in a.option_strings)
        assert action.default is None and f"default {DEFAULT_MODEL}, the ImageNet photo classifier" in action.help
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"default `{DEFAULT_MODEL}`" in readme.split("## Command line", 1)[1]


def test_a_photo_runs_on_the_photo_model_by_default(tmp_path: Path, capsys) -> None:
    from cnnlens.data import sample_image

    sample_image("chelsea").save(tmp_path / "cat.jpg")
    out = tmp_path / "o"
    assert main(["inside", str(tmp_path / "cat.jpg"), "--layers", "_conv_stem", "--out", str(out)]) == 0
    assert json.loads((out / "cnnlens-run.json").read_text())["model"] == "efficientnet_lite0"
    assert "warning" not in capsys.readouterr().err


def test_a_photo_into_the_digits_model_is_never_silent(tmp_path: Path, monkeypatch, capsys) -> None:
    photo = _png(tmp_path / "photo.png", 0, (300, 200))
    argv = ["inside", str(photo), "--model", "digits_cnn", "--layers", "features.0.0", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    assert (
        "cnnlens: warning: 1 of 1 image(s) are far from the 32x32 input of digits_cnn (e.g. "
        f"{photo}: 300x200 pixels); is it the right model? (--model; efficientnet_lite0 takes photos, digits_cnn "
        "32x32 digits)"
    ) in capsys.readouterr().err


def test_a_bundled_name_wins_over_a_file_and_dot_slash_loads_the_file(tmp_path: Path, monkeypatch) -> None:
    from _tiny_models import TinyCNN

    monkeypatch.chdir(tmp_path)
    torch.save(TinyCNN().state_dict(), tmp_path / "efficientnet_lite0")  # a file named like a bundled model
    with pytest.warns(CnnlensWarning, match=r"'efficientnet_lite0' is a bundled model; the file of that name in the "
                      r"current folder is not used; to load the file, pass './efficientnet_lite0'"):  # fmt: skip
        bundled = cnnlens.load_model("efficientnet_lite0")
    assert bundled.num_classes == 1000
    mine = cnnlens.load_model("./efficientnet_lite0", spec="_tiny_models:TinyCNN")  # the fix the warning gives
    assert mine.num_classes == 3
    with cli_words(), pytest.warns(CnnlensWarning, match="to load the file, write --model ./efficientnet_lite0"):
        cnnlens.load_model("efficientnet_lite0")
    _png(tmp_path / "x.png", 1)
    argv = ["explain", "x.png", "--methods", "saliency", "--input-size", "16", "--no-progress", "--out", "o"]
    assert main([*argv, "--model", "./efficientnet_lite0", "--arch", "_tiny_models:TinyCNN"]) == 0
    top3 = json.loads(Path("o/summary.json").read_text())["images"][0]["top3"]
    assert {t["class"] for t in top3} <= {"0", "1", "2"}  # the file's 3 classes, not ImageNet's
    assert np.load("o/x.npz")["saliency"].shape == (3, 16, 16)


def test_run_names_the_command_that_lists_unlabelled_images(photos, tmp_path: Path, capsys) -> None:
    """`cnnlens run` has no --unlabelled: its advice names the evaluate command, and that command works."""
    argv = ["run", "--data", str(photos.data), *photos.model, "--methods", "saliency", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    advice = f"cnnlens evaluate {photos.data} --unlabelled"
    assert advice in err
    args = [*advice.split()[1:], *photos.model, "--no-progress", "--out", str(tmp_path / "u")]
    assert main(args) == 0 and (tmp_path / "u" / "predictions.csv").exists()


def test_unlabelled_mode_reports_what_it_does_not_use(photos, tmp_path: Path, capsys) -> None:
    data = tmp_path / "photos"
    shutil.copytree(photos.data / "cat", data)
    (data / "notes.txt").write_text("shot on a sunny day")
    argv = ["evaluate", str(data), *photos.model, "--unlabelled", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    assert f"not an image file: {data / 'notes.txt'}; remove it, or pass --on-error report" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "u"), "--on-error", "report"]) == 0
    assert "skipped 1 file(s) that are not used" in capsys.readouterr().err
    summary = json.loads((tmp_path / "u" / "predictions.json").read_text())
    assert summary["images"] == 3 and list(summary["folders"]) == ["."]
    assert main([*argv, "--out", str(tmp_path / "m"), "--class-map", "cat=0"]) == 2
    assert "--class-map and --unlabelled exclude each other" in capsys.readouterr().err


def test_a_model_without_class_names_on_fewer_folders(photos, tmp_path: Path, capsys) -> None:
    """3 outputs, 2 class folders and no --classes: the error says to give --classes; with them it works."""
    data = tmp_path / "two"
    for name in ("tabby cat", "coffee mug"):
        shutil.copytree(photos.renamed / name, data / name)
    model = [a for a in photos.model if a != "--classes" and a != "tabby cat,coffee mug,space shuttle"]
    argv = ["evaluate", str(data), *model, "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "The model returns 3 scores per image but there are 2 classes; give --classes with the model's" in err
    assert not API_WORDS.search(err)
    assert main([*argv, "--out", str(tmp_path / "a"), "--classes", "tabby cat,coffee mug,space shuttle"]) == 0
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["samples"] == 6 and saved["report"]["space shuttle"]["support"] == 0


def test_resize_smaller_than_the_input_and_its_fix(photos, tmp_path: Path, capsys) -> None:
    argv = ["inside", str(photos.data / "cat" / "0.png"), *photos.model, "--out", str(tmp_path / "o")]
    assert main([*argv, "--resize", "8"]) == 2
    err = capsys.readouterr().err
    assert (
        "--resize (8) must be >= the largest side of --input-size (16, 16) so that the center crop fits; or leave "
        "out --resize." in err
    )
    assert main(argv) == 0
