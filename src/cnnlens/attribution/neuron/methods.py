"""Neuron attribution with the input methods: each one explains a unit's value instead of a class score."""

from __future__ import annotations

import torch

from ...engine import Context
from .._paths import PATH_OPTIONS
from .._registry import register
from ..gradient.deeplift import DeepLift, DeepLiftShap
from ..gradient.gradient_shap import GradientShap
from ..gradient.integrated_gradients import integrated_gradients
from ..gradient.simple import Deconvnet, GuidedBackprop
from ..perturbation.ablation import FeatureAblation
from ._base import NeuronMethod

T = torch.Tensor


@register
class NeuronGradient(NeuronMethod):
    name = "neuron_gradient"
    invariances = frozenset({"shift", "unsigned", "batch"})
    summary = "Gradient of the neuron's value w.r.t. the input (signed)."

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        return ctx.input_gradients(), None


@register
class NeuronIntegratedGradients(NeuronMethod):
    name = "neuron_integrated_gradients"
    invariances = frozenset({"shift", "unsigned", "baseline_zero", "batch"})
    summary = "Integrated gradients of the neuron's value; sums to its value on the image minus on the baseline."
    params = {**NeuronMethod.params, **PATH_OPTIONS}
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        assert baseline is not None
        return integrated_gradients(ctx, baseline, self.options, self.name)


@register
class NeuronGradientShap(NeuronMethod, GradientShap):
    name = "neuron_gradient_shap"
    invariances = frozenset({"shift", "unsigned", "baseline_zero"})
    summary = "Expected gradients of the neuron's value (baselines from a distribution, random path points)."
    params = {**NeuronMethod.params, **GradientShap.params}


@register
class NeuronDeepLift(NeuronMethod, DeepLift):
    name = "neuron_deeplift"
    invariances = frozenset({"shift", "unsigned", "baseline_zero", "batch"})
    summary = "DeepLIFT (rescale rule) of the neuron's value; sums to its value on the image minus on the baseline."


@register
class NeuronDeepLiftShap(NeuronMethod, DeepLiftShap):
    name = "neuron_deeplift_shap"
    invariances = frozenset({"shift", "unsigned", "baseline_zero", "batch"})
    summary = "DeepLIFT of the neuron's value averaged over a baseline distribution."


@register
class NeuronGuidedBackprop(NeuronMethod, GuidedBackprop):
    name = "neuron_guided_backprop"
    invariances = frozenset({"shift", "unsigned", "batch"})
    summary = "Guided backprop of the neuron's value (ReLU-like activations pass only positive gradients)."
    params = {**NeuronMethod.params, **GuidedBackprop.params}


@register
class NeuronDeconvnet(NeuronMethod, Deconvnet):
    name = "neuron_deconvnet"
    invariances = frozenset({"shift", "unsigned", "batch"})
    summary = "Deconvnet backward pass of the neuron's value."
    params = {**NeuronMethod.params, **Deconvnet.params}


@register
class NeuronFeatureAblation(NeuronMethod, FeatureAblation):
    name = "neuron_feature_ablation"
    invariances = frozenset({"shift", "unsigned", "baseline_zero", "batch"})
    summary = "Drop of the neuron's value when each segment of a feature mask is replaced by the baseline."
    params = {**NeuronMethod.params, **FeatureAblation.params}
