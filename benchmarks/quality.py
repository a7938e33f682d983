"""Quality metrics on EfficientNet-Lite0 beside Captum's (where it has them) and the forward-pass floor.

Infidelity and max-sensitivity against ``captum.metrics`` given the very same perturbations (replayed), so the
numbers must agree and only the time differs; the same batch size for both (Captum's
``max_examples_per_batch``). Deletion / insertion / ROAD have no Captum counterpart: their time is set beside
the floor, the time of the same number of plain forward passes at the same batch size. Best of ``--repeats``
after a warm-up; the headline is our time / theirs.

Then deletion and insertion on ``chelsea`` with a fixed Grad-CAM map, at 20 and 100 steps, with incremental
inference (``incremental="exact"``, the default) beside full passes (``incremental="off"``): seconds, counted
passes (an incremental row counts as its multiply-add fraction), rows computed incrementally, their mean
multiply-add fraction and the largest difference of the curves (probability, and logit untimed).
``--curves``: that table only; ``--threads``: torch's intra-op threads (1 gives steadier ratios on a shared
machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import Saliency
from captum.metrics import infidelity, sensitivity_max

import cnnlens
from _common import best_of, log
from cnnlens.data import sample_images
from cnnlens.quality import score

T = torch.Tensor
IMAGES = ("chelsea", "coffee")
SAMPLES = 10


class Recorder:
    """A perturbation ``(x, generator) -> x~`` that keeps what it returned, to replay it to Captum."""

    def __init__(self, kind: str, scale: float) -> None:
        self.kind, self.scale, self.seen = kind, scale, []

    def __call__(self, x: T, g: torch.Generator) -> T:
        noise = torch.randn(x.shape, generator=g) if self.kind == "normal" else 2 * torch.rand(x.shape, generator=g) - 1
        xp = x - self.scale * noise
        self.seen.append(xp)
        return xp

    def draws(self) -> T:
        """The first run's draws, ``(S, B, C, H, W)``."""
        return torch.stack(self.seen[:SAMPLES])


class Replay:
    """Captum's ``perturb_func``: the recorded draws in the order Captum asks for them. Captum splits the samples
    into chunks of ``max_examples_per_batch // B`` and repeats each image over the chunk's samples."""

    def __init__(self, draws: T, with_noise: bool) -> None:
        self.draws, self.with_noise, self.at = draws, with_noise, 0  # draws: (S, B, C, H, W)

    def __call__(self, x: T) -> Any:
        s, b = self.draws.shape[:2]
        k = len(x) // b
        if self.at + k > s:
            self.at = 0
        part = self.draws[self.at : self.at + k].transpose(0, 1).reshape(-1, *self.draws.shape[2:])
        self.at += k
        return (x - part, part) if self.with_noise else part


def rel(a: T, b: T) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 timed repeat")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, --quick 1)")
    p.add_argument("--batch-size", type=int, default=16, help="model inputs per forward pass, both libraries")
    p.add_argument("--curves", action="store_true", help="only deletion / insertion, incremental vs full passes")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    bs = args.batch_size
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.curves:
        return curves(repeats, bs)

    log("loading EfficientNet-Lite0 and sample images ...")
    model = cnnlens.load_model("efficientnet_lite0")
    net = model.module.eval()
    photos = sample_images()
    x = model.preprocess([photos[n] for n in IMAGES])
    with torch.no_grad():
        target = net(x).argmax(1)
    attr = cnnlens.explain(model, x, "saliency", abs=False).attributions
    rows = []

    log("infidelity ...")
    rec = Recorder("normal", 0.2)
    t_ours, ours = best_of(
        lambda: score("infidelity", model, x, attr_fn(attr), samples=SAMPLES, perturbation=rec, batch_size=bs,
                      progress=False),
        repeats,
    )  # fmt: skip
    replay = Replay(rec.draws(), with_noise=True)
    t_cap, ref = best_of(
        lambda: infidelity(net, replay, x, attr, target=target,
                           n_perturb_samples=SAMPLES, max_examples_per_batch=bs, normalize=True),
        repeats,
    )  # fmt: skip
    rows.append(("infidelity (saliency)", t_ours, t_cap, "Captum", rel(ours.values, ref), ours.passes))

    log("sensitivity_max ...")
    rec = Recorder("uniform", 0.02)
    t_ours, ours = best_of(
        lambda: score("sensitivity_max", model, x, "saliency", samples=SAMPLES, perturbation=rec, batch_size=bs,
                      progress=False),
        repeats,
    )  # fmt: skip
    replay = Replay(rec.draws(), with_noise=False)
    saliency = Saliency(net)
    t_cap, ref = best_of(
        lambda: sensitivity_max(saliency.attribute, x, perturb_func=replay, n_perturb_samples=SAMPLES,
                                max_examples_per_batch=bs, target=target),
        repeats,
    )  # fmt: skip
    rows.append(("sensitivity_max (saliency)", t_ours, t_cap, "Captum", rel(ours.values, ref), ours.passes))

    for metric in ("deletion", "insertion", "road"):
        log(f"{metric} ...")
        t_ours, ours = best_of(
            lambda m=metric: score(m, model, x, attr_fn(attr), batch_size=bs, progress=False), repeats
        )
        n = ours.passes
        batch = x.repeat((bs + len(x) - 1) // len(x), 1, 1, 1)[:bs]

        def floor(n: int = n, batch: T = batch) -> None:
            with torch.no_grad():
                for start in range(0, n, bs):
                    net(batch[: min(bs, n - start)])

        t_floor, _ = best_of(floor, repeats)
        rows.append((metric, t_ours, t_floor, "floor", None, n))

    print(f"cnnlens {cnnlens.__version__} quality metrics on efficientnet_lite0, images {', '.join(IMAGES)}; ")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {bs}, best of {repeats}")
    head = f"{'metric':<28} {'ours/theirs':>11} {'ours s':>8} {'theirs s':>8} {'theirs':>7} {'max rel diff':>12} {'passes':>7}"
    print(head)
    print("-" * len(head))
    for name, a, b, who, diff, passes in rows:
        d = "-" if diff is None else f"{diff:.1e}"
        print(f"{name:<28} {a / b:>10.2f}x {a:>8.3f} {b:>8.3f} {who:>7} {d:>12} {passes:>7}")
    print("floor: the same number of plain forward passes at the same batch size (no perturbing, no sorting)")
    print()
    return curves(repeats, bs)


def curves(repeats: int, bs: int) -> int:
    """Deletion and insertion on chelsea, incremental inference beside full passes, for two maps: Grad-CAM's and
    a compact one (a Gaussian bump, sigma 20 pixels, at Grad-CAM's peak), whose early steps change small boxes."""
    log("deletion / insertion, incremental vs full passes ...")
    model = cnnlens.load_model("efficientnet_lite0")
    x = model.preprocess([sample_images()["chelsea"]])
    cam = cnnlens.explain(model, x, "grad_cam").attributions
    peak = divmod(int(cam[0].sum(0).argmax()), cam.shape[-1])
    yy, xx = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    bump = torch.exp(-((yy - peak[0]) ** 2 + (xx - peak[1]) ** 2) / (2 * 20.0**2))[None, None]
    head = (f"{'map':<9} {'curve':<14} {'full cpu s':>10} {'incr cpu s':>10} {'full/incr':>9} {'full passes':>11} "
            f"{'incr passes':>11} {'incr rows':>9} {'mult-adds':>9} {'max |diff| p':>12} {'logit':>8}")  # fmt: skip
    lines = []
    for name, attr in (("grad_cam", cam), ("bump", bump)):
        for metric in ("deletion", "insertion"):
            for steps in (20, 100):
                log(f"{name}: {metric}, {steps} steps ...")

                def run(mode: str, output: str = "probability", m: str = metric, k: int = steps, a: T = attr) -> Any:
                    return score(m, model, x, attr_fn(a), steps=k, batch_size=bs, incremental=mode, output=output,
                                 progress=False)  # fmt: skip

                t_full, full = best_of(lambda: run("off"), repeats, time.process_time)
                t_inc, inc = best_of(lambda: run("exact"), repeats, time.process_time)
                logit = float((run("exact", "logit").curve - run("off", "logit").curve).abs().max())
                diff = float((inc.curve - full.curve).abs().max())
                rows = f"{inc.info['incremental_rows']}/{inc.info['incremental_rows'] + inc.info['full_rows']}"
                lines.append(
                    f"{name:<9} {f'{metric} {steps}':<14} {t_full:>10.2f} {t_inc:>10.2f} {t_full / t_inc:>8.2f}x "
                    f"{full.passes:>11.1f} {inc.passes:>11.1f} {rows:>9} "
                    f"{inc.info.get('multiply_adds', float('nan')):>9.3f} {diff:>12.1e} {logit:>8.1e}"
                )
    print(f"deletion / insertion on efficientnet_lite0, chelsea; {torch.get_num_threads()} threads, batch {bs}, "
          f"best of {repeats}, CPU seconds of this process (steadier than wall time on a shared machine)")  # fmt: skip
    print(head)
    print("-" * len(head))
    print("\n".join(lines))
    print("incr: incremental='exact' (the default); full: incremental='off'; incr rows: rows computed "
          "incrementally; mult-adds: their mean fraction of a full pass's multiply-adds")  # fmt: skip
    return 0


def attr_fn(attr: T) -> Callable[..., T]:
    """A fixed map as an explainer callable (so no explanation time is measured)."""
    return lambda model, x, target: attr


if __name__ == "__main__":
    sys.exit(main())
