"""Concept extraction on the digits model: time and where it goes; importance on the cut against full forwards.

Run with ``make bench`` (all suites) or ``.venv/bin/python benchmarks/concepts.py [--quick]``. In one process:

* ``cnnlens.concepts.extract`` of 10 concepts of one digit from 200 of its images (the three digits splits
  together hold about 180 per digit; the images are drawn from all of them, repeated where needed), with the
  library's defaults (1024 Sobol designs, importance on 64 images): total time and the share spent running the
  model (activations of images and crops), in NMF and in importance.
* Importance passes: the model FLOPs (``torch.utils.flop_counter``) of one image's Sobol evaluation,
  ``1024 * (10 + 2)`` rebuilt activations, through the tail of the model cut at the concept layer against
  full forward passes (the hooked way: the whole model runs and the layer's output is replaced), and the time
  of both for a few images. The two give the same indices (printed: the largest difference).

Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import log
from cnnlens.concepts import extract
from cnnlens.concepts._factor import activations
from cnnlens.concepts._importance import image_importance
from cnnlens.data import digits
from cnnlens.models import cut_at, digits_cnn
from cnnlens.models._digits import digits_tensors

DIGIT, N_IMAGES, K = 3, 200, 10


def _class_images() -> torch.Tensor:
    parts = [digits(s) for s in ("train", "test", "field")]
    images = np.concatenate([d.images[d.labels == DIGIT] for d in parts])
    picks = np.random.default_rng(0).choice(len(images), size=N_IMAGES, replace=len(images) < N_IMAGES)
    return digits_tensors(images[np.sort(picks)])


def _flops(fn) -> int:  # noqa: ANN001
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer designs (256) and images for the timing")
    args = p.parse_args(argv)
    designs = 256 if args.quick else 1024
    clf = digits_cnn()
    x = _class_images()
    log(f"[concepts] extract {K} concepts of digit {DIGIT} from {len(x)} images ...")
    start = time.perf_counter()
    found = extract(clf, x, DIGIT, n_concepts=K, designs=designs, progress=False)
    total = time.perf_counter() - start
    shares = {k: v / total for k, v in found.seconds.items()}
    print(f"extract: {K} concepts of digit {DIGIT} from {len(x)} images, {designs} designs, importance on "
          f"{len(found.importance_rows)} images: {total:.1f} s")  # fmt: skip
    print(
        "  share: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) + f", other {1 - sum(shares.values()):.0%}"
    )
    print(f"  fidelity {found.fidelity:.3f}, agreement {found.agreement:.2f}, layer {found.layer}")

    module = clf.module.eval()
    cut = cut_at(module, found.layer)
    hooked = cut_at(module, found.layer)
    hooked.fall_back("benchmark: full forward passes")
    fact = found.factorization
    sample = x[:1]
    a, state = activations(cut, sample, False, 1, "")
    rows = designs * (K + 2)
    rebuilt = a.expand(rows, -1, -1, -1).contiguous()
    tail_flops = _flops(lambda: cut.tail(rebuilt, state.take(torch.zeros(rows, dtype=torch.long))))
    full_flops = _flops(lambda: module(sample.expand(rows, -1, -1, -1)))
    print(f"importance passes of one image ({rows} rows): model FLOPs with the cut {tail_flops / 1e6:.1f} M, with "
          f"full forwards {full_flops / 1e6:.1f} M: {full_flops / max(tail_flops, 1):.0f}x fewer")  # fmt: skip
    n = 2 if args.quick else 4
    u = fact.coefficients(activations(cut, x[:n], False, n, "")[0])
    times, diffs = {"cut": 0.0, "full": 0.0}, []
    for i in range(n):
        out = {}
        for name, c in (("cut", cut), ("full", hooked)):
            start = time.perf_counter()
            out[name] = image_importance(c, fact, u[i], c.head(x[i : i + 1])[1], [DIGIT], a, designs, 0)
            times[name] += time.perf_counter() - start
        diffs.append(float(np.abs(out["cut"] - out["full"]).max()))
    print(f"importance of {n} images: cut {times['cut']:.2f} s, full forwards {times['full']:.2f} s "
          f"({times['full'] / max(times['cut'], 1e-9):.1f}x); largest index difference {max(diffs):.1e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
