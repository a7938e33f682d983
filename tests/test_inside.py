"""cnnlens.inside: feature maps equal a manual forward through the same layers, the model is left exactly as it
was, filters are the conv weights, top channels and the layer summary agree with direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _digits_session import trained_digits
from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.data import digits
from cnnlens.inside import conv_filters, feature_maps, layer_summary, top_channels


class Nested(nn.Module):
    """Blocks inside blocks, BatchNorm (train and eval differ), an in-place ReLU and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
            self.stage = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)), nn.ReLU())
            self.head = nn.Linear(4, 3)
        for bn in (self.stem[1], self.stage[0][1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.stage(h) + h
        return self.head(h.mean((2, 3)))


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _no_hooks(m: nn.Module) -> bool:
    return all(not s._forward_hooks and not s._forward_pre_hooks and not s._backward_hooks for s in m.modules())


def test_feature_maps_equal_a_manual_forward_and_model_is_unchanged() -> None:
    net = Nested().train()
    net.stem[0].weight.requires_grad_(False)
    before = _state(net)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    layers = ["stem.0", "stem.1", "stem.2", "stage.0", "stage.0.1", "stage"]
    maps = feature_maps(net, x, layers)
    # the manual forward, in eval mode on a copy, through the same layers
    ref = Nested().eval()
    ref.load_state_dict(before)
    with torch.no_grad():
        conv = ref.stem[0](x)
        bn = ref.stem[1](conv)
        stem = torch.relu(bn)
        inner = ref.stage[0][1](ref.stage[0][0](stem))
        stage = ref.stage[1](inner)
    expected = {"stem.0": conv, "stem.1": bn, "stem.2": stem, "stage.0": inner, "stage.0.1": inner, "stage": stage}
    assert list(maps) == layers
    for name in layers:
        assert torch.allclose(maps[name], expected[name], atol=1e-6), name
    # stem.2 is ReLU(inplace=True): it overwrites BatchNorm's output tensor; the captured BatchNorm map must
    # still hold the values from before the ReLU
    assert (maps["stem.1"] < 0).any() and (maps["stem.2"] >= 0).all()
    assert all(m.training for m in net.modules())
    assert not net.stem[0].weight.requires_grad and net.stem[0].bias.requires_grad
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert _no_hooks(net)


def test_hooks_are_removed_when_the_forward_pass_raises() -> None:
    class Boom(Nested):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.stem(x)
            raise RuntimeError("boom")

    net = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        feature_maps(net, torch.zeros(1, 3, 8, 8), ["stem.0"])
    assert _no_hooks(net) and all(m.training for m in net.modules())


def test_bad_layer_names_and_layers_that_do_not_run() -> None:
    net = Nested()
    with pytest.raises(CnnlensError, match=r"No layer named 'stem.O'.*Did you mean: .*stem\.0"):
        feature_maps(net, torch.zeros(1, 3, 8, 8), "stem.O")

    class Skips(Nested):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.stem(x).mean((2, 3)))

    with pytest.raises(CnnlensError, match="did not run"):
        feature_maps(Skips(), torch.zeros(1, 3, 8, 8), ["stage"])
    assert _no_hooks(net)


def test_reused_layer_warns_and_keeps_its_last_output() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.act(x) * 3)

    x = torch.linspace(-1, 1, 12).view(1, 3, 2, 2)
    with pytest.warns(CnnlensWarning, match="act \\(2 times\\)"):
        out = feature_maps(Twice(), x, "act")["act"]
    assert torch.allclose(out, torch.tanh(torch.tanh(x) * 3))


def test_conv_filters_are_a_copy_of_the_weights() -> None:
    net = Nested()
    w = conv_filters(net, "stage.0.0")
    assert torch.equal(w, net.stage[0][0].weight)
    w.zero_()
    assert net.stage[0][0].weight.abs().sum() > 0
    with pytest.raises(CnnlensError, match="not an nn.Conv2d"):
        conv_filters(net, "stem.1")


def test_top_channels_and_layer_summary_on_the_digits_model() -> None:
    model = trained_digits()
    images = [digits("test")[i][0] for i in (0, 1, 2)]
    top = top_channels(model, images, "features.1.2", n=4)
    acts = feature_maps(model, images, "features.1.2")["features.1.2"]
    means = acts.mean((2, 3))
    for row, m in zip(top, means, strict=True):
        channels = [c for c, _ in row]
        assert channels == torch.argsort(m, descending=True)[:4].tolist()
        assert [v for _, v in row] == pytest.approx(m[channels].tolist(), abs=1e-6)
    summary = layer_summary(model)
    rows = {r.name: r for r in summary}
    assert rows["features.1.2"].output_shape == (1, *acts.shape[1:]) == (1, 16, 16, 16)
    assert rows["classifier"].output_shape == (1, 10)
    assert rows["features.0.0"].params == 8 * 3 * 3 * 3 + 8 and rows["features.0"].params == 0
    assert summary.total_params == sum(p.numel() for p in model.module.parameters())
    assert "features.2.0" in str(summary) and "Conv2d" in str(summary)
    assert _no_hooks(model.module) and not model.module.training
    assert np.isclose(sum(r.trainable for r in summary), summary.total_params)


def test_save_inside_writes_summary_filters_and_maps(tmp_path) -> None:
    from cnnlens.inside import save_inside

    model = trained_digits()
    written = save_inside(model, digits("field")[0][0], tmp_path)
    convs = ["features.0.0", "features.1.0", "features.2.0"]
    assert sorted(written) == sorted(["summary"] + [f"maps_{c}" for c in convs] + [f"filters_{c}" for c in convs])
    assert all(p.stat().st_size > 0 for p in written.values())
    assert "total parameters: 6,474" in (tmp_path / "layers.txt").read_text()
    assert _no_hooks(model.module)
    one = save_inside(model, digits("field")[0][0], tmp_path / "one", layers="features.1.2")  # a name, not a list
    assert sorted(one) == ["maps_features.1.2", "summary"]


def test_spread_layers_keeps_the_first_and_the_last() -> None:
    from cnnlens.inside._save import spread_layers

    names = [f"c{i}" for i in range(10)]
    assert spread_layers(names, 4) == ["c0", "c3", "c6", "c9"]
    assert spread_layers(names, 1) == ["c9"] and spread_layers(names[:3], 6) == names[:3]
    with pytest.raises(CnnlensError, match="at least 1"):
        spread_layers(names, 0)


def test_save_inside_on_lite0_chooses_layers_for_meaning(lite0, tmp_path) -> None:
    """Lite0 has 50 convolutions (the old default wrote 98 figures): six spread over the depth, the most active
    channels of each, filters only where they have a picture (the first layer's in colour; no 1 x 1)."""
    from PIL import Image

    from cnnlens.data import sample_image
    from cnnlens.inside import save_inside

    convs = [n for n, m in lite0.module.named_modules() if isinstance(m, nn.Conv2d)]
    written = save_inside(lite0, sample_image("chelsea"), tmp_path, progress=False)
    maps = sorted(k for k in written if k.startswith("maps_"))
    filters = sorted(k for k in written if k.startswith("filters_"))
    assert len(convs) > 40 and len(maps) == 6 and f"maps_{convs[0]}" in maps and f"maps_{convs[-1]}" in maps
    shown = [k[len("filters_") :] for k in filters]
    assert convs[0] in shown
    assert all(tuple(lite0.module.get_submodule(n).kernel_size) != (1, 1) for n in shown if n != convs[0])
    skipped = [k[len("maps_") :] for k in maps if k[len("maps_") :] not in shown]
    assert skipped and "1 x 1 convolutions without a filter picture" in (tmp_path / "layers.txt").read_text()
    with Image.open(written[f"filters_{convs[0]}"]) as im:  # the first layer's filters drawn in colour
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert (np.abs(rgb[..., 0] - rgb[..., 1]) > 40).mean() > 0.01
    with Image.open(written[maps[0]]) as im:
        assert im.size[0] < 1400
