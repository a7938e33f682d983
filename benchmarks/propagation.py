"""``lrp`` with each composite Zennit also has, on EfficientNet-Lite0 beside Zennit 0.5.1, in one process.

Run with ``make bench`` (all suites) or ``.venv/bin/python benchmarks/propagation.py [--quick]``. Both get the same
two photos, the same targets (the predicted classes), the same initial relevance (the target logit) and the same
z^B box (black and white pixels through the model's normalization). Zennit merges each BatchNorm into its
convolution by name (its sequential canonizer pairs leaf modules only and merges nothing in Lite0, whose
convolutions hold a padding module); that variant, the one the issue measured, is shown too. Each method runs once
to warm up, then ``--repeats`` times with the libraries alternating; the best time counts.

Printed: our time / Zennit's; then how much of the score the input relevance keeps, ``sum(R) / f(x)``, with the
model's biases (biases legitimately take their share; Zennit also hands both summands of each functional residual
add the whole relevance); then the conservation error ``|sum(R) - f(x)| / |f(x)|`` where conservation is exact
for the ε- and γ-rules, z^B and the proportional sums: Lite0's weights without biases, BatchNorm shifts or running
means, rules without bias (``zero_bias``). z+ drops a unit's relevance when the unit has no positive contribution
and αβ over-counts a unit without negative contributions: those are properties of the rules, not leaks.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import cnnlens
from _common import log
from cnnlens.data import sample_images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _nets import without_biases  # noqa: E402
from _zennit import merge_batch_norms, zennit  # noqa: E402

T = torch.Tensor
IMAGES = ("chelsea", "coffee")
COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_plus", "epsilon")


def zennit_composite(name: str, model: nn.Module, box: tuple[T, T], zero_bias: bool, merge: str) -> object:
    zennit()
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import (
        EpsilonAlpha2Beta1,
        EpsilonGammaBox,
        EpsilonPlus,
        EpsilonPlusFlat,
        LayerMapComposite,
        layer_map_base,
    )
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    canonizer = merge_batch_norms(model) if merge == "named" else SequentialMergeBatchNorm()
    kw = {"canonizers": [canonizer], "zero_params": "bias" if zero_bias else None}
    low, high = (b.view(1, -1, 1, 1) for b in box)
    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(**kw)
    if name == "epsilon_gamma_box":
        return EpsilonGammaBox(low=low, high=high, **kw)
    if name == "epsilon_alpha2_beta1":
        return EpsilonAlpha2Beta1(**kw)
    if name == "epsilon_plus":
        return EpsilonPlus(**kw)
    rule = Epsilon(zero_params=kw["zero_params"])
    return LayerMapComposite(layer_map_base() + [(Convolution, rule), (nn.Linear, rule)], canonizers=kw["canonizers"])


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def zennit_run(model: nn.Module, x: T, start: T, make: Callable[[], object]) -> T:
    z = zennit()
    with z.attribution.Gradient(model, make()) as attributor:
        _, relevance = attributor(x.clone().requires_grad_(True), start)
    return relevance.detach()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one timed repeat")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(1)  # see tests/conftest.py: predictable on a shared 2-core machine

    clf = cnnlens.load_model("efficientnet_lite0")
    images = sample_images()
    x = clf.preprocess([images[n] for n in IMAGES])
    model = clf.module.eval()
    box = (clf.preprocessing.pixel_value(0.0), clf.preprocessing.pixel_value(1.0))
    theirs_model = copy.deepcopy(model)  # Zennit's canonizers change the model while attached
    bias_free = without_biases(copy.deepcopy(model))
    bias_free_theirs = copy.deepcopy(bias_free)

    def start_of(net: nn.Module) -> tuple[T, T, T]:
        with torch.no_grad():
            logits = net(x)
        t = logits.argmax(1)
        f = logits.gather(1, t[:, None])[:, 0]
        return t, f, torch.zeros_like(logits).scatter(1, t[:, None], f[:, None])

    target, f, start = start_of(model)
    free_target, free_f, free_start = start_of(bias_free)
    names = [f"{n}: {clf.class_name(int(c))} ({float(v):.2f})" for n, c, v in zip(IMAGES, target, f, strict=True)]
    log(f"propagation: {', '.join(names)}; {repeats} repeat(s)")

    rows = []
    for name in COMPOSITES:
        log(f"  {name}")

        def ours(name: str = name) -> T:
            return cnnlens.explain(model, x, "lrp", composite=name, target=target, bounds=box).attributions

        def theirs(name: str = name) -> T:
            return zennit_run(theirs_model, x, start, lambda: zennit_composite(name, theirs_model, box, False, "named"))

        ours()
        theirs()  # warm-up
        t_ours, t_theirs = [], []
        for _ in range(repeats):  # alternating, so that a busy moment hits both
            t, r_ours = timed(ours)
            t_ours.append(t)
            t, r_theirs = timed(theirs)
            t_theirs.append(t)
        sequential = zennit_run(
            theirs_model, x, start, lambda n=name: zennit_composite(n, theirs_model, box, False, "sequential")
        )
        free_ours = cnnlens.explain(
            bias_free, x, "lrp", composite=name, target=free_target, bounds=box, zero_bias=True
        ).attributions
        free_theirs = zennit_run(
            bias_free_theirs, x, free_start, lambda n=name: zennit_composite(n, bias_free_theirs, box, True, "named")
        )

        def kept(r: T, total: T = f) -> str:
            return " ".join(f"{float(v):.3g}" for v in r.flatten(1).sum(1) / total)

        def error(r: T) -> str:
            return " ".join(f"{float(v):.1e}" for v in (r.flatten(1).sum(1) - free_f).abs() / free_f.abs())

        rows.append(
            (
                name,
                f"{min(t_ours):.2f}",
                f"{min(t_theirs):.2f}",
                f"{min(t_ours) / min(t_theirs):.2f}x",
                kept(r_ours),
                kept(r_theirs),
                kept(sequential),
                error(free_ours),
                error(free_theirs),
            )
        )
    header = (
        "composite",
        "ours s",
        "Zennit s",
        "ratio",
        "sum R/f ours",
        "Zennit",
        "Zennit seq.",
        "cons. error ours",
        "Zennit",
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"LRP on EfficientNet-Lite0, 2 images ({'; '.join(names)}), one thread, best of {repeats}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    print(
        "sum R/f: share of the score kept by the inputs with the model's biases (per image); 'Zennit seq.': Zennit's "
        "sequential BatchNorm canonizer, which merges nothing in Lite0. cons. error: |sum R - f| / |f| on Lite0 "
        "without biases, rules without bias (goal <= 1e-3)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
