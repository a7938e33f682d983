"""Quality metrics: model-parameter randomization check (Adebayo et al. 2018, "Sanity checks for saliency maps").

The explanation is recomputed on a deep copy of the model whose layers are re-initialised from the top down; a map
that stays the same while the model is destroyed does not explain the model. The caller's model is never touched.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..core.errors import CnnlensError
from ..core.hooks import module_calls
from ..core.model_guard import is_scripted
from ..core.options import flag, integer
from ._base import Metric, MetricRun
from ._registry import register_metric

T = torch.Tensor
ABSOLUTE = flag(True, "compare absolute values of the channel-summed maps")


def maps(a: T, absolute: bool) -> T:
    """``(B, H, W)`` float64 maps: attributions summed over channels, then made absolute if ``absolute``."""
    m = a.detach().double().sum(1)
    return m.abs() if absolute else m


def spearman(a: T, b: T) -> float:
    """Spearman rank correlation of two maps (ties get average ranks).

    A constant map has no ranking: two constant maps count as identical (1.0), one constant map against a
    varying one as unrelated (0.0).
    """
    x, y = a.reshape(-1).cpu().numpy(), b.reshape(-1).cpu().numpy()
    cx, cy = bool(np.ptp(x) == 0), bool(np.ptp(y) == 0)
    if cx or cy:
        return 1.0 if cx and cy else 0.0
    return float(stats.spearmanr(x, y).statistic)


def parameterized_layers(module: nn.Module, x: T) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters, in the order they finish their first call in one forward pass of ``x[:1]``.

    Modules the forward pass never calls are left out (their parameters cannot change the output).
    """
    owners = [(n, m) for n, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]
    with module_calls(owners, first=True) as calls, torch.no_grad():
        module(x[:1])
    return [(call.name, call.module) for call in calls]


def cascade(n_layers: int, steps: int) -> list[range]:
    """Split layer indices ``0..n_layers-1`` (top layer first) into ``min(steps, n_layers)`` consecutive groups.

    Group sizes differ by at most one, the larger groups first (7 layers in 3 stages: 3, 2, 2).
    """
    stages = min(steps, n_layers)
    size, extra = divmod(n_layers, stages)
    bounds = [0]
    for k in range(stages):
        bounds.append(bounds[-1] + size + (k < extra))
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def randomize_(layer: nn.Module, generator: torch.Generator) -> None:
    """Redraw every parameter the layer owns from a normal law with the tensor's own mean and standard deviation
    (its root mean square where it has no spread, e.g. a scalar)."""
    with torch.no_grad():
        for p in layer.parameters(recurse=False):
            v = p.detach().double()
            std = v.std() if v.numel() > 1 else v.new_zeros(())
            std = torch.where(std > 0, std, v.pow(2).mean().sqrt())
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            p.copy_((v.mean() + std * noise).to(p.device, p.dtype))


def with_module(model: Any, module: nn.Module) -> Any:
    """``model`` with ``module`` in place of its own: a shallow copy of a Classifier, or the module itself."""
    if isinstance(model, nn.Module):
        return module
    twin = copy.copy(model)
    twin.module = module
    return twin


@register_metric
class RandomizationCheck(Metric):
    """Cascading model-parameter randomization on a deep copy of the model (the caller's is never touched).

    Layers that own parameters are taken in reverse forward order and grouped into at most ``steps`` stages; each
    stage redraws its layers' parameters (``randomize_``, seeded), on top of the earlier stages, and re-explains.
    Curve: Spearman correlation (``spearman``) of the original and the randomized maps (channel sums, absolute if
    ``absolute``), per stage; value: the mean |correlation| over the stages. ``info["layers"]``: the layers each
    stage randomized; ``info["final"]``: the correlation with everything randomized. BatchNorm running statistics
    (buffers) are kept.
    """

    name = "randomization_check"
    summary = (
        "rank correlation of the map with maps of a copy whose layers are re-drawn top down, mean |rho| over the "
        "stages (Adebayo et al.)"
    )
    higher_is_better = False
    params = {
        "steps": integer(5, "randomization stages, top layer first"),
        "absolute": ABSOLUTE,
    }
    rerun = True
    kind = "curve"

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        absolute = self.options["absolute"]
        if is_scripted(job.module):
            raise CnnlensError(
                "randomization_check randomizes the layers in the order they run, which TorchScript code hides (it "
                "takes no forward hooks); check the model as an nn.Module (load its state dict into its class)"
            )
        original = maps(job.attributions, absolute)
        try:
            twin = copy.deepcopy(job.module)  # the caller's module is never modified
        except Exception as err:  # noqa: BLE001 - any failure to copy means the check cannot run safely
            raise CnnlensError(
                f"randomization_check randomizes a copy of the model, but copy.deepcopy failed ({err}); make the "
                f"module deep-copyable (e.g. no non-leaf tensors stored as attributes)"
            ) from err
        layers = parameterized_layers(twin, job.inputs)[::-1]
        job.explain_passes += 1
        if not layers:
            raise CnnlensError("randomization_check: the model has no parameters to randomize")
        twin_model = with_module(job.model, twin)
        generator = torch.Generator().manual_seed(int(job.explainer.seed) + 1)
        curve, names = [], []
        for stage in cascade(len(layers), int(self.options["steps"])):
            for i in stage:
                randomize_(layers[i][1], generator)
            names.append([layers[i][0] for i in stage])
            randomized = maps(job.explain(job.inputs, model=twin_model), absolute)
            curve.append([spearman(original[b], randomized[b]) for b in range(job.n)])
        c = torch.tensor(curve, dtype=torch.float64).T  # (B, stages)
        x = torch.arange(1, c.shape[1] + 1, dtype=torch.float64)
        return c.abs().mean(1), c, x, {"layers": names, "final": c[:, -1].tolist()}
