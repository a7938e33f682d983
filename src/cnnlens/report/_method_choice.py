"""Method choices and options sized for a report: the seed's methods by default, expensive ones kept small."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import CnnlensError, say, unknown_name

GRADIENT_METHODS = ("saliency", "integrated_gradients", "deeplift", "lrp", "grad_cam", "guided_grad_cam")
PERTURBATION_METHODS = ("occlusion", "feature_ablation", "shapley_sampling", "kernel_shap")
# SHAP-type methods average over a baseline distribution; with the zero baseline alone DeepLIFT-SHAP is DeepLIFT.
SHAP_BASELINES = ("black", "blur", "noise")
Methods = Sequence[str] | Mapping[str, Mapping[str, Any]] | None


def sized_options(method: str, size: tuple[int, int]) -> dict[str, Any]:
    """Options that keep ``method`` to a few hundred model passes per image on ``size`` = (H, W) inputs.

    Cells are about 1/7 of the image side (32 px on 224 px photos, 4 px on 32 px digits; small images get
    overlapping occlusion windows, stride half the window); Shapley-type methods
    use 16 segments; sampling methods 64-128 samples; integrated gradients 16 Gauss-Legendre steps; the SHAP
    methods average over black, blurred and noise baselines.
    """
    side = min(size)
    cell = max(2, side // 7)
    quarter = max(2, side // 4)
    superpixels = "slic:30" if side >= 64 else f"grid:{quarter}"
    table: dict[str, dict[str, Any]] = {
        "integrated_gradients": {"steps": 16},
        "gradient_shap": {"samples": 8, "baseline": list(SHAP_BASELINES)},
        "deeplift_shap": {"baseline": list(SHAP_BASELINES)},
        "occlusion": {"window": cell, "stride": cell if side >= 64 else max(1, cell // 2)},
        "feature_ablation": {"mask": f"grid:{cell}"},
        "feature_permutation": {"mask": f"grid:{cell}"},
        "region_occlusion": {"mask": superpixels},
        "shapley_sampling": {"mask": f"grid:{quarter}", "samples": 2},
        "kernel_shap": {"mask": superpixels, "samples": 64},
        "lime": {"mask": superpixels, "samples": 64},
        "partition_shap": {"mask": f"grid:{cell}", "max_evals": 64},
        "rise": {"samples": 128},
    }
    return dict(table.get(method, {}))


def resolve_methods(methods: Methods, default: Sequence[str], size: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """``None`` -> ``default``; names get `sized_options`; a mapping's options are merged over them."""
    from ..attribution import method_items
    from ..attribution import methods as registry

    known = {m.name for m in registry()}
    items = method_items(list(default) if methods is None else methods)
    if items is None:
        raise CnnlensError(f"methods must be names or a mapping name -> options; got {type(methods).__name__}.")
    chosen = dict(items)
    for m in chosen:
        if m not in known:
            raise unknown_name("method", m, known)
    pixels = {m.name for m in registry() if m.maps_pixels}
    off = [m for m in chosen if m not in pixels]
    if off:
        raise CnnlensError(
            f"{', '.join(off)} attribute(s) to a layer's units or explain a neuron, not a class over the pixels, and "
            "a report shows maps over the image: leave them out, and explain with them directly: "
            + say("cnnlens.explain(model, x, name, layer=...)", "cnnlens explain IMAGE --layer NAME --methods ...")
        )
    bad = [m for m, opts in chosen.items() if opts is not None and not isinstance(opts, Mapping)]
    if bad:
        raise CnnlensError(
            f"The options of {', '.join(bad)} must be a mapping such as {{'steps': 16}}; "
            f"got {type(chosen[bad[0]]).__name__}."
        )
    return {m: {**sized_options(m, size), **dict(opts or {})} for m, opts in chosen.items()}
