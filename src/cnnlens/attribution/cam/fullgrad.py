"""FullGrad (Srinivas & Fleuret 2019): input-gradient and bias-gradient maps of every layer, summed."""

from __future__ import annotations

import functools
import operator

import torch
from torch import nn

from ...core.errors import CnnlensError
from ...core.model_guard import is_scripted
from ...engine import Context
from .._base import Method
from .._registry import register
from ._base import upsample_rescaled

T = torch.Tensor


def _bias(module: nn.Module) -> T | None:
    """The bias a layer adds to each channel (BatchNorm in eval mode: beta - gamma * mean / std)."""
    if isinstance(module, nn.Conv2d) and module.bias is not None:
        return module.bias
    if isinstance(module, nn.BatchNorm2d) and module.track_running_stats:
        if module.running_mean is None or module.running_var is None:
            return None
        scale = module.weight / torch.sqrt(module.running_var + module.eps) if module.affine else 1.0
        shift = module.bias if module.affine else 0.0
        return shift - scale * module.running_mean
    return None


def _psi(t: T, size: tuple[int, int], chunk: int = 64) -> T:
    """The paper's post-processing, summed over channels: absolute value, bilinear upsampling, each channel
    rescaled to [0, 1]. Channels go through in groups of ``chunk`` to keep the upsampled copies small."""
    t = t.abs()
    parts = (upsample_rescaled(t[:, c : c + chunk], size).sum(1, keepdim=True) for c in range(0, t.shape[1], chunk))
    return functools.reduce(operator.add, parts)


@register
class FullGrad(Method):
    name = "fullgrad"
    invariances = frozenset({"shift", "unsigned", "batch"})
    category = "cam"
    summary = "FullGrad: absolute input x gradient plus absolute bias x gradient of every conv/BatchNorm layer."
    output = "map"

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        if is_scripted(ctx.model):
            raise CnnlensError(
                "fullgrad reads the bias gradients of the model's layers, which TorchScript code hides; explain the "
                "model as an nn.Module (load its state dict into its class)"
            )
        named = [(n, m, b) for n, m in ctx.model.named_modules() if (b := _bias(m)) is not None]
        if not named:
            raise CnnlensError("fullgrad needs layers with biases (convolutions with bias or BatchNorm); none found")
        layers = [m for _, m, _ in named]
        back = ctx.backward(ctx.inputs, ctx.owners(), layers=layers)
        gx, grads = back.grad, back.layer_grads
        assert gx is not None  # input gradients were asked for
        size = (ctx.inputs.shape[-2], ctx.inputs.shape[-1])
        total = torch.zeros(ctx.n, 1, *size, dtype=ctx.inputs.dtype, device=ctx.inputs.device)
        used = []
        for i in range(ctx.n):
            total[i] = _psi(gx[i : i + 1] * ctx.inputs[i : i + 1], size)[0]
            for (name, _, b), g in zip(named, grads, strict=True):
                if g.dim() != 4:
                    continue
                total[i] += _psi(g[i : i + 1] * b[None, :, None, None], size)[0]
                if i == 0:
                    used.append(name)
        ctx.info["layers"] = used
        return total, None
