"""Incremental occlusion on EfficientNet-Lite0: exact and approximate, beside full passes and Captum.

Run with ``.venv/bin/python benchmarks/incremental.py [--quick] [--threads N]``. One image (``chelsea``), its
predicted class, zero baseline, occlusion window 16 stride 8 (729 windows; ``--quick``: 32 / 16, 169 windows);
``--threads``: torch's intra-op threads (on a machine shared with other work, 1 gives steadier ratios). Timed in this one
process, one after the other: cnnlens with full forward passes (``incremental="off"``, the path before
incremental inference), cnnlens exact incremental (the default), Captum's ``Occlusion`` with its default
``perturbations_per_eval=1``, and cnnlens approximate at a few settings (projective-field threshold,
drill-down fraction). Printed (stdout): seconds and counted passes of each run, speed-ups, the largest
difference of exact from full passes, the mean multiply-add fraction of an occluded copy (the bound on the
exact path's speed-up: convolutions and linear layers only), and each approximate map's Spearman rank
correlation with the exact map; then, so that the default approximate setting is not tuned to one image, its
rank correlation with the exact map on ``coffee`` and ``astronaut`` too (untimed). Timings are only as good as the
machine is quiet (the load average is printed).
Goals: exact >= 3x faster than full passes (>= 5x Captum); approximate >= 10x with rank correlation >= 0.95.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import torch
from scipy.stats import spearmanr

import cnnlens
from _common import log
from cnnlens.data import sample_image

T = torch.Tensor
APPROXIMATE = ((1.0, 0.15), (1.0, 0.1), (1.0, 0.2), (0.8, 0.15))  # (field_threshold, drill_down); first: defaults
OTHERS = ("coffee", "astronaut")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="window 32, stride 16 (169 windows)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import captum.attr as ca

    clf = cnnlens.load_model("efficientnet_lite0")
    model = clf.module.eval()
    x = clf.preprocess([sample_image("chelsea")])
    with torch.no_grad():
        target = int(model(x).argmax(1))
    window, stride = (32, 16) if args.quick else (16, 8)
    opts = {"window": window, "stride": stride, "baseline": "zero", "target": target}

    def ours(**more: object) -> tuple[cnnlens.Explanation, float]:
        start = time.perf_counter()
        e = cnnlens.explain(clf, more.pop("image", x), "occlusion", **{**opts, **more})
        return e, time.perf_counter() - start

    def rho(a: cnnlens.Explanation, b: cnnlens.Explanation) -> float:
        return float(spearmanr(a.attributions[0].sum(0).flatten(), b.attributions[0].sum(0).flatten()).statistic)

    log("cnnlens, full passes ...")
    full, t_full = ours(incremental="off")
    log("cnnlens, exact incremental ...")
    exact, t_exact = ours()
    log("Captum Occlusion, perturbations_per_eval=1 ...")
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ref = ca.Occlusion(model).attribute(
            x.clone(), sliding_window_shapes=(3, window, window), strides=(3, stride, stride), target=target,
            baselines=0.0,
        )  # fmt: skip
    t_captum = time.perf_counter() - start
    approx = []
    for field, drill in APPROXIMATE:
        log(f"cnnlens, approximate (field_threshold={field}, drill_down={drill}) ...")
        e, t = ours(incremental="approximate", field_threshold=field, drill_down=drill)
        approx.append((field, drill, e, t, rho(e, exact)))
    others = []
    for name in OTHERS:
        log(f"{name}: exact and approximate with the defaults (untimed) ...")
        image = clf.preprocess([sample_image(name)])
        with torch.no_grad():
            more = {"image": image, "target": int(model(image).argmax(1))}
        a, _ = ours(incremental="approximate", **more)
        others.append((name, rho(a, ours(**more)[0])))

    load = os.getloadavg()[0]
    print(
        f"EfficientNet-Lite0, occlusion {window}/{stride} ({exact.info['windows']} windows), "
        f"{torch.get_num_threads()} threads; load average {load:.1f} on {os.cpu_count()} cores"
        + (" (busy machine: timings are noisy)" if load > (os.cpu_count() or 1) else "")
    )
    diff = float((exact.attributions - full.attributions).abs().max())
    print(
        f"exact vs full passes: max |difference| {diff:.1e}; vs Captum {float((exact.attributions - ref).abs().max()):.1e}"
    )
    print(f"multiply-adds per occluded copy (exact): {exact.info['multiply_adds']:.3f} of a full pass "
          f"(bound on the exact speed-up: {1 / exact.info['multiply_adds']:.2f}x)")  # fmt: skip
    print(f"{'run':38s} {'seconds':>8s} {'passes':>8s} {'full/run':>9s} {'captum/run':>11s} {'rank corr':>10s}")
    rows = [("cnnlens full passes (incremental='off')", full, t_full, None),
            ("cnnlens exact incremental", exact, t_exact, None)]  # fmt: skip
    rows += [(f"cnnlens approximate tau={f} drill={d}", e, t, r) for f, d, e, t, r in approx]
    for name, e, t, rho in rows:
        r = "-" if rho is None else f"{rho:.3f}"
        print(f"{name:38s} {t:8.1f} {e.passes:8.1f} {t_full / t:9.2f} {t_captum / t:11.2f} {r:>10s}")
    print(f"{'Captum Occlusion (default)':38s} {t_captum:8.1f} {exact.info['windows'] + 1:8d} {t_full / t_captum:9.2f}")
    default = ", ".join(f"{name} {r:.3f}" for name, r in [("chelsea", approx[0][4]), *others])
    computed = approx[0][2].info["computed_windows"][0]
    print(f"approximate with the defaults (tau={APPROXIMATE[0][0]} drill={APPROXIMATE[0][1]}), rank corr: {default}; "
          f"windows computed: {computed} of {exact.info['windows']} ({computed / exact.info['windows']:.0%})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
