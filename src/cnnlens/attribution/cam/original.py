"""CAM (Zhou et al. 2016): for networks ending in global average pooling + one linear layer.

The head is read from the model's traced graph (``cnnlens.models.gap_head``), so pooling written in the forward
code (``F.adaptive_avg_pool2d(x, 1)``, ``x.mean([2, 3])``, ``avg_pool2d`` over the whole map, then ``flatten`` /
``view`` / ``reshape``) counts as well as ``nn.AdaptiveAvgPool2d(1)``. Element-wise functions between the layer and
the pooling (DenseNet's ``F.relu`` after ``features``) are applied to the layer's maps first: CAM is computed on the
maps that are pooled, ``CAM_c = sum_k w_ck * phi(A_k)``, and ``info["cam"]["applied"]`` lists them.
"""

from __future__ import annotations

import torch
from torch import nn

from ...core.errors import CnnlensError, say
from ...engine import Context
from ...models import GapHead, Untraceable, class_rows, gap_head, get_layer
from .._layers import resolve_layer
from .._precision import tolerance, working
from .._registry import register
from ._base import CamMethod, check_spatial, upsample

T = torch.Tensor


def _last_pool(model: nn.Module) -> tuple[str, nn.Module] | None:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    return found[-1] if found else None


def _last_linear(model: nn.Module) -> nn.Linear:
    found = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise CnnlensError("cam needs a model that ends in one nn.Linear layer; this one has none. Use grad_cam")
    return found[-1]


def _by_module_types(model: nn.Module, layer: str | None, why: str) -> GapHead:
    """The head found by module types where the model cannot be traced: the input of the last
    ``nn.AdaptiveAvgPool2d(1)`` (or the given layer's output) and the last ``nn.Linear``; checked on the logits."""
    linear = _last_linear(model)
    if layer is not None:
        return GapHead(layer, False, linear, "a global average pooling (assumed; checked on the logits)")
    pool = _last_pool(model)
    if pool is None or getattr(pool[1], "output_size", None) not in (1, (1, 1)):
        raise CnnlensError(
            f"cam reads the model's pooling head from its traced graph, and {why}; found by module types, this "
            "model has no nn.AdaptiveAvgPool2d(1) either. Pass "
            + say("layer=", "--set layer=NAME")
            + " (the layer whose maps are pooled) or use grad_cam, which equals CAM on such networks and works on any"
        )
    return GapHead(pool[0], True, linear, f"{pool[0]} (AdaptiveAvgPool2d to 1 x 1)")


@register
class Cam(CamMethod):
    name = "cam"
    invariances = frozenset({"shift", "negation", "batch"})
    summary = "CAM: the last linear layer's class weights applied to the feature map that is average-pooled."
    uses_gradients = False
    relu = False

    def head(self, ctx: Context) -> tuple[GapHead, str]:
        """The pooling head seen from the requested layer (default: the layer whose maps are pooled), and how it
        was found."""
        spec = self.options["layer"]
        if isinstance(spec, (list, tuple)):
            if len(spec) != 1:
                raise CnnlensError("cam uses one layer, the one whose maps are pooled; give one layer or none")
            spec = spec[0]
        if isinstance(ctx.model, torch.jit.ScriptModule):  # (a model with scripted parts falls back below)
            raise CnnlensError(
                "cam captures a layer's activations with a forward hook, which TorchScript code does not take; "
                "explain the model as an nn.Module (load its state dict into its class), or use a method without "
                "hooks (saliency, integrated_gradients, occlusion)"
            )
        name = None if spec is None else resolve_layer(ctx, spec)[0]
        try:
            return gap_head(ctx.model, name), "traced graph"
        except Untraceable as err:
            return _by_module_types(ctx.model, name, str(err)), f"module types ({err})"

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        head, found = self.head(ctx)
        (acts,) = ctx.layer_outputs([get_layer(ctx.model, head.layer)], head.inputs)  # these passes give the logits
        if ctx.targets is None:
            raise CnnlensError("cam explains class logits: give class indices as target, not a callable")
        check_spatial(head.layer, acts)
        maps = head.maps(acts)
        if head.window is not None and tuple(maps.shape[-2:]) != head.window:
            raise CnnlensError(
                f"cam needs global average pooling: this model pools with {head.pooling} and its maps are "
                f"{tuple(maps.shape[-2:])}, so the pooled vector is not their mean and CAM does not apply; give "
                f"inputs whose maps are {head.window}, or use grad_cam"
            )
        check_logits(ctx, maps, head.linear)
        if head.linear is None:  # the pooled maps are the logits: class c's map is CAM's map for c
            cam = maps.gather(1, ctx.targets.view(-1, 1, 1, 1).expand(-1, 1, *maps.shape[-2:]))
        else:
            weights = class_rows(head.linear.weight)[ctx.targets]  # one logit: class 0 is the negated logit
            cam = (weights[:, :, None, None] * maps).sum(1, keepdim=True)
        names = {id(m): n for n, m in ctx.model.named_modules()}
        ctx.info["layers"] = [head.layer]
        ctx.info["layer_maps"] = [cam]
        ctx.info["cam"] = {
            "layer": head.layer,
            "captured": "input" if head.inputs else "output",
            "applied": list(head.applied),
            "pooling": head.pooling,
            "linear": None if head.linear is None else names.get(id(head.linear), "nn.Linear"),
            "found_by": found,
        }
        return upsample(cam, (ctx.inputs.shape[-2], ctx.inputs.shape[-1])), None


def check_logits(ctx: Context, maps: T, linear: nn.Linear | None) -> None:
    """Raise unless the model's logits are ``linear`` (``None``: the identity) applied to the spatial mean of
    ``maps``."""
    takes = ctx.logits.shape[1] if linear is None else linear.in_features
    if takes != maps.shape[1]:
        into = "the logits, which are" if linear is None else "the linear layer, which takes"
        raise CnnlensError(
            f"cam needs the feature map's {maps.shape[1]} channels to be average-pooled straight into {into} "
            f"{takes}. Use grad_cam instead"
        )
    pooled = working(maps).mean((2, 3))
    w = torch.eye(takes, dtype=pooled.dtype, device=pooled.device) if linear is None else working(linear.weight)
    expected = pooled @ w.T + (0 if linear is None or linear.bias is None else working(linear.bias))
    logits = working(ctx.logits)
    tol = tolerance(maps.dtype, 1e-4)  # float16/bfloat16: the model's own rounding, relative to its terms
    scale = max(float(logits.abs().max()), float((pooled.abs() @ w.abs().T).max()) if tol > 1e-4 else 0.0)
    if not torch.allclose(expected, logits, rtol=tol, atol=tol * scale):
        raise CnnlensError(
            "the model's logits are not its last linear layer applied to the global average of this feature "
            "map, so CAM's class weights do not explain them; use grad_cam (any architecture) instead"
        )
