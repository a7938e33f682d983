"""Perturbation methods. Importing this package registers them; the classes are usable directly too."""

from .._baselines import inpaint_baseline
from .._masks import feature_masks
from ._common import top_segments
from ._incremental import changed_scores as changed_scores
from ._incremental import engine as engine
from ._incremental import full as full
from ._incremental import incremental_option as incremental_option
from .ablation import FeatureAblation, FeaturePermutation, RegionOcclusion
from .lime import Lime
from .occlusion import Occlusion
from .partition import PartitionShap
from .rise import Rise
from .shapley import KernelShap, ShapleySampling

__all__ = [
    "FeatureAblation",
    "FeaturePermutation",
    "KernelShap",
    "Lime",
    "Occlusion",
    "PartitionShap",
    "RegionOcclusion",
    "Rise",
    "ShapleySampling",
    "feature_masks",
    "inpaint_baseline",
    "top_segments",
]
