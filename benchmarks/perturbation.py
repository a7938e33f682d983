"""cnnlens perturbation methods beside Captum on EfficientNet-Lite0, and against the forward-pass floor.

Run with ``.venv/bin/python benchmarks/perturbation.py [--quick]``. Both libraries get the same model, image
(``chelsea``), target (the predicted class), zero baseline, windows, masks and sample counts. Captum runs with
its default ``perturbations_per_eval=1`` and with 16; cnnlens with its automatic ``batch_size``.

The floor of a perturbation method is ``passes x t``: ``passes`` model inputs (counted by a hook on the first
convolution, whoever runs the model) times ``t``, the best per-image forward time over a few batch sizes
measured in this same run (before each method and after the last, the best counting). Timings are only as
good as the machine is quiet: the load average is printed, with a warning when it exceeds the cores. Printed (stdout): per method the passes of each side, ours / Captum, ours / Captum
(16 per pass), ours / floor (target: <= 1.15), and for occlusion and feature ablation the largest difference
from Captum relative to Captum's largest value. Progress goes to stderr. The counting hook makes cnnlens run
occlusion and feature ablation with full forward passes here (a model with hooks is not traced); incremental
inference has its own suite, ``benchmarks/incremental.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

import cnnlens
from _common import RowCounter, log
from cnnlens.attribution._masks import feature_masks
from cnnlens.data import sample_image

T = torch.Tensor


def per_image_forward(model: nn.Module, x: T, sizes: tuple[int, ...] = (1, 4, 8, 16), repeats: int = 3) -> float:
    """Best seconds per image of a no-grad forward pass over a few batch sizes."""
    best = float("inf")
    with torch.no_grad():
        for b in sizes:
            xb = x.repeat(b, 1, 1, 1)
            model(xb)
            for _ in range(repeats):
                start = time.perf_counter()
                model(xb)
                best = min(best, (time.perf_counter() - start) / b)
    return best


def timed(rows: RowCounter, fn: Callable[[], T]) -> tuple[T, float, int]:
    before = rows.n
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, rows.n - before


def cases(quick: bool, mask16: T, mask56: T, slic: T) -> list[tuple[str, str, dict, str, dict, bool]]:
    """(name, our method, our options, Captum class, Captum options, expected equal)."""
    window, stride = (32, 16) if quick else (16, 8)
    samples = 100 if quick else 300
    return [
        ("occlusion", "occlusion", {"window": window, "stride": stride}, "Occlusion",
         {"sliding_window_shapes": (3, window, window), "strides": (3, stride, stride)}, True),
        ("feature_ablation", "feature_ablation", {"mask": mask16}, "FeatureAblation",
         {"feature_mask": mask16[:, None]}, True),
        ("kernel_shap", "kernel_shap", {"mask": slic, "samples": samples}, "KernelShap",
         {"feature_mask": slic[:, None], "n_samples": samples}, False),
        ("lime", "lime", {"mask": slic, "samples": samples}, "Lime",
         {"feature_mask": slic[:, None], "n_samples": samples}, False),
        ("shapley_sampling", "shapley_sampling", {"mask": mask56, "samples": 4 if quick else 10},
         "ShapleyValueSampling", {"feature_mask": mask56[:, None], "n_samples": 4 if quick else 10}, False),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="coarser windows and fewer samples")
    args = parser.parse_args(argv)
    import captum.attr as ca

    clf = cnnlens.load_model("efficientnet_lite0")
    model = clf.module.eval()
    x = clf.preprocess([sample_image("chelsea")])
    with torch.no_grad():
        target = int(model(x).argmax(1))
    rows = RowCounter(model)
    mask16 = feature_masks("grid:16", x)[0]
    mask56 = feature_masks("grid:56", x)[0]
    slic = feature_masks("slic:50", x)[0]
    log("measuring the forward time ...")
    floor_t = per_image_forward(model, x)
    results = []
    for name, method, opts, cls_name, copts, same in cases(args.quick, mask16, mask56, slic):
        floor_t = min(floor_t, per_image_forward(model, x, sizes=(1, 8), repeats=2))
        log(f"{name}: cnnlens ...")
        e_box: list = []

        def ours(method=method, opts=opts, box=e_box) -> T:
            box.append(cnnlens.explain(model, x, method, target=target, **opts))
            return box[-1].attributions

        a_ours, t_ours, p_ours = timed(rows, ours)
        theirs = {}
        for ppe in (1, 16):
            log(f"{name}: Captum, perturbations_per_eval={ppe} ...")
            torch.manual_seed(0)

            def captum(cls_name=cls_name, copts=copts, ppe=ppe) -> T:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    attr = getattr(ca, cls_name)(model).attribute
                    return attr(x.clone(), target=target, baselines=0.0, perturbations_per_eval=ppe, **copts)

            theirs[ppe] = timed(rows, captum)
        diff = None
        if same:
            ref = theirs[1][0]
            diff = float((a_ours - ref).abs().max() / ref.abs().max())
        results.append((name, p_ours, theirs[1][2], t_ours, theirs[1][1], theirs[16][1], diff))
    floor_t = min(floor_t, per_image_forward(model, x))

    load = os.getloadavg()[0]
    print(
        f"EfficientNet-Lite0, 1 image, {torch.get_num_threads()} threads; best forward {floor_t * 1e3:.1f} ms/image; "
        f"load average {load:.1f} on {os.cpu_count()} cores"
        + (" (busy machine: the floor ratios are unreliable)" if load > (os.cpu_count() or 1) else "")
    )
    head = f"{'method':18s} {'passes ours/captum':>19s} {'ours/captum':>12s} {'ours/captum16':>14s} {'ours/floor':>11s}"
    print(head + f" {'max rel diff':>13s}")
    worst = 0.0
    for name, p_ours, p_cap, t_ours, t_cap, t_cap16, diff in results:
        floor = p_ours * floor_t
        worst = max(worst, t_ours / floor)
        d = "-" if diff is None else f"{diff:.1e}"
        print(
            f"{name:18s} {f'{p_ours}/{p_cap}':>19s} {t_ours / t_cap:12.2f} {t_ours / t_cap16:14.2f} "
            f"{t_ours / floor:11.2f} {d:>13s}"
        )
    print(f"worst ours/floor: {worst:.2f} (target <= 1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
