"""Eigen-CAM's sign (issue 26 case 4): the SVD fixes the principal direction only up to sign, and the maps on the
bundled EfficientNet-Lite0 came out entirely negative (the report painted the cat blue, "against").

The convention now: the direction points along the layer's mean activation vector (the map's mean is positive;
where it is 0, the larger-magnitude side is positive), stated in ``info["sign"]``; the map is class-agnostic and
drawn as a one-sign weight, never as evidence for or against a class. Truth: the three photos (not negative,
positive correlation with Grad-CAM), invariance to the sign the SVD returns and to negated activations, and
pytorch-grad-cam's ``EigenCAM`` where the two definitions agree (activations whose channels have spatial mean 0:
pytorch-grad-cam centres them, the paper does not).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.attribution.cam.eigen import first_component
from cnnlens.data import sample_image

T = torch.Tensor


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_lite0_maps_are_not_negative_and_agree_with_grad_cam(lite0, name: str) -> None:
    x = lite0.preprocess([sample_image(name)])
    eigen = cnnlens.explain(lite0, x, "eigen_cam", progress=False)
    grad = cnnlens.explain(lite0, x, "grad_cam", progress=False)
    a, g = eigen.attributions.flatten(), grad.attributions.flatten()
    assert float(a.max()) > 0 and float(a.mean()) > 0  # on main: max -47.6 (chelsea)
    assert float(torch.corrcoef(torch.stack([a, g]))[0, 1]) > 0.5  # on main: -0.66, -0.87, -0.75
    assert eigen.info["class_evidence"] is False and "mean activation vector" in eigen.info["sign"]


def _acts(seed: int, centred: bool = False) -> T:
    a = torch.randn(3, 5, 6, 7, generator=torch.Generator().manual_seed(seed)) + 0.7
    return a - a.mean((2, 3), keepdim=True) if centred else a


def test_the_svd_sign_and_negated_activations_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    acts = torch.cat([_acts(0), _acts(1, centred=True)])
    ours = first_component(acts)
    assert torch.allclose(first_component(-acts), ours, atol=1e-5)
    svd = torch.linalg.svd

    def flipped(m: T, full_matrices: bool = True) -> tuple[T, T, T]:
        u, s, vh = svd(m, full_matrices=full_matrices)
        return -u, s, -vh

    monkeypatch.setattr(torch.linalg, "svd", flipped)
    assert torch.allclose(first_component(acts), ours, atol=1e-5)
    flat = ours.flatten(1)
    assert bool((flat[:3].sum(1) > 0).all())  # uncentred: the mean is positive
    assert bool((flat[3:].amax(1) >= -flat[3:].amin(1)).all())  # centred: the larger-magnitude side is positive


def test_the_convention_on_a_net_and_its_negated_twin() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)
    )
    twin = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)
    )
    twin.load_state_dict(net.state_dict())
    with torch.no_grad():
        twin[0].weight.neg_()
        twin[0].bias.neg_()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    ours = cnnlens.explain(net, x, "eigen_cam", layer="0", progress=False).attributions
    theirs = cnnlens.explain(twin, x, "eigen_cam", layer="0", progress=False).attributions
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


class Centre(nn.Module):
    def forward(self, x: T) -> T:
        return x - x.mean((2, 3), keepdim=True)


def test_equals_pytorch_grad_cam_where_the_definitions_agree() -> None:
    """On activations with zero spatial mean per channel, centring changes nothing: pytorch-grad-cam's EigenCAM
    is ours with its final ReLU and min-max rescale, up to the sign its SVD happens to return."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), Centre(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    maps = cnnlens.explain(net, x, "eigen_cam", layer="1", progress=False).info["layer_maps"][0][:, 0]
    theirs = pgc.EigenCAM(net, target_layers=[net[1]])(
        input_tensor=x.clone(), targets=None
    )  # (B, 12, 12), layer = input size
    for ours, ref in zip(maps.numpy(), theirs, strict=True):
        candidates = []
        for s in (1.0, -1.0):
            r = np.maximum(s * ours, 0)
            candidates.append(np.abs((r - r.min()) / (r.max() - r.min()) - ref).max())
        assert min(candidates) < 1e-4
        assert ours.max() >= -ours.min()  # ours: the larger-magnitude side positive


def test_drawn_as_one_sign_in_the_report_and_titled_class_agnostic() -> None:
    from cnnlens.report._methods import run_methods

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    raw = cnnlens.explain(net, x, "eigen_cam", layer="0", progress=False)
    assert bool((raw.attributions < 0).any())  # signed activations: a signed projection
    maps, _ = run_methods(net, x, [0, 1], {"eigen_cam": {"layer": "0"}, "grad_cam": {}}, batch_size=None, seed=0,
                          progress=False)  # fmt: skip
    flat = maps["eigen_cam"].reshape(2, -1)
    assert np.allclose(flat.min(1), 0) and np.allclose(flat.max(1), 1)
    assert np.corrcoef(flat[0], raw.attributions[0].flatten().numpy())[0, 1] > 0.999  # the same order
    titles = " ".join(t.get_text() for t in raw.plot().texts)
    assert "class-agnostic" in titles and "evidence for" not in titles
