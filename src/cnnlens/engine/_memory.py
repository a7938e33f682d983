"""Automatic batch size from a memory budget, and recognising out-of-memory errors."""

from __future__ import annotations

import torch
from torch import nn

# A CNN keeps roughly this many input-sized tensors alive per sample during forward + backward
# (activations, saved tensors, gradients). Deliberately pessimistic; out-of-memory backs off anyway.
_ACTIVATION_FACTOR = 400
_BUDGET_FRACTION = 0.25
_MAX_BATCH = 256
# On a CPU, large batches fall out of cache: measured on EfficientNet-Lite0 at 224 px, 4 images per pass are
# fastest for forward passes (17 ms/image; 7 images: 24-32 ms/image; 25: slower still). Keep about this many
# input values per pass.
_CPU_INPUT_VALUES = 620_000
# Rows of a layer's output for the tail of a cut model: measured on EfficientNet-Lite0's tail after _conv_head
# (1280 x 7 x 7 values a row; Ablation-CAM's 1280 rows), 32 rows per pass are 1.7x faster than 9, 128 no faster.
_CPU_LAYER_VALUES = 2_000_000


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def auto_batch_size(model: nn.Module, inputs: torch.Tensor, layer: bool = False) -> int:
    """Inputs per forward pass: what fits a quarter of the free memory, and on a CPU what stays fast
    (``layer``: the inputs are a layer's output, run through the tail of the model cut there)."""
    per_sample = max(1, inputs[0].numel() * inputs.element_size() * _ACTIVATION_FACTOR)
    budget = _available_bytes(inputs.device) * _BUDGET_FRACTION
    size = min(_MAX_BATCH, budget // per_sample)
    if inputs.device.type == "cpu":
        size = min(size, (_CPU_LAYER_VALUES if layer else _CPU_INPUT_VALUES) // max(1, inputs[0].numel()))
    return int(max(1, size))


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "DefaultCPUAllocator" in text
    )
