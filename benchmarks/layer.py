"""Layer attribution on EfficientNet-Lite0 beside Captum 0.9, and Ablation-CAM on the cut beside the full-model way.

Run with ``make bench`` (all suites) or ``.venv/bin/python benchmarks/layer.py [--quick]``. One image (chelsea),
its predicted class, a zero baseline, in one process:

* ``layer_conductance`` and ``layer_integrated_gradients`` at ``_blocks.15`` and ``_conv_head`` against Captum's
  ``LayerConductance`` / ``LayerIntegratedGradients`` with their defaults (50 steps, Gauss-Legendre), and with
  ``internal_batch_size`` = our batch size where that is faster for Captum (its better time counts). Printed: our
  time / Captum's, and each one's completeness error ``|sum(attr) - (f(x) - f(x0))| / |f(x) - f(x0)|`` (no values
  skip these layers, so the layer's units carry all of it). Ours run with their defaults (conductance: the head at 16
  points at ``_blocks.15``, at the two ends at ``_conv_head`` whose tail acts on each unit separately, refined to
  1%; layer IG: 50 steps through the tail only).
* ``ablation_cam`` at ``_conv_head`` (1280 channels): ours (the head once, one tail pass per channel) against the
  way it ran before the cut (a forward hook zeroing one channel per row, the whole model per row, the same batch
  size), and the largest map difference relative to the map's maximum; then each one's largest difference
  from the float64 truth (the closed form of the tail after ``_conv_head``: BatchNorm, ReLU6, average pooling,
  linear), which tells float32 rounding in either summation order from a real difference.

Each timing is the best of ``--repeats`` after a warm-up, the two sides alternating. After the warm-up our cut is
traced and checked against the model's logits (once per model state and input shape, as for every later call on
the same model); the note gives our first call's time, cut traced and checked in it. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
from torch import nn

import cnnlens
from _common import best_of, log
from _gradient_print import load_average
from cnnlens.core.hooks import capture
from cnnlens.data import sample_image
from cnnlens.engine import auto_batch_size
from cnnlens.models import _cut, get_layer

T = torch.Tensor
LAYERS = ("_blocks.15", "_conv_head")
STEPS = 50
ABLATION_LAYER = "_conv_head"


def captum_layer(model: nn.Module, name: str, layer: str, x: T, target: int, batch: int | None) -> T:
    import captum.attr as ca

    method = getattr(ca, name)(model, get_layer(model, layer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return method.attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=STEPS, internal_batch_size=batch
        ).detach()


def today_ablation_cam(model: nn.Module, layer: nn.Module, x: T, target: int, batch: int) -> T:
    """Ablation-CAM as cnnlens ran it before the cut: every row a full forward pass, one channel zeroed by a hook
    (all-zero channels skipped), ``batch`` rows per pass; the map at the layer's resolution, ReLU."""
    store = []
    handle = layer.register_forward_hook(lambda _m, _a, out: store.append(out.detach()))
    try:
        with torch.no_grad():
            y = float(model(x)[0, target])
    finally:
        handle.remove()
    acts = store[0][0]
    active = torch.nonzero(acts.flatten(1).abs().amax(1) > 0)[:, 0]
    drops = []
    for start in range(0, len(active), batch):
        chan = active[start : start + batch]

        def zero(_m: nn.Module, _a: tuple, out: T, chan: T = chan) -> T:
            keep = torch.ones(out.shape[:2], dtype=out.dtype)
            keep[torch.arange(len(chan)), chan] = 0
            return out * keep[:, :, None, None]

        handle = layer.register_forward_hook(zero)
        try:
            with torch.no_grad():
                drops.append(model(x.expand(len(chan), *x.shape[1:]))[:, target])
        finally:
            handle.remove()
    weights = torch.zeros(acts.shape[0])
    weights[active] = (y - torch.cat(drops)) / y
    return torch.relu((weights[:, None, None] * acts).sum(0))[None, None]


def exact_ablation_cam(model: nn.Module, x: T, target: int) -> T:
    """Ablation-CAM at ``_conv_head`` of EfficientNet-Lite0 in float64, from the closed form of its tail: BatchNorm,
    ReLU6, global average pooling and a linear layer make the score a sum of one term per unit, ``phi(a_u) =
    w[target, c] / (h w) relu6(bn(a_u))`` plus the bias, so zeroing channel ``k`` changes the score by
    ``sum over its units of phi(0) - phi(a_u)``. The layer's output is captured in float32 (what both ways
    ablate); everything after it is float64."""
    with torch.no_grad(), capture([model._conv_head]) as store:
        model(x)
    a = store[0][0].double()
    bn, w = model._bn1, model._fc.weight[target].double()

    def phi(v: T) -> T:
        z = (v - bn.running_mean.double()[:, None, None]) / torch.sqrt(bn.running_var.double()[:, None, None] + bn.eps)
        z = z * bn.weight.double()[:, None, None] + bn.bias.double()[:, None, None]
        return (z.clamp(0, 6) * w[:, None, None] / (v.shape[-1] * v.shape[-2])).flatten(1).sum(1)

    y = phi(a).sum() + float(model._fc.bias[target])
    drop = phi(torch.zeros_like(a)) - phi(a)
    weights = torch.where(a.flatten(1).abs().amax(1) > 0, -drop / y, torch.zeros_like(drop))
    return torch.relu((weights[:, None, None] * a).sum(0))[None, None]


def completeness(attr: T, gap: float) -> float:
    return abs(float(attr.sum()) - gap) / abs(gap)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one timed repeat")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    clf = cnnlens.load_model("efficientnet_lite0")
    model = clf.module.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    x = clf.preprocess([sample_image("chelsea")])
    with torch.no_grad():
        logits = model(x)
        target = int(logits.argmax(1))
        gap = float(logits[0, target] - model(torch.zeros_like(x))[0, target])
    batch = auto_batch_size(model, x)  # what cnnlens picks for 224 x 224 inputs here
    rows = []
    for layer in LAYERS:
        for ours_name, theirs_name in (
            ("layer_conductance", "LayerConductance"),
            ("layer_integrated_gradients", "LayerIntegratedGradients"),
        ):
            log(f"[layer] {ours_name} at {layer} ...")

            def ours(n: str = ours_name, la: str = layer) -> cnnlens.Explanation:
                return cnnlens.explain(model, x, n, target=target, baseline=torch.zeros_like(x), layer=la)

            best_theirs, theirs_out, how = float("inf"), None, ""
            for b in (None, batch):
                t, out = best_of(lambda b=b, n=theirs_name, la=layer: captum_layer(model, n, la, x, target, b), repeats)
                if t < best_theirs:
                    best_theirs, theirs_out, how = t, out, "one batch" if b is None else f"batches of {b}"
            _cut._CACHE.clear()  # the first call: the cut traced and checked
            start = time.perf_counter()
            ours()
            t_first = time.perf_counter() - start
            t_ours, e = best_of(ours, repeats)
            rows.append(
                (ours_name, layer, t_ours / best_theirs, t_ours, best_theirs, completeness(e.attributions, gap),
                 completeness(theirs_out, gap), f"{e.info['rows']['head']} head + {e.info['rows']['tail']} tail "
                 f"rows; first call {t_first:.2f} s; Captum {how}")
            )  # fmt: skip
    log(f"[layer] ablation_cam at {ABLATION_LAYER} ...")
    module = get_layer(model, ABLATION_LAYER)
    t_today, today = best_of(lambda: today_ablation_cam(model, module, x, target, batch), max(1, repeats - 1))
    t_cut, e = best_of(
        lambda: cnnlens.explain(model, x, "ablation_cam", target=target, layer=ABLATION_LAYER, batch_size=None),
        repeats,
    )
    ours_map = e.info["layer_maps"][0]
    exact = exact_ablation_cam(model, x, target)

    def off(m: T, ref: T) -> float:
        return float((m.double() - ref.double()).abs().max() / ref.double().abs().max())

    diff, ours_off, today_off = off(ours_map, today), off(ours_map, exact), off(today, exact)

    print(f"\nLayer attribution on EfficientNet-Lite0, chelsea (class {target}), zero baseline; load {load_average()}")
    head = (
        f"{'method':<27} {'layer':<11} {'ours/Captum':>11} {'ours s':>7} {'Captum s':>8} {'ours |δ|/gap':>12} "
        f"{'Captum |δ|/gap':>14}  note"
    )
    print(head)
    print("-" * len(head))
    for name, layer, ratio, t_o, t_t, d_o, d_t, note in rows:
        print(
            f"{name:<27} {layer:<11} {ratio:>10.3f}x {t_o:>7.2f} {t_t:>8.2f} {d_o:>12.1e} {d_t:>14.1e}  "
            f"{1 / ratio:.1f}x faster; {note}"
        )
    print(
        f"\nablation_cam at {ABLATION_LAYER} ({module.out_channels} channels): cut {t_cut:.2f} s, "
        f"full model per channel {t_today:.2f} s -> {t_today / t_cut:.0f}x faster; max|diff|/max|map| = {diff:.1e}"
    )
    print(
        f"  against the float64 closed form of the tail: cut {ours_off:.1e}, full model per channel {today_off:.1e} "
        f"(max|diff|/max|map|)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
