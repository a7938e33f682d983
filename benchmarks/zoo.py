"""The zoo conformance suite's cost (tests/test_zoo.py): seconds per architecture, the largest calls, and Score-CAM
at resnet50's default layer (2,048 channels) with what a user can do about its cost.

Per architecture: building it (random init, BatchNorm calibration on four photos) and the suite's method calls with
its cheap options (``tests/_zoo.py``: one 64 px image, a few steps and samples, coarse masks), one thread. Times are
this process's CPU seconds (``time.process_time``): with one thread they are the work done, whatever else runs on the
machine (wall time on a shared 2-core machine is several times longer). Default:
the methods ``make test`` runs (``_zoo.DEFAULT``); ``--full``: every registered method (the ``zoo_full`` set, long).
Score-CAM needs one forward pass per channel: resnet50's default layer has 2,048, so its cost is 2,048 passes of
the whole net whatever the options; a user can pick a layer with fewer channels (``layer=``), pass a larger
``batch_size`` (fewer, fuller passes) or a smaller input, or use Ablation-CAM (one pass of the tail per channel).
``--quick``: the zoo's default set on five architectures, Score-CAM at a 512-channel layer with the automatic batch
size only (the 2,048-channel time projected from it and printed as such).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

import cnnlens
from _common import log

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _zoo  # noqa: E402

QUICK_ARCHS = ("tv.resnet18", "tv.mobilenet_v2", "tv.densenet121", "timm.resnet18d", "timm.vit_tiny_patch16_224")
ADVICE = {
    "score_cam": "a layer with fewer channels (layer=), a larger batch_size, a smaller input",
    "ablation_cam": "a layer with fewer channels (layer=); the tail runs once per channel",
    "fullgrad": "none but a smaller input: one upsampled map per BatchNorm channel of the whole net",
    "feature_permutation": "a coarser mask (mask='grid:32')",
    "layer_feature_ablation": "group channels with mask= (one tail pass per group)",
    "lime": "fewer samples=",
    "kernel_shap": "fewer samples= or a coarser mask=",
}


def _call(z: _zoo.Zoo, method: str) -> tuple[float, str]:
    """Seconds of one suite call and its outcome ("ok", "refused", or the exception's type)."""
    x = _zoo.images(_zoo.ARCHS[z.arch].size, ("chelsea", "coffee")) if method == "feature_permutation" else z.x
    start = time.process_time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cnnlens.explain(z.model, x, method, progress=False, **_zoo.options(method, x))
        outcome = "ok"
    except cnnlens.CnnlensError:
        outcome = "refused"
    except Exception as err:  # a crash is reported, not raised: the suite lists it as a known gap
        outcome = type(err).__name__
    return time.process_time() - start, outcome


def per_architecture(archs: list[str], full: bool) -> list[tuple[str, str, float, str]]:
    """Rows (arch, method or "(build)", seconds, outcome) of the suite's calls."""
    from cnnlens.attribution import methods

    rows = []
    for arch in archs:
        log(f"[zoo] {arch} ...")
        start = time.process_time()
        z = _zoo.zoo_model(arch)
        rows.append((arch, "(build)", time.process_time() - start, "ok"))
        for method in [m.name for m in methods()] if full else _zoo.DEFAULT.get(arch, ()):
            rows.append((arch, method, *_call(z, method)))
    return rows


def report(rows: list[tuple[str, str, float, str]]) -> None:
    print(
        f"\nZoo suite: CPU seconds per architecture (one thread, {'all methods' if len(rows) > 200 else 'default set'})"
    )
    print(f"{'architecture':28s} {'build s':>8s} {'calls':>6s} {'calls s':>8s} {'not ok':>7s}")
    for arch in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == arch]
        calls = [r for r in mine if r[1] != "(build)"]
        bad = sum(r[3] != "ok" for r in calls)
        print(f"{arch:28s} {mine[0][2]:8.2f} {len(calls):6d} {sum(r[2] for r in calls):8.2f} {bad:7d}")
    print(f"total {sum(r[2] for r in rows):.1f} s")
    print("\nLargest calls, and what a user can do about them")
    for arch, method, sec, outcome in sorted((r for r in rows if r[1] != "(build)"), key=lambda r: -r[2])[:6]:
        print(f"{sec:8.2f} s  {arch:26s} {method:26s} {outcome:8s} {ADVICE.get(method, '')}")


def _timed(fn) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _channels(model: torch.nn.Module, layer: str, x: torch.Tensor) -> int:
    """The channels of ``layer``'s output on ``x`` (a block has no ``out_channels``)."""
    seen: list[int] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(int(o.shape[1])))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


def score_cam_resnet50(quick: bool) -> None:
    """Score-CAM at resnet50's default layer: seconds, passes, and the options that cut them."""
    z = _zoo.zoo_model("tv.resnet50")
    default = cnnlens.explain(z.model, z.x, "grad_cam", progress=False).info["layers"][0]
    channels = {n: _channels(z.model, n, z.x) for n in (default, "layer4.2.conv2")}
    with torch.no_grad():
        batch = z.x.expand(64, -1, -1, -1).contiguous()
        floor, _ = _timed(lambda: z.model(batch))
    runs = [("layer4.2.conv2", None)]
    runs += [] if quick else [("layer4.2.conv2", 8), ("layer4.2.conv2", 256), (default, None)]
    print(
        f"\nScore-CAM on resnet50 (64 px, one image, one thread, CPU seconds); a forward pass costs {floor / 64 * 1e3:.1f} ms/image"
    )
    print(f"{'layer':18s} {'channels':>8s} {'batch_size':>10s} {'seconds':>8s} {'passes':>7s}")
    for layer, batch_size in runs:
        log(f"[zoo] score_cam {layer} batch_size={batch_size} ...")
        sec, e = _timed(lambda la=layer, b=batch_size: cnnlens.explain(
            z.model, z.x, "score_cam", layer=la, batch_size=b, progress=False))  # fmt: skip
        size = "auto" if batch_size is None else str(batch_size)
        print(f"{layer:18s} {channels[layer]:8d} {size:>10s} {sec:8.2f} {e.passes:7.0f}")
        if batch_size is None:
            per_channel = sec / channels[layer]
    if quick:
        print(f"{default:18s} {channels[default]:8d} {'auto':>10s} {per_channel * channels[default]:8.2f} (projected)")
    sec, _ = _timed(lambda: cnnlens.explain(z.model, z.x, "ablation_cam", layer=default, progress=False))
    print(f"Ablation-CAM at {default} ({channels[default]} channels, the tail only per channel): {sec:.2f} s")
    print(f"the floor, {channels[default]} forward passes of resnet50: {floor / 64 * channels[default]:.2f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="five architectures; Score-CAM at 512 channels only")
    p.add_argument("--full", action="store_true", help="every registered method on every architecture (long)")
    p.add_argument("--archs", nargs="*", default=None, choices=list(_zoo.ARCHS))
    args = p.parse_args(argv)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        archs = args.archs or list(QUICK_ARCHS if args.quick else _zoo.ARCHS)
        report(per_architecture(archs, args.full))
        score_cam_resnet50(args.quick)
    finally:
        torch.set_num_threads(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
