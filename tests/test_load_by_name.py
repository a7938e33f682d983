"""Models loaded by name: ``torchvision:NAME`` and ``timm:NAME``, offline. Random weights are saved where the
library's weights would lie (a temporary torch hub / Hugging Face cache) or at a path, and must come back exactly,
with the preprocessing and class names of the weights' metadata."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.models import Preprocessing

pytestmark = pytest.mark.usefixtures("one_thread")
tv = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
RESNET18_FILE = "resnet18-f37072fd.pth"  # the name torchvision downloads ResNet18_Weights.IMAGENET1K_V1 to


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder (``$TORCH_HOME/hub``) and Hugging Face cache; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over TORCH_HOME
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _resnet18(seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return tv.models.resnet18().eval()


# ---- torchvision -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"])
def test_torchvision_weights_by_name_from_the_hub_folder(hub: Path, weights: str) -> None:
    ref = _resnet18()
    torch.save(ref.state_dict(), hub / RESNET18_FILE)
    clf = cnnlens.load_model("torchvision:resnet18", weights=weights)
    assert _same_weights(clf.module, ref) and not clf.module.training
    assert clf.preprocessing == Preprocessing((224, 224), 256, *IMAGENET, "bilinear")  # torchvision's docs
    assert clf.class_names == list(tv.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    assert clf.class_names[:2] == ["tench", "goldfish"] and len(clf.class_names) == 1000
    assert clf.info["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert clf.info["weights_file"] == str(hub / RESNET18_FILE)
    assert "get_state_dict" not in tv.models.ResNet18_Weights.__dict__  # torchvision's enum left as it was
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(clf.module(x), ref(x))


def test_torchvision_missing_weights_name_the_file_and_never_download(hub: Path, monkeypatch) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError("cnnlens tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(CnnlensError) as err:
        cnnlens.load_model("torchvision:resnet18")
    text = str(err.value)
    assert str(hub / RESNET18_FILE) in text
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in text and "never downloads" in text


def test_torchvision_preprocessing_of_other_weights() -> None:
    from cnnlens.models._zoo import _tv_preprocessing

    w = tv.models.ResNet50_Weights.IMAGENET1K_V2  # torchvision's docs: resize 232, crop 224, bilinear
    assert _tv_preprocessing(w, "r") == Preprocessing((224, 224), 232, *IMAGENET, "bilinear")
    w = tv.models.EfficientNet_B1_Weights.IMAGENET1K_V1  # resize 256, crop 240, bicubic
    assert _tv_preprocessing(w, "e") == Preprocessing((240, 240), 256, *IMAGENET, "bicubic")
    w = tv.models.EfficientNet_B1_Weights.IMAGENET1K_V2  # resize 255, crop 240, bilinear
    assert _tv_preprocessing(w, "e") == Preprocessing((240, 240), 255, *IMAGENET, "bilinear")


def test_torchvision_weights_from_a_path(hub: Path, tmp_path: Path) -> None:
    ref = _resnet18(seed=2)
    own = tmp_path / "mine.pt"
    torch.save({"epoch": 3, "state_dict": ref.state_dict()}, own)  # a checkpoint holding the state dict
    clf = cnnlens.load_model("torchvision:resnet18", weights=own)
    assert _same_weights(clf.module, ref)
    assert clf.info["weights"] == "own" and clf.class_names[0] == "tench"
    assert clf.preprocessing == Preprocessing((224, 224), 256, *IMAGENET, "bilinear")
    official = tmp_path / RESNET18_FILE  # torchvision's own file under its own name: those weights
    torch.save(ref.state_dict(), official)
    assert cnnlens.load_model("torchvision:resnet18", weights=str(official)).info["weights"].endswith("IMAGENET1K_V1")


def test_torchvision_own_head(tmp_path: Path) -> None:
    torch.manual_seed(3)
    ref = tv.models.resnet18(num_classes=10).eval()
    torch.save(ref.state_dict(), tmp_path / "ten.pt")
    clf = cnnlens.load_model("torchvision:resnet18", weights=tmp_path / "ten.pt", num_classes=10)
    assert _same_weights(clf.module, ref) and clf.class_names is None and clf.num_classes == 10
    with pytest.raises(CnnlensError, match=r"fc.weight \(file \(10, 512\), model \(1000, 512\)\).*num_classes"):
        cnnlens.load_model("torchvision:resnet18", weights=tmp_path / "ten.pt")
    names = [f"c{i}" for i in range(10)]
    assert (
        cnnlens.load_model(
            "torchvision:resnet18", weights=tmp_path / "ten.pt", num_classes=10, class_names=names
        ).class_names
        == names
    )


def test_torchvision_wrong_file_in_the_cache(hub: Path) -> None:
    torch.save(tv.models.resnet34().state_dict(), hub / RESNET18_FILE)
    with pytest.raises(CnnlensError, match="does not hold the weights of torchvision:resnet18"):
        cnnlens.load_model("torchvision:resnet18")
    assert "get_state_dict" not in tv.models.ResNet18_Weights.__dict__


def test_torchvision_random_weights_warn(hub: Path) -> None:
    with pytest.warns(CnnlensWarning, match="random weights"):
        clf = cnnlens.load_model("torchvision:resnet18", weights=None)
    assert clf.info["weights"] is None and clf.num_classes == 1000


@pytest.mark.parametrize(
    ("name", "weights", "message"),
    [
        ("torchvision:resnt18", "DEFAULT", "Did you mean torchvision:resnet18"),
        ("torchvision:resnet18", "IMAGENET1K_V9", "neither a file nor a weights name.*IMAGENET1K_V1"),
        ("timm:resnet18dd", "DEFAULT", "Did you mean timm:resnet18d"),
        ("timm:resnet18d", "xx_in1k", "no pretrained weights 'xx_in1k'; its tags: ra2_in1k"),
        ("efficientnet_lite0", "IMAGENET1K_V1", "weights= is for models named torchvision:NAME or timm:NAME"),
    ],
)
def test_bad_names(hub: Path, name: str, weights: str, message: str) -> None:
    with pytest.raises(CnnlensError, match=message):
        cnnlens.load_model(name, weights=weights)


@pytest.mark.parametrize(("lib", "module"), [("timm", "timm"), ("torchvision", "torchvision.models")])
def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch, lib: str, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(CnnlensError, match=rf'pip install "cnnlens\[{lib}\]"'):
        cnnlens.load_model(f"{lib}:resnet18", weights=None)


# ---- timm --------------------------------------------------------------------------------------------------------


def _timm(name: str, seed: int = 4) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).eval()


@pytest.mark.parametrize(
    ("name", "weights"), [("resnet18d", "DEFAULT"), ("resnet18d", "ra2_in1k"), ("resnet18d.ra2_in1k", "DEFAULT")]
)
def test_timm_weights_by_tag_from_the_hub_folder(hub: Path, name: str, weights: str) -> None:
    ref = _timm("resnet18d")
    safetensors_torch.save_file(ref.state_dict(), hub / "resnet18d.ra2_in1k.safetensors")
    clf = cnnlens.load_model(f"timm:{name}", weights=weights)
    assert _same_weights(clf.module, ref) and not clf.module.training
    # timm's pretrained config: 224 px, crop_pct 0.875 -> resize to floor(224 / 0.875) = 256, bicubic
    assert clf.preprocessing == Preprocessing((224, 224), 256, *IMAGENET, "bicubic")
    info = timm.data.ImageNetInfo("imagenet-1k")
    assert clf.class_names == [info.index_to_description(i) for i in range(1000)]
    assert clf.class_names[0] == "tench, Tinca tinca"
    assert clf.info["weights"] == "resnet18d.ra2_in1k"


def test_timm_weights_under_their_url_name(hub: Path) -> None:
    ref = _timm("resnet18d", seed=5)
    torch.save(ref.state_dict(), hub / "resnet18d_ra2-48a79e06.pth")  # the file name of timm's URL for them
    assert _same_weights(cnnlens.load_model("timm:resnet18d").module, ref)


def test_timm_weights_from_the_hugging_face_cache(hub: Path, tmp_path: Path) -> None:
    ref = _timm("convnext_nano")
    repo = tmp_path / "hf" / "models--timm--convnext_nano.in12k_ft_in1k"  # the hub cache layout timm fills
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    safetensors_torch.save_file(ref.state_dict(), repo / "snapshots" / "0123abc" / "model.safetensors")
    clf = cnnlens.load_model("timm:convnext_nano")
    assert _same_weights(clf.module, ref)
    assert clf.preprocessing == Preprocessing((224, 224), 235, *IMAGENET, "bicubic")  # crop_pct 0.95


def test_timm_missing_weights_name_the_file(hub: Path) -> None:
    with pytest.raises(CnnlensError) as err:
        cnnlens.load_model("timm:convnext_nano")
    text = str(err.value)
    assert str(hub / "convnext_nano.in12k_ft_in1k.safetensors") in text
    assert "https://huggingface.co/timm/convnext_nano.in12k_ft_in1k" in text and "never downloads" in text


def test_timm_weights_from_a_path(tmp_path: Path) -> None:
    ref = _timm("convnext_nano", seed=6)
    torch.save(ref.state_dict(), tmp_path / "mine.pth")
    clf = cnnlens.load_model("timm:convnext_nano", weights=tmp_path / "mine.pth")
    assert _same_weights(clf.module, ref) and clf.info["weights"] == "own" and len(clf.class_names) == 1000
    with pytest.warns(CnnlensWarning, match="random weights"):
        assert cnnlens.load_model("timm:convnext_nano", weights=None).info["weights"] is None


# ---- the command line --------------------------------------------------------------------------------------------


def test_cli_explain_torchvision_model_with_a_weights_file(tmp_path: Path, monkeypatch, capsys) -> None:
    from cnnlens.cli import main

    ref = _resnet18(seed=7)
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "cat.png")
    monkeypatch.chdir(tmp_path)
    argv = ["explain", "cat.png", "--model", "torchvision:resnet18", "--weights", "r18.pt", "--methods", "saliency"]
    assert main([*argv, "--no-progress", "--out", "o"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["model"] == "torchvision:resnet18"
    clf = cnnlens.load_model("torchvision:resnet18", weights=tmp_path / "r18.pt")
    expected = clf.predict(str(tmp_path / "cat.png"), top_k=3)[0]
    assert [t["class"] for t in summary["images"][0]["top3"]] == [name for _, name, _ in expected]
    assert np.load(tmp_path / "o" / "cat.npz")["saliency"].shape == (3, 224, 224)  # per channel, at the input size
    capsys.readouterr()
    assert main([*argv[:4], "--weights", "none", "--methods", "saliency", "--no-progress", "--out", "r"]) == 0
    assert "random weights (--weights none)" in capsys.readouterr().err
    assert main([*argv[:2], "--weights", "r18.pt", "--out", "p"]) == 2
    assert "--weights is for models named torchvision:NAME" in capsys.readouterr().err


def test_input_size_without_mean_std_warns() -> None:
    from cnnlens.cli._model_flags import _preprocessing

    def args(**given: str | None) -> argparse.Namespace:
        return argparse.Namespace(**{"input_size": "16", "resize": None, "mean": None, "std": None, **given})

    with pytest.warns(CnnlensWarning, match="--input-size without --mean and --std"):
        assert _preprocessing(args(), None, "m") == Preprocessing((16, 16), None, (0, 0, 0), (1, 1, 1))
    with pytest.warns(CnnlensWarning, match="--input-size without --mean and --std"):
        _preprocessing(args(mean="0.5"), None, "m")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _preprocessing(args(mean="0", std="1"), None, "m").std == (1.0, 1.0, 1.0)
        own = Preprocessing((8, 8), None, (0.5,) * 3, (0.25,) * 3)
        assert _preprocessing(args(), own, "m").mean == (0.5,) * 3  # the model's own mean/std are kept: no warning
