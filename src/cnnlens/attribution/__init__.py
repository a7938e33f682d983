"""Attribution: one call shape for every method, a registry that lists them once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.errors import CnnlensError
from ..engine import Target
from ..models import inputs_checked as inputs_checked  # quality's re-explained rows skip the range check
from ._base import INVARIANCES as INVARIANCES
from ._base import Explanation, Method
from ._base import check_inputs as check_inputs
from ._base import check_run_options as check_run_options
from ._base import unwrap as unwrap
from ._baselines import BASELINE_NAMES as BASELINE_NAMES
from ._baselines import drawing_from as drawing_from
from ._baselines import single_baseline as single_baseline
from ._registry import CATEGORIES as CATEGORIES
from ._registry import MethodInfo, get_method, method_table, methods, register
from ._smooth import SMOOTH_OPTIONS as SMOOTH_OPTIONS
from ._specs import MethodChoice as MethodChoice
from ._specs import method_choices as method_choices
from ._specs import method_items as method_items

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from torch import nn

    from ..data import ImageInput
    from ..models import Classifier
    from ._baselines import BaselineSpec

# The families register their methods on import; the registry itself imports none of them.
from . import cam, gradient, layer, neuron, perturbation, propagation  # noqa: E402, F401  isort: skip

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = ["Explanation", "Method", "MethodInfo", "explain", "get_method", "method_table", "methods", "register"]


def explain(
    model: Classifier | nn.Module,
    inputs: torch.Tensor | ImageInput | Sequence[ImageInput],
    method: str | Method | type[Method] = "saliency",
    *,
    target: Target = None,
    baseline: BaselineSpec = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    **options: Any,
) -> Explanation:
    """Attribute the model's decision for ``inputs`` with one registered method.

    ``model``: a cnnlens ``Classifier`` or any ``nn.Module`` returning ``(B, K)`` logits. ``inputs``: a
    ``(B, C, H, W)`` tensor, or images (paths, PIL, arrays) when ``model`` is a ``Classifier``. ``target``:
    ``None`` (predicted class), an int, one int per image, or a callable ``logits -> score per row``.
    ``batch_size``: most model inputs per forward pass (``None``: automatic). ``progress``: a bar on stderr counts
    the model passes when the run takes over two seconds; ``False`` silences it and every bar opened inside.
    ``options``: the method's own
    (see ``cnnlens.methods()``), plus ``smooth=`` ("smoothgrad", "smoothgrad_sq", "vargrad"),
    ``smooth_samples=`` and ``smooth_std=`` for any method.
    """
    if isinstance(method, Method):
        if options:
            raise CnnlensError("give options when constructing the method object, not to explain()")
        instance = method
    else:
        cls = get_method(method) if isinstance(method, str) else method
        instance = cls(**options)
    return instance(
        model, inputs, target=target, baseline=baseline, batch_size=batch_size, seed=seed, progress=progress
    )
