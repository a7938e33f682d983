"""Dataset runs: images per second of ``cnnlens run`` beside a plain loop of ``explain`` calls, and Ray's overhead.

The digits field split (360 images) with three methods (saliency, Grad-CAM, integrated gradients with 16 steps).
The plain loop reads and preprocesses the same images in batches of the shard size and calls ``explain`` for each
method with the same ``batch_size``; the run does that and also keeps each image's prediction and probabilities
(from the logits of the first method's passes), the maps as float16, and writes every shard to a fresh store
(Parquet tables, Zarr maps). ``--repeats`` interleaved pairs after a warm-up; the
headline is the storing overhead, run time / loop time - 1 (goal: at most 10%), best against best and the median
of the pairs, and in CPU time (all threads: the run writes in a thread of its own).

The Ray backend on this machine (a local instance, one actor per CPU): its time with the instance already running
(actor start-up, scheduling and sending results back) and with starting the instance, each over the local run's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import cnnlens
from _common import log
from cnnlens.data import digits

METHODS = {"saliency": {}, "grad_cam": {}, "integrated_gradients": {"steps": 16}}
SHARD = 32


def plain_loop(model: cnnlens.Classifier, data, batch_size: int) -> None:
    for start in range(0, len(data), SHARD):
        x = model.preprocess([data[i][0] for i in range(start, min(len(data), start + SHARD))])
        for name, options in METHODS.items():
            cnnlens.explain(model, x, name, batch_size=batch_size, **options)


def store_run(model: cnnlens.Classifier, data, batch_size: int, folder: Path, **backend) -> Path:
    """A run into a fresh store under ``folder``; returns the store (the caller removes it, untimed)."""
    out = Path(tempfile.mkdtemp(dir=folder)) / "store"
    cnnlens.run(model, data, METHODS, out=out, shard_size=SHARD, batch_size=batch_size, progress=False, **backend)
    return out


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, all threads) of one call; a store it made is removed after."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    times = time.perf_counter() - wall, time.process_time() - cpu
    if isinstance(out, Path):
        shutil.rmtree(out.parent, ignore_errors=True)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 timed repeat, no Ray")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5, --quick 1)")
    p.add_argument("--batch-size", type=int, default=64, help="model inputs per forward pass, both")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steady on a shared machine)")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    torch.set_num_threads(args.threads)
    model = cnnlens.load_model("digits_cnn")
    data = digits("field")
    folder = Path(tempfile.mkdtemp(prefix="cnnlens-bench-store-"))
    try:
        log(f"plain explain loop vs cnnlens run on {len(data)} images, {', '.join(METHODS)} ...")
        plain_loop(model, data, args.batch_size)  # warm-up (imports, first calls)
        _timed(lambda: store_run(model, data, args.batch_size, folder))
        loop_t, run_t = [], []
        for _ in range(repeats):  # interleaved, so that a busy moment of the machine hits both
            loop_t.append(_timed(lambda: plain_loop(model, data, args.batch_size)))
            run_t.append(_timed(lambda: store_run(model, data, args.batch_size, folder)))
        (loop, loop_cpu), (local, local_cpu) = min(loop_t), min(run_t)
        print(f"{'':34s}{'images/s':>10s}{'seconds':>10s}{'CPU s':>10s}")
        print(f"{'plain loop of explain calls':34s}{len(data) / loop:10.1f}{loop:10.2f}{loop_cpu:10.2f}")
        print(f"{'cnnlens run (local, store)':34s}{len(data) / local:10.1f}{local:10.2f}{local_cpu:10.2f}")
        pairs = sorted(r[0] / lp[0] for r, lp in zip(run_t, loop_t, strict=True))
        print(
            f"storing overhead: {local / loop - 1:+.1%} in time, best against best (goal <= +10%); median of the "
            f"{repeats} interleaved pairs {pairs[len(pairs) // 2] - 1:+.1%}; {local_cpu / loop_cpu - 1:+.1%} in CPU "
            f"time (float16 maps, Parquet and Zarr writes; the writes run in a thread beside the next shard's "
            f"explanations)"
        )
        if not args.quick:
            _ray(model, data, args.batch_size, folder, local)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _ray(model: cnnlens.Classifier, data, batch_size: int, folder: Path, local: float) -> None:
    try:
        import ray
    except ImportError:
        print("Ray is not installed (pip install 'cnnlens[ray]'): no Ray figures")
        return
    from cnnlens.data import ArrayImages

    one = ArrayImages(data.images[:SHARD], data.labels[:SHARD], data.classes, ids=data.ids[:SHARD])
    log("Ray backend, starting a local instance inside the run ...")
    cold = _timed(lambda: store_run(model, data, batch_size, folder, backend="ray"))[0]
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        log("Ray backend, instance already running: one shard, then all ...")
        small = _timed(lambda: store_run(model, one, batch_size, folder, backend="ray"))[0]
        warm = _timed(lambda: store_run(model, data, batch_size, folder, backend="ray"))[0]
    finally:
        ray.shutdown()
    rate = (len(data) - len(one)) / max(warm - small, 1e-9)
    print(f"{'cnnlens run (Ray, running)':34s}{len(data) / warm:10.1f}{warm:10.2f}")
    print(f"{'cnnlens run (Ray, with start-up)':34s}{len(data) / cold:10.1f}{cold:10.2f}")
    print(
        f"Ray on one machine ({ray_cpus()} actors): {warm / local:.2f}x the local run's time with the instance running, "
        f"{cold / local:.2f}x with its start-up; a fixed cost of about {small:.1f} s (the actors start and load torch, "
        f"cnnlens and the model; one shard), then {rate:.1f} images/s (local: {len(data) / local:.1f})"
    )


def ray_cpus() -> int:
    import os

    return int(os.cpu_count() or 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
