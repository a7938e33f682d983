"""Total Sobol indices of a function on the unit cube, with SciPy's quasi-random (Sobol' sequence) designs.

``sobol_total(f, d)`` evaluates ``f`` on ``designs * (d + 2)`` points (Saltelli's scheme: matrices A, B and the
d matrices A with column i taken from B) and returns Jansen's estimator of the total indices
``S_Ti = E[Var(f | x_~i)] / Var(f)``: the share of the output's variance that involves input ``i``, alone or with
others (Saltelli et al. 2010, "Variance based sensitivity analysis of model output"). CRAFT (Fel et al. 2023)
ranks concepts this way: the inputs are masks that scale each concept's coefficients.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from ..core.errors import CnnlensError

DESIGNS = 1024
"""Default design size: recovers the Ishigami function's total indices within 0.02 (tests)."""


def sobol_total(
    func: Callable[[np.ndarray], np.ndarray], dimensions: int, designs: int = DESIGNS, seed: int = 0
) -> np.ndarray:
    """Total Sobol indices ``(d,)`` (or ``(m, d)`` for ``m`` outputs) of ``func`` on ``[0, 1]^d``.

    ``func``: points ``(n, d)`` -> values ``(n,)`` or ``(n, m)``. ``designs``: a power of 2 (``func`` sees
    ``designs * (d + 2)`` points). An output that does not vary gets indices 0. Deterministic under ``seed``.
    Raises ``CnnlensError`` for a design size that is not a power of 2 or fewer than 1 dimension.
    """
    designs, d = int(designs), int(dimensions)
    if designs < 2 or designs & (designs - 1):
        raise CnnlensError(f"the design size must be a power of 2 (e.g. 256, 1024); got {designs}.")
    if d < 1:
        raise CnnlensError(f"Sobol indices need at least one input; got {d}.")
    single: list[bool] = []
    if d == 1:  # one input explains all the variance there is (SciPy does not take d = 1)
        x = stats.qmc.Sobol(1, seed=np.random.default_rng(seed)).random(designs)
        y = np.asarray(func(x), dtype=np.float64)
        total = (np.ptp(y.reshape(len(y), -1), axis=0) > 0).astype(np.float64)[:, None]
        return total[0] if y.ndim == 1 else total

    def transposed(x: np.ndarray) -> np.ndarray:
        y = np.asarray(func(np.ascontiguousarray(x.T)), dtype=np.float64)
        single.append(y.ndim == 1)
        return y.reshape(len(y), -1).T

    with np.errstate(invalid="ignore", divide="ignore"):
        result = stats.sobol_indices(
            func=transposed, n=designs, dists=[stats.uniform(0, 1)] * d, rng=np.random.default_rng(seed)
        )
    total = np.nan_to_num(np.atleast_2d(result.total_order), nan=0.0)
    return total[0] if single and single[0] else total
