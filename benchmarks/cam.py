"""CAMs on EfficientNet-Lite0 beside Captum (where it has them) and straightforward references, as ratios.

Grad-CAM against Captum's LayerGradCam (+ the same bilinear upsampling). Score-CAM and Ablation-CAM against a
plain per-channel loop (one forward pass per channel, as the papers describe them), on a 320-channel layer
so that the suite stays short. Best of ``--repeats`` after a warm-up; the headline is our time / theirs.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from _common import best_of
from cnnlens.data import sample_images
from cnnlens.models import get_layer

T = torch.Tensor
IMAGES = ("chelsea", "coffee")
GRAD_LAYER = "_conv_head"
SCORE_LAYER = "_blocks.15._project_conv"  # 320 channels at 7 x 7


def _layer_output(model: nn.Module, layer: nn.Module, x: T) -> tuple[T, T]:
    store = []
    handle = layer.register_forward_hook(lambda _m, _a, out: store.append(out))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    return store[0], logits


def _up(maps: T, x: T) -> T:
    return F.interpolate(maps, x.shape[-2:], mode="bilinear", align_corners=False)


def _score(model: nn.Module, x: T, target: int) -> float:
    with torch.no_grad():
        return float(model(x)[0, target])


def reference_score_cam(model: nn.Module, layer: nn.Module, x: T, targets: T) -> T:
    """Score-CAM as Algorithm 1 of its paper, one masked input per forward pass."""
    acts, _ = _layer_output(model, layer, x)
    maps = []
    for i in range(x.shape[0]):
        scores = []
        for k in range(acts.shape[1]):
            m = F.interpolate(acts[i : i + 1, k : k + 1], x.shape[-2:], mode="bilinear", align_corners=False)
            span = m.max() - m.min()
            m = (m - m.min()) / span if span > 0 else torch.zeros_like(m)
            scores.append(_score(model, x[i : i + 1] * m, int(targets[i])))
        w = torch.softmax(torch.tensor(scores), 0)
        maps.append(F.relu((w[:, None, None] * acts[i]).sum(0)))
    return _up(torch.stack(maps)[:, None], x)


def reference_ablation_cam(model: nn.Module, layer: nn.Module, x: T, targets: T) -> T:
    """Ablation-CAM: zero one channel of the layer per forward pass."""
    acts, logits = _layer_output(model, layer, x)
    maps = []
    for i in range(x.shape[0]):
        y = float(logits[i, targets[i]])
        weights = []
        for k in range(acts.shape[1]):

            def zero_k(_m, _a, out, k=k):
                out = out.clone()
                out[:, k] = 0
                return out

            handle = layer.register_forward_hook(zero_k)
            try:
                weights.append((y - _score(model, x[i : i + 1], int(targets[i]))) / y)
            finally:
                handle.remove()
        maps.append(F.relu((torch.tensor(weights)[:, None, None] * acts[i]).sum(0)))
    return _up(torch.stack(maps)[:, None], x)


def captum_grad_cam(model: nn.Module, layer: nn.Module, x: T, targets: T) -> T:
    from captum.attr import LayerAttribution, LayerGradCam

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    return LayerAttribution.interpolate(attr, x.shape[-2:], interpolate_mode="bilinear").detach()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one timed repeat")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    clf = cnnlens.load_model("efficientnet_lite0")
    model = clf.module.eval()
    x = clf.preprocess([sample_images()[n] for n in IMAGES])
    with torch.no_grad():
        targets = model(x).argmax(1)
    rows = []
    for name, layer_name, theirs_name, theirs in (
        ("grad_cam", GRAD_LAYER, "Captum LayerGradCam", captum_grad_cam),
        ("score_cam", SCORE_LAYER, "per-channel loop", reference_score_cam),
        ("ablation_cam", SCORE_LAYER, "per-channel loop", reference_ablation_cam),
    ):
        print(f"[cam] {name} ...", file=sys.stderr, flush=True)
        layer = get_layer(model, layer_name)
        t_ours, ours = best_of(lambda n=name, ln=layer_name: cnnlens.explain(
            clf, x, n, target=targets, layer=ln).attributions, repeats)  # fmt: skip
        t_ref, ref = best_of(lambda f=theirs, la=layer: f(model, la, x, targets), repeats)
        diff = float((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-12))
        rows.append((name, layer_name, theirs_name, t_ours / t_ref, t_ours, t_ref, diff))
    print(f"\nCAMs on EfficientNet-Lite0, {len(IMAGES)} images, best of {repeats}")
    print(
        f"{'method':14s} {'layer':26s} {'against':20s} {'ours/theirs':>11s} {'ours s':>8s} {'theirs s':>9s} max|diff|"
    )
    for name, layer_name, against, ratio, t_o, t_r, diff in rows:
        print(f"{name:14s} {layer_name:26s} {against:20s} {ratio:10.2f}x {t_o:8.2f} {t_r:9.2f} {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
