"""Tests for cnnlens.models: preprocessing, loading, predicting and finding layers."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlens.core.errors import CnnlensError
from cnnlens.data import sample_image
from cnnlens.models import (
    Classifier,
    Preprocessing,
    bundled_models,
    get_layer,
    last_conv_layer,
    layer_names,
    load_model,
)

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return importlib.import_module("_tiny_models")


def _no_hooks(module: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


# -- bundled model -----------------------------------------------------------------------------


def test_bundled_lite0_metadata(lite0: Classifier) -> None:
    assert bundled_models() == ["efficientnet_lite0", "digits_cnn"]
    assert lite0.name == "efficientnet_lite0"
    assert lite0.num_classes == 1000
    assert len(lite0.class_names) == 1000
    assert len(set(lite0.class_names)) == 1000  # short names were made unique
    assert lite0.class_name(281) == "tabby"
    assert lite0.class_name(967) == "espresso"
    assert lite0.class_name(639) == "maillot, tank suit"  # a short name that collided
    assert lite0.class_name(5000) == "5000"
    assert not any(m.training for m in lite0.module.modules())
    assert lite0.device == torch.device("cpu")
    assert lite0.to("cpu") is lite0


def test_lite0_predicts_cat_and_espresso(lite0: Classifier) -> None:
    cat, coffee = lite0.predict([sample_image("chelsea"), sample_image("coffee")], top_k=3)
    assert len(cat) == 3
    assert any(281 <= idx <= 285 for idx, _, _ in cat), cat
    assert coffee[0][0] == 967 and coffee[0][1] == "espresso"
    # 0.957 with the TF-Lite (p - 127) / 128 normalization; ImageNet mean/std would give 0.84
    assert coffee[0][2] > 0.93
    probs = [p for _, _, p in cat]
    assert probs == sorted(probs, reverse=True)


def test_each_load_returns_a_fresh_module(lite0: Classifier) -> None:
    other = load_model("efficientnet_lite0")
    assert other.module is not lite0.module
    before = lite0.module._fc.bias.detach().clone()
    with torch.no_grad():
        other.module._fc.bias.add_(1.0)
    assert torch.equal(lite0.module._fc.bias, before)
    assert torch.equal(load_model("efficientnet_lite0").module._fc.bias, before)


def test_bundled_overrides_and_errors() -> None:
    names = [f"c{i}" for i in range(1000)]
    prep = {"input_size": (160, 160), "resize": None, **IMAGENET}
    clf = load_model("efficientnet_lite0", class_names=names, preprocessing=prep)
    assert clf.class_name(3) == "c3"
    assert clf.preprocessing == Preprocessing((160, 160), None, **IMAGENET)
    with pytest.raises(CnnlensError, match="1000 classes"):
        load_model("efficientnet_lite0", num_classes=10)
    with pytest.raises(CnnlensError, match="Bundled models: efficientnet_lite0"):
        load_model("resnet50")
    with pytest.raises(CnnlensError, match="Did you mean 'efficientnet_lite0'"):
        load_model("efficientnet-lite0")


# -- preprocessing -----------------------------------------------------------------------------


def test_constant_colour_normalizes_exactly() -> None:
    prep = Preprocessing(input_size=(224, 224), resize=256, **IMAGENET)
    colour = (200, 100, 50)
    im = Image.new("RGB", (400, 300), colour)  # W x H
    x = prep(im)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    for c in range(3):
        expected = (colour[c] / 255 - IMAGENET["mean"][c]) / IMAGENET["std"][c]
        assert torch.allclose(x[0, c], torch.full((224, 224), expected), atol=1e-6, rtol=0)


def test_center_crop_position_without_resize() -> None:
    h, w = 256, 400  # shorter side already 256: no resampling, only the crop
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    a = np.stack([xs % 256, xs // 256, ys], axis=-1).astype(np.uint8)
    prep = Preprocessing(input_size=(224, 224), resize=256, mean=(0, 0, 0), std=(1, 1, 1))
    pix = np.rint(prep(a)[0].numpy() * 255).astype(int)
    cols = pix[0] + 256 * pix[1]
    rows = pix[2]
    left, top = (400 - 224) // 2, (256 - 224) // 2  # 88, 16
    np.testing.assert_array_equal(cols[0], np.arange(left, left + 224))
    np.testing.assert_array_equal(rows[:, 0], np.arange(top, top + 224))


@pytest.mark.parametrize("landscape", [True, False])
def test_resize_keeps_aspect_ratio_then_crops_center(landscape: bool) -> None:
    # 300 x 600 picture, dark first third (200 px): resized to 256 x 512 the edge sits at 170.7;
    # the crop starts at 144, so the edge lands at 26.7 (squashing to 256 x 256 would put it at 69.3).
    a = np.full((300, 600, 3), 255, dtype=np.uint8)
    a[:, :200] = 0
    if not landscape:
        a = a.transpose(1, 0, 2).copy()
    prep = Preprocessing(input_size=(224, 224), resize=256, mean=(0, 0, 0), std=(1, 1, 1))
    x = prep(a)[0, 0]
    profile = x[0] if landscape else x[:, 0]
    assert torch.all(profile[:25] == 0) and torch.all(profile[29:] == 1)
    assert torch.all(x == x[:1, :]) if landscape else torch.all(x == x[:, :1])


def test_resize_none_goes_straight_to_input_size() -> None:
    a = np.full((300, 600, 3), 255, dtype=np.uint8)
    a[:, :200] = 0  # edge at 50 * 200 / 600 = 16.7 after squashing to 50 columns
    prep = Preprocessing(input_size=(100, 50), resize=None, mean=(0, 0, 0), std=(1, 1, 1))
    x = prep(a)
    assert x.shape == (1, 3, 100, 50)
    assert torch.all(x[0, :, :, :15] == 0) and torch.all(x[0, :, :, 19:] == 1)


def test_pixel_value_and_round_trips() -> None:
    prep = Preprocessing(input_size=(8, 8), resize=None, **IMAGENET)
    mean, std = torch.tensor(IMAGENET["mean"]), torch.tensor(IMAGENET["std"])
    assert torch.allclose(prep.pixel_value((0, 0, 0)), -mean / std)
    assert torch.allclose(prep.pixel_value((1.0, 1.0, 1.0)), (1 - mean) / std)
    with pytest.raises(CnnlensError, match="255"):
        prep.pixel_value((255, 0, 0))
    t = torch.rand(2, 3, 8, 8)
    assert torch.allclose(prep.denormalize(prep.normalize(t)), t, atol=1e-6)
    pixels = prep.to_pixels(prep.normalize(t))
    assert pixels.shape == (2, 8, 8, 3) and isinstance(pixels, np.ndarray)
    np.testing.assert_allclose(pixels, t.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    assert prep.to_pixels(torch.full((3, 8, 8), 100.0)).max() == 1.0  # clipped for display
    with pytest.raises(CnnlensError, match=r"\(B, 3, H, W\)"):
        prep.normalize(torch.zeros(2, 4, 8, 8))


def test_mixed_inputs_give_identical_rows(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    path = tmp_path / "pic.png"
    Image.fromarray(a).save(path)
    prep = Preprocessing(input_size=(64, 64), resize=72, **IMAGENET)
    x = prep([str(path), path, Image.fromarray(a), a, a.astype(np.float32) / 255])
    assert x.shape == (5, 3, 64, 64)
    for row in x[1:]:
        assert torch.equal(row, x[0])
    assert not torch.equal(x[0], prep(np.ascontiguousarray(a[::-1]))[0])
    assert torch.equal(prep(np.stack([a, a])), x[:2])  # a 4-D array is a batch


def test_preprocessing_validation() -> None:
    with pytest.raises(CnnlensError, match="resize"):
        Preprocessing(input_size=(224, 224), resize=200, **IMAGENET)
    with pytest.raises(CnnlensError, match="interpolation"):
        Preprocessing(input_size=(224, 224), resize=None, interpolation="cubic", **IMAGENET)
    with pytest.raises(CnnlensError, match="positive"):
        Preprocessing(input_size=(224, 224), resize=None, mean=(0, 0, 0), std=(1, 0, 1))
    prep = Preprocessing(input_size=[32, 32], resize=None, mean=[0.5] * 3, std=[0.5] * 3)
    assert prep.input_size == (32, 32) and prep.mean == (0.5, 0.5, 0.5)
    with pytest.raises(CnnlensError, match="not tensors"):
        prep(torch.zeros(1, 3, 32, 32))
    with pytest.raises(CnnlensError, match="valid fields"):
        load_model(nn.Linear(2, 2), preprocessing={"size": 3})


# -- loading files -----------------------------------------------------------------------------


def test_module_and_tensor_predict(tiny: ModuleType) -> None:
    torch.manual_seed(0)
    net = tiny.TinyCNN().train()
    clf = load_model(net, class_names=["a", "b", "c"])
    assert not net.training
    with pytest.raises(CnnlensError, match="has no preprocessing"):
        clf.preprocess(np.zeros((8, 8, 3), dtype=np.uint8))
    x = torch.randn(2, 3, 16, 16)
    out = clf.predict(x, top_k=10)
    assert [len(r) for r in out] == [3, 3]
    assert sum(p for _, _, p in out[0]) == pytest.approx(1.0, abs=1e-5)
    expected = torch.softmax(net(x), 1)[1].max().item()
    assert out[1][0][2] == pytest.approx(expected, abs=1e-6)
    assert {name for _, name, _ in out[0]} == {"a", "b", "c"}
    (single,) = clf.predict(x[1], top_k=1)  # a (C, H, W) tensor is one image
    assert single[0][:2] == out[1][0][:2] and single[0][2] == pytest.approx(out[1][0][2], abs=1e-6)
    for bad in (torch.randn(16, 16), torch.zeros(2, 3, 16, 16, dtype=torch.uint8)):
        with pytest.raises(CnnlensError, match=r"predict takes a preprocessed \(B, C, H, W\) or \(C, H, W\) float"):
            clf.predict(bad)
    assert load_model(tiny.TinyCNN(num_classes=7)).num_classes == 7


def test_predict_runs_in_eval_mode_and_restores_flags(tiny: ModuleType) -> None:
    torch.manual_seed(0)
    net = tiny.PooledConvHead().train()  # BatchNorm and Dropout: train mode would change the outputs
    net.body[1].eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in net.named_modules()}
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 3, 6, 6)
    reference = copy.deepcopy(net).eval()
    with torch.no_grad():
        expected = torch.softmax(reference(x), 1)
    prep = Preprocessing(input_size=(6, 6), resize=None, mean=(0.5,) * 3, std=(0.25,) * 3)
    out = Classifier(net, preprocessing=prep).predict(x, top_k=5)
    got = torch.zeros(3, 5)
    for r, row in enumerate(out):
        for i, _, p in row:
            got[r, i] = p
    torch.testing.assert_close(got, expected)  # eval mode: same as the model in eval mode, every time
    assert Classifier(net, preprocessing=prep).num_classes == 5  # found by a forward pass on zeros
    with pytest.raises(CnnlensError, match="5 scores but has 2 class names"):
        Classifier(net, class_names=["a", "b"]).predict(x)
    with pytest.raises(CnnlensError, match=r"must return \(batch, classes\) logits; it returned \(3,\)"):
        Classifier(net).check_logits(torch.zeros(3))
    with pytest.raises(CnnlensError, match="it returned tuple"):
        Classifier(net).check_logits((torch.zeros(3, 5),))
    assert {name: m.training for name, m in net.named_modules()} == before
    assert all(torch.equal(v, stats[k]) for k, v in net.state_dict().items())  # running stats untouched
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_file_round_trip(tiny: ModuleType, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = tiny.TinyCNN().eval()
    path = tmp_path / "tiny_script.pt"
    torch.jit.script(net).save(str(path))
    prep = {"input_size": (16, 16), "resize": None, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    clf = load_model(path, preprocessing=prep)
    assert clf.name == "tiny_script"
    assert isinstance(clf.preprocessing, Preprocessing)
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(clf(x), net(x))
    assert clf.num_classes == 3
    assert len(clf.predict(np.zeros((20, 30, 3), dtype=np.uint8))[0]) == 3
    with pytest.raises(CnnlensError, match="needs no spec"):
        load_model(path, spec="_tiny_models:TinyCNN")


def test_state_dict_with_spec(tiny: ModuleType, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = tiny.TinyCNN(num_classes=5).eval()
    path = tmp_path / "weights.pth"
    torch.save(net.state_dict(), path)
    clf = load_model(path, spec="_tiny_models:TinyCNN", num_classes=5)
    assert clf.module is not net and not clf.module.training
    x = torch.randn(2, 3, 12, 12)
    assert torch.equal(clf(x), net(x))
    wrapped = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, wrapped)
    assert torch.equal(load_model(wrapped, spec="_tiny_models:TinyCNN", num_classes=5)(x), net(x))


def test_state_dict_errors(tiny: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(tiny.TinyCNN().state_dict(), path)
    with pytest.raises(CnnlensError, match="spec='package.module:ClassName'"):
        load_model(path)
    with pytest.raises(CnnlensError, match="missing keys: conv1.weight") as info:
        load_model(path, spec="_tiny_models:OtherCNN")
    assert "unexpected keys: features.0.weight" in str(info.value)
    with pytest.raises(CnnlensError, match=r"wrong shapes: fc.weight \(file \(3, 8\), model \(5, 8\)\)"):
        load_model(path, spec="_tiny_models:TinyCNN", num_classes=5)
    with pytest.raises(CnnlensError, match="cannot import module 'no_such_module'"):
        load_model(path, spec="no_such_module:Net")
    with pytest.raises(CnnlensError, match="no attribute 'Nope'"):
        load_model(path, spec="_tiny_models:Nope")
    with pytest.raises(CnnlensError, match="must look like"):
        load_model(path, spec="_tiny_models.TinyCNN")
    pickled = tmp_path / "whole_model.pt"
    torch.save(tiny.TinyCNN(), pickled)
    with pytest.raises(CnnlensError, match="weights_only"):
        load_model(pickled, spec="_tiny_models:TinyCNN")


def test_missing_and_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "model.pt"
    with pytest.raises(CnnlensError, match="Model file not found") as info:
        load_model(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(CnnlensError, match="directory"):
        load_model(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(CnnlensError, match="junk.pt"):
        load_model(junk, spec="_tiny_models:TinyCNN")
    with pytest.raises(CnnlensError, match="neither a bundled model nor an existing file"):
        load_model("my_model")


# -- layers ------------------------------------------------------------------------------------


def test_get_layer_by_name_and_module(lite0: Classifier) -> None:
    conv = get_layer(lite0, "_blocks.3._depthwise_conv")
    assert isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels
    assert conv is lite0.module._blocks[3]._depthwise_conv
    assert get_layer(lite0.module, "_blocks.3") is lite0.module._blocks[3]
    assert get_layer(lite0, conv) is conv
    with pytest.raises(CnnlensError, match="not part of this model"):
        get_layer(lite0, nn.Conv2d(1, 1, 1))
    names = layer_names(lite0)
    assert "" not in names and "_conv_head" in names and "_blocks.15._project_conv" in names
    assert len(names) == len(list(lite0.module.modules())) - 1


def test_unknown_layer_suggests_close_names(lite0: Classifier) -> None:
    with pytest.raises(CnnlensError, match=r"Did you mean: _conv_head\b") as info:
        get_layer(lite0, "_conv_haed")
    assert "layer_names" in str(info.value)
    with pytest.raises(CnnlensError, match="_blocks.3._depthwise_conv"):
        get_layer(lite0, "_blocks.3._depthwise_cnv")


def test_last_conv_layer_lite0_restores_state(lite0: Classifier) -> None:
    module = lite0.module
    module.train()
    module._blocks[2].eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in module.named_modules()}
    running = module._bn1.running_mean.clone()
    try:
        assert last_conv_layer(lite0) == "_conv_head"
        assert last_conv_layer(module, input_shape=(1, 3, 96, 96)) == "_conv_head"
        assert {name: m.training for name, m in module.named_modules()} == before
        assert torch.equal(module._bn1.running_mean, running)  # ran in eval mode
        assert _no_hooks(module)
    finally:
        module.eval()


def test_unknown_layer_of_a_small_model_lists_its_layers(tiny: ModuleType) -> None:
    with pytest.raises(CnnlensError, match=r"No layer named 'conv9' in TinyCNN\. Its layers: features, features\.0, "):
        get_layer(tiny.TinyCNN(), "conv9")


def test_last_conv_layer_skips_1x1_outputs(tiny: ModuleType) -> None:
    net = tiny.PooledConvHead()
    assert last_conv_layer(net, input_shape=(2, 3, 10, 10)) == "body.2"
    assert net.training and _no_hooks(net)
    assert last_conv_layer(tiny.TinyCNN()) == "features.2"
    with pytest.raises(CnnlensError, match="no nn.Conv2d"):
        last_conv_layer(tiny.NoConv())
    with pytest.raises(CnnlensError, match="input_shape"):
        last_conv_layer(net, input_shape=(1, 4, 10, 10))
    assert _no_hooks(net) and net.training


def test_python_takes_the_model_description_the_command_line_takes() -> None:
    """``--input-size 64 --mean ... --std ...`` in Python: an int size, no resize."""
    from cnnlens import load_model

    clf = load_model(
        nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        preprocessing={"input_size": 64, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)},
    )
    assert clf.preprocessing.input_size == (64, 64) and clf.preprocessing.resize is None
    x = clf.preprocess([np.full((80, 100, 3), 255, np.uint8)])
    assert x.shape == (1, 3, 64, 64) and torch.allclose(x, torch.full_like(x, 2.0))  # (1 - 0.5) / 0.25
