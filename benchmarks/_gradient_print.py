"""Printing for benchmarks/gradient.py: the method table and the IG steps-to-1% ladder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOLERANCE = 0.01  # the completeness target of the IG ladder (same value as gradient.py)


@dataclass
class LadderResult:
    who: str
    quadrature: str
    steps: int | None  # None: not reached
    passes: list[int]
    seconds: float
    delta: float
    trace: str
    search_seconds: float  # all rungs tried (what finding the step count costs)


def trapezoid_weight_sum(n: int) -> float | None:
    """Sum of Captum's riemann_trapezoid step sizes (1 for a correct rule); None if not inspectable."""
    try:
        from captum.attr._utils.approximation_methods import approximation_parameters

        return float(sum(approximation_parameters("riemann_trapezoid")[0](n)))
    except Exception:  # noqa: BLE001 - a private helper; the note is optional
        return None


# ---- printing ----------------------------------------------------------------------------------------------
def load_average() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "?"


def fmt(v: float | None, spec: str = ".1e") -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[Any]) -> None:
    head = (
        f"{'method':<21} {'ours/Captum':>11} {'ours s':>7} {'Captum s':>8} {'rows ours/Captum':>16} "
        f"{'max|diff|/max|attr|':>19} {'ours |δ|/gap':>12} {'Captum |δ|/gap':>14}  note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r.ours.seconds / r.theirs.seconds
        print(
            f"{r.case.name:<21} {ratio:>10.2f}x {r.ours.seconds:>7.3f} {r.theirs.seconds:>8.3f} "
            f"{f'{r.ours.rows}/{r.theirs.rows}':>16} {r.diff:>19.1e} {fmt(r.our_delta):>12} "
            f"{fmt(r.their_delta):>14}  {r.note}"
        )


def print_ladder(results: list[LadderResult], warns: list[str], ladder: tuple[int, ...]) -> None:
    head = (
        f"{'who':<8} {'quadrature':<20} {'steps':>12} {'passes/image':>14} {'seconds':>8} {'search s':>8} "
        f"{'|δ|/gap':>8}  ladder (steps:max |δ|/gap)"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        steps = "not reached" if r.steps is None else ("reached" if r.steps == 0 else str(r.steps))
        passes = ", ".join(map(str, r.passes))
        print(
            f"{r.who:<8} {r.quadrature:<20} {steps:>12} {passes:>14} {r.seconds:>8.2f} {r.search_seconds:>8.2f} "
            f"{r.delta:>8.2%}  {r.trace}"
        )
    print(
        f"(Captum: one run at the first rung that reaches {TOLERANCE:.0%} on both images, or the last rung "
        f"{ladder[-1]}; passes include f(x) and f(x0); search s: all rungs tried. cnnlens: one run.)"
    )
    w = trapezoid_weight_sum(ladder[0])
    if w is not None and abs(w - 1) > 1e-6:
        print(
            f"note: Captum's riemann_trapezoid step sizes sum to 1 - 1/n (e.g. {w:.4f} at n={ladder[0]}) with "
            f"nodes spaced 1/(n-1), so its IG is scaled by (n-1)/n: |δ| ~ |f(x)-f(x0)|/n however smooth the path."
        )
    for m in warns:
        print(f"cnnlens warning: {m}")
