"""cnnlens gradient methods beside their Captum counterparts on EfficientNet-Lite0, in one process.

Run with ``make bench`` (all suites) or ``.venv/bin/python benchmarks/gradient.py [--quick]``. Both libraries get the same
model, the same two images, the same targets (the model's predicted classes), the same baselines and the same
step counts; Captum's ``internal_batch_size`` for integrated gradients is our ``batch_size``. Each method is
run once to warm up, then ``--repeats`` times with the two libraries alternating, and the best time counts.

Printed (stdout): a table with our time / Captum's time, how far apart the attributions are, and the
completeness error ``delta = sum(attr) - (f(x) - f(x0))`` of each library relative to ``|f(x) - f(x0)|``;
then, for integrated gradients, the fewest steps (from a ladder) at which Captum's quadratures reach
``|delta| <= 1%`` on both images, against our adaptive mode (``tolerance=0.01``). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import cnnlens
from _common import RowCounter, log
from _gradient_print import TOLERANCE, LadderResult, load_average, print_ladder, print_table
from cnnlens.data import sample_images

T = torch.Tensor
Result = tuple[T, T | None]  # (attributions, per-image delta or None)

IMAGES = ("chelsea", "coffee")
DISTRIBUTION_IMAGES = ("astronaut", "rocket")  # with a zero and a black image: the SHAP baseline distribution
IG_STEPS = 50
SHAP_SAMPLES = 20
LADDER = (16, 32, 64, 128, 256, 512)
QUICK_LADDER = (32, 128)
CAPTUM_QUADRATURES = ("gausslegendre", "riemann_trapezoid")
SAME = 1e-4  # relative difference below which two attributions count as the same


# ---- setup ------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    model: nn.Module
    x: T
    target: T
    names: list[str]
    zero: T  # single baseline, (B, C, H, W)
    dist: T  # baseline distribution shared by both images, (K, C, H, W)
    gap: T  # f(x) - f(zero) per image, for the target class
    dist_gap: T  # f(x) - mean_k f(dist_k) per image
    grad: T  # plain gradient of the target score at x (what a method that ignores ReLU6 falls back to)
    rows: RowCounter


def setup() -> Setup:
    clf = cnnlens.load_model("efficientnet_lite0")
    model = clf.module.eval()
    images = sample_images()
    x = clf.preprocess([images[n] for n in IMAGES])
    others = clf.preprocess([images[n] for n in DISTRIBUTION_IMAGES])
    black = clf.preprocessing.pixel_value((0.0, 0.0, 0.0)).view(1, 3, 1, 1).expand(1, *x.shape[1:])
    dist = torch.cat([torch.zeros_like(x[:1]), others, black]).contiguous()
    zero = torch.zeros_like(x)
    with torch.no_grad():
        logits = model(x)
        target = logits.argmax(1)
        f_x = logits.gather(1, target[:, None])[:, 0]
        f_zero = model(zero).gather(1, target[:, None])[:, 0]
        f_dist = model(dist)[:, target].mean(0)  # (B,): mean over the K baselines of each image's target
    xi = x.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(xi).gather(1, target[:, None]).sum(), xi)
    names = [f"{n}: {clf.class_name(int(t))}" for n, t in zip(IMAGES, target, strict=True)]
    return Setup(model, x, target, names, zero, dist, f_x - f_zero, f_x - f_dist, grad, RowCounter(model))


def warm_up(s: Setup, batch_sizes: tuple[int, ...]) -> None:
    """A few forward/backward passes at the batch sizes used, so first-call costs land in no timing."""
    for b in batch_sizes:
        xb = s.x.repeat((b + 1) // 2, 1, 1, 1)[:b].clone().requires_grad_(True)
        torch.autograd.grad(s.model(xb)[:, 0].sum(), xb)


# ---- the two sides of every comparison ---------------------------------------------------------------------
def ours(s: Setup, method: str, batch_size: int, baseline: T | None = None, **options) -> Callable[[int], Result]:
    def run(seed: int) -> Result:
        e = cnnlens.explain(
            s.model, s.x, method, target=s.target, baseline=baseline, batch_size=batch_size, seed=seed, **options
        )
        return e.attributions, e.delta

    return run


def captum(s: Setup, cls_name: str, per_sample_delta: int = 0, **kwargs) -> Callable[[int], Result]:
    """Captum's ``cls(model).attribute(x, target=..., **kwargs)``; seeds torch and NumPy (Captum uses both).

    ``per_sample_delta``: Captum returns one delta per (image, sample/baseline) pair; their mean per image is
    ``sum(attr) - (f(x) - mean f(baseline))``, the delta cnnlens reports.
    """
    import captum.attr as ca

    cls = getattr(ca, cls_name)

    def run(seed: int) -> Result:
        torch.manual_seed(seed)
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "setting hooks on ReLU ..." on every call
            out = cls(s.model).attribute(s.x.clone(), target=s.target, **kwargs)
        if not kwargs.get("return_convergence_delta"):
            return out.detach(), None
        attr, delta = out[0].detach(), out[1].detach()
        if per_sample_delta:
            delta = delta.view(s.x.shape[0], per_sample_delta).mean(1)
        return attr, delta

    return run


@dataclass
class Case:
    name: str
    captum_name: str
    ours: Callable[[int], Result]
    theirs: Callable[[int], Result]
    gap: T | None = None  # normalizer of delta (None: no delta)
    shortcuts: dict[str, T] = field(default_factory=dict)  # what Captum gives if it skips ReLU6, by name
    stochastic: bool = False
    remark: str = ""  # printed in the note column


def cases(s: Setup, bs: int) -> list[Case]:
    k = s.dist.shape[0]
    ignore_relu6 = "(x-x0)*grad: ReLU6 not handled"
    return [
        Case("saliency", "Saliency", ours(s, "saliency", bs), captum(s, "Saliency", abs=True)),
        Case("input_x_gradient", "InputXGradient", ours(s, "input_x_gradient", bs), captum(s, "InputXGradient")),
        Case(
            "guided_backprop",
            "GuidedBackprop",
            ours(s, "guided_backprop", bs),
            captum(s, "GuidedBackprop"),
            shortcuts={"plain gradient: ReLU6 not hooked": s.grad},
        ),
        Case(
            "deconvnet",
            "Deconvolution",
            ours(s, "deconvnet", bs),
            captum(s, "Deconvolution"),
            shortcuts={"plain gradient: ReLU6 not hooked": s.grad},
        ),
        Case(
            "integrated_gradients",
            "IntegratedGradients",
            ours(s, "integrated_gradients", bs, s.zero, steps=IG_STEPS, quadrature="gausslegendre"),
            captum(
                s,
                "IntegratedGradients",
                baselines=s.zero,
                n_steps=IG_STEPS,
                method="gausslegendre",
                internal_batch_size=bs,
                return_convergence_delta=True,
            ),
            gap=s.gap,
        ),
        Case(
            "gradient_shap",
            "GradientShap",
            ours(s, "gradient_shap", bs, s.dist, samples=SHAP_SAMPLES, stdev=0.0),
            captum(
                s,
                "GradientShap",
                per_sample_delta=SHAP_SAMPLES,
                baselines=s.dist,
                n_samples=SHAP_SAMPLES,
                stdevs=0.0,
                return_convergence_delta=True,
            ),
            gap=s.dist_gap,
            stochastic=True,
            remark="Captum's delta runs f on every noisy input and drawn baseline (2 rows per sample)",
        ),
        Case(
            "deeplift",
            "DeepLift",
            ours(s, "deeplift", bs, s.zero),
            captum(s, "DeepLift", baselines=s.zero, return_convergence_delta=True),
            gap=s.gap,
            shortcuts={ignore_relu6: (s.x - s.zero) * s.grad},
        ),
        Case(
            "deeplift_shap",
            "DeepLiftShap",
            ours(s, "deeplift_shap", bs, s.dist),
            captum(s, "DeepLiftShap", per_sample_delta=k, baselines=s.dist, return_convergence_delta=True),
            gap=s.dist_gap,
            shortcuts={ignore_relu6.replace("x0", "E[x0]"): (s.x - s.dist.mean(0, keepdim=True)) * s.grad},
        ),
    ]


# ---- measuring -------------------------------------------------------------------------------------------
def rel_diff(a: T, b: T) -> float:
    """max over images of max |a - b| / max |a|."""
    a, b = a.flatten(1), b.flatten(1)
    return float(((a - b).abs().amax(1) / a.abs().amax(1).clamp_min(1e-30)).max())


def rel_delta(delta: T | None, gap: T | None) -> float | None:
    if delta is None or gap is None:
        return None
    return float((delta.abs() / gap.abs().clamp_min(1e-12)).max())


@dataclass
class Timing:
    seconds: float = float("inf")
    rows: int = 0


def timed(s: Setup, fn: Callable[[int], Result], seed: int, best: Timing) -> Result:
    s.rows.n = 0
    start = time.perf_counter()
    out = fn(seed)
    seconds = time.perf_counter() - start
    if seconds < best.seconds:
        best.seconds, best.rows = seconds, s.rows.n
    return out


@dataclass
class Row:
    case: Case
    ours: Timing
    theirs: Timing
    diff: float
    our_delta: float | None
    their_delta: float | None
    note: str


def measure(s: Setup, case: Case, repeats: int) -> Row:
    mine, theirs = Timing(), Timing()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a_ours, d_ours = timed(s, case.ours, 0, Timing())  # warm-up; its outputs are the ones compared
        a_theirs, d_theirs = timed(s, case.theirs, 0, Timing())
        seed1: dict[str, T] = {}  # outputs of the first timed repeat (seed 1), for the stochastic methods
        for r in range(repeats):
            order = [("ours", case.ours, mine), ("theirs", case.theirs, theirs)]
            for who, fn, best in order if r % 2 == 0 else order[::-1]:
                attr, _ = timed(s, fn, r + 1, best)
                if r == 0:
                    seed1[who] = attr
    notes = [case.remark] if case.remark else []
    for label, ref in case.shortcuts.items():
        if rel_diff(ref, a_theirs) < SAME:
            notes.append(f"Captum == {label}")
        if rel_diff(ref, a_ours) < SAME:
            notes.append(f"cnnlens == {label} (!)")
    if case.stochastic and seed1:
        notes.append(
            f"random draws differ; seed-to-seed diff: Captum {rel_diff(a_theirs, seed1['theirs']):.2g}, "
            f"cnnlens {rel_diff(a_ours, seed1['ours']):.2g}"
        )
    our_delta, their_delta = rel_delta(d_ours, case.gap), rel_delta(d_theirs, case.gap)
    if their_delta is not None and our_delta is not None and their_delta > 10 * max(our_delta, 1e-3):
        notes.append("Captum completeness broken")
    return Row(case, mine, theirs, rel_diff(a_ours, a_theirs), our_delta, their_delta, "; ".join(notes))


# ---- integrated gradients: steps needed for 1% completeness ------------------------------------------------
def captum_ladder(s: Setup, quadrature: str, ladder: tuple[int, ...], bs: int) -> LadderResult:
    trace, last, total = [], None, 0.0
    for n in ladder:
        log(f"  Captum IG {quadrature}, {n} steps ...")
        fn = captum(
            s,
            "IntegratedGradients",
            baselines=s.zero,
            n_steps=n,
            method=quadrature,
            internal_batch_size=bs,
            return_convergence_delta=True,
        )
        best = Timing()
        _, delta = timed(s, fn, 0, best)
        total += best.seconds
        rel = rel_delta(delta, s.gap)
        assert rel is not None
        trace.append(f"{n}:{rel:.2%}")
        last = (n, best, rel)
        if rel <= TOLERANCE:
            passes = [best.rows // s.x.shape[0]] * s.x.shape[0]
            return LadderResult("Captum", quadrature, n, passes, best.seconds, rel, " ".join(trace), total)
    assert last is not None
    n, best, rel = last
    passes = [best.rows // s.x.shape[0]] * s.x.shape[0]
    return LadderResult("Captum", quadrature, None, passes, best.seconds, rel, " ".join(trace), total)


def ours_adaptive(s: Setup, bs: int) -> tuple[LadderResult, list[str]]:
    log(f"  cnnlens IG adaptive, tolerance={TOLERANCE} ...")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        e = cnnlens.explain(
            s.model,
            s.x,
            "integrated_gradients",
            target=s.target,
            baseline=s.zero,
            batch_size=bs,
            tolerance=TOLERANCE,
        )
        seconds = time.perf_counter() - start
    rel = rel_delta(e.delta, s.gap)
    assert rel is not None
    passes = list(e.info["passes_per_image"])
    steps = None if rel > TOLERANCE else 0  # 0: reached (no step count to show)
    res = LadderResult("cnnlens", f"adaptive (tol {TOLERANCE})", steps, passes, seconds, rel, "", seconds)
    return res, [str(w.message) for w in caught if issubclass(w.category, cnnlens.CnnlensWarning)]


# ---- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 timed repeat and a short IG ladder (a fast check)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per method (default 3, --quick 1)")
    p.add_argument("--batch-size", type=int, default=16, help="our batch_size = Captum's internal_batch_size")
    p.add_argument("--only", nargs="*", default=None, help="run only these methods (names as in the table)")
    p.add_argument("--no-ladder", action="store_true", help="skip the IG steps-to-1%% comparison")
    p.add_argument("--ladder-only", action="store_true", help="run only the IG steps-to-1%% comparison")
    p.add_argument(
        "--rungs",
        type=int,
        nargs="+",
        default=None,
        help=f"Captum step counts tried in the IG ladder (default {LADDER})",
    )
    p.add_argument(
        "--quadratures",
        nargs="+",
        choices=CAPTUM_QUADRATURES,
        default=list(CAPTUM_QUADRATURES),
        help="Captum quadratures in the IG ladder (default: all)",
    )
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    ladder = tuple(args.rungs) if args.rungs else QUICK_LADDER if args.quick else LADDER
    bs = args.batch_size

    import captum

    t0, load_before = time.perf_counter(), load_average()
    log("loading EfficientNet-Lite0 and sample images ...")
    torch.manual_seed(0)
    s = setup()
    warm_up(s, tuple(sorted({2, 4, min(bs, 2 * SHAP_SAMPLES), bs})))

    rows = []
    for case in cases(s, bs):
        if args.ladder_only or (args.only and case.name not in args.only):
            continue
        log(f"{case.name} vs captum.attr.{case.captum_name} (warm-up + {repeats}) ...")
        rows.append(measure(s, case, repeats))
        r = rows[-1]
        log(f"  ours {r.ours.seconds:.3f}s, Captum {r.theirs.seconds:.3f}s, diff {r.diff:.1e}")

    ladder_results, warns = [], []
    if not args.no_ladder:
        log("integrated gradients: steps to 1% completeness ...")
        for q in args.quadratures:
            ladder_results.append(captum_ladder(s, q, ladder, bs))
        res, warns = ours_adaptive(s, bs)
        ladder_results.append(res)

    print(
        f"cnnlens {cnnlens.__version__} vs Captum {captum.__version__} on efficientnet_lite0 "
        f"(ReLU6 activations), {len(IMAGES)} images ({'; '.join(s.names)})"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}; "
        f"batch_size={bs} (Captum internal_batch_size for IG); best of {repeats} after 1 warm-up, "
        f"libraries alternating; 1-min load average {load_before} at start, {load_average()} at end "
        f"on {os.cpu_count()} CPUs (other load makes the times noisy)"
    )
    print(
        f"IG: {IG_STEPS} steps gausslegendre, zero baseline; SHAP methods: K={s.dist.shape[0]} baselines "
        f"(zero, {', '.join(DISTRIBUTION_IMAGES)}, black), gradient_shap {SHAP_SAMPLES} samples, stdev 0"
    )
    print(
        "diff: max over images of max|ours - Captum| / max|ours|; |δ|/gap: max over images of "
        "|sum(attr) - (f(x) - f(x0))| / |f(x) - f(x0)| (x0 averaged over the drawn baselines for SHAP)"
    )
    if rows:
        print()
        print_table(rows)
    if ladder_results:
        print()
        print(f"Integrated gradients: fewest steps with |δ| <= {TOLERANCE:.0%} of |f(x) - f(x0)| on both images")
        print_ladder(ladder_results, warns, ladder)
    print()
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
