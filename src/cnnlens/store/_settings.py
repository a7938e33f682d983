"""What a dataset run computes: the job (model, data, methods, metrics, options) and its manifest.

The manifest is the job written down: the model (its weights' SHA-256, classes, preprocessing), the data set (its
ids, labels and classes hashed), every method and metric with all their options (defaults filled in), the
targets explained, how maps are kept, the shard size, the seed and the cnnlens version. A store holds the results
of exactly one manifest: `differences` says what another run would change, and the run is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import CnnlensError

if TYPE_CHECKING:
    from ..models import Classifier

FORMAT = "cnnlens-store/1"
EXPLAIN = ("predicted", "label", "both")
"""Which class each image is explained for: the predicted one, the true label, or both (the label's
explanation is added where it differs from the prediction, i.e. for the errors)."""
MAX_ALL_CLASSES = 100
"""With ``top_k=None`` every class probability is kept up to this many classes, else the top 10."""
EXPLANATION_COLUMNS = (
    "position", "id", "method", "explains", "target", "seconds", "passes", "delta", "attribution_sum",
    "map_scale", "warnings", "notes",
)  # fmt: skip
RUN_ONLY = ("created", "run", "added")
"""Manifest entries that describe one run, not what is computed: they may differ when a run is resumed (``added``:
the methods added after the run, `Store.explain`)."""


@dataclass
class RunPlan:
    """Everything a worker needs to compute any shard of a run (picklable, sent to Ray actors)."""

    classifier: Classifier
    dataset: Any
    methods: dict[str, tuple[str, dict[str, Any]]]
    """label -> (registry name, options as given, ``baseline`` included)."""
    metrics: dict[str, dict[str, Any]]
    explain: str
    top_k: int
    downsample: int | None
    shard_size: int
    seed: int
    batch_size: int | None
    ids: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def shards(self) -> int:
        return math.ceil(self.size / self.shard_size)

    def bounds(self, shard: int) -> tuple[int, int]:
        """Dataset positions ``[start, stop)`` of ``shard``."""
        start = shard * self.shard_size
        return start, min(self.size, start + self.shard_size)


def shard_seed(seed: int, shard: int) -> int:
    """The seed shard ``shard`` is explained and scored with: NumPy's ``SeedSequence([seed, shard])``, so every
    shard has its own stream whatever order, process or machine computes it."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(shard)]).generate_state(1)[0])


def plain(value: Any, what: str) -> Any:
    """``value`` as JSON values (tuples become lists); options that JSON cannot hold are refused."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise CnnlensError(
            f"{what} must be plain values (numbers, strings, booleans, lists) to be written to the store's "
            f"manifest; got {value!r}"
        ) from e
    return json.loads(text)


def resolve_methods(methods: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (registry name, all options with defaults filled in, plus ``baseline`` when given)."""
    from ..attribution import method_choices

    if isinstance(methods, (Sequence, Mapping)) and not isinstance(methods, str) and len(methods) == 0:
        return {}  # a store of predictions only; methods are added to it later (`Store.explain`)
    return {
        label: (c.method, plain(c.full_options(), f"the options of method {label!r}"))
        for label, c in method_choices(methods).items()
    }


def resolve_metrics(metrics: Any) -> dict[str, dict[str, Any]]:
    """metric name -> all its options (none when ``metrics`` is ``None``)."""
    from ..quality import get_metric, scorecard_metrics

    if metrics is None:
        return {}
    if isinstance(metrics, Sequence) and not isinstance(metrics, str):
        twice = sorted({str(m) for m in metrics if list(metrics).count(m) > 1})
        if twice:
            raise CnnlensError(f"metric {twice[0]!r} is listed twice")
    resolved = {}
    for name, opts in scorecard_metrics(metrics).items():
        if name in EXPLANATION_COLUMNS:
            raise CnnlensError(f"a metric named {name!r} would clash with the store's own column of that name")
        resolved[name] = plain(dict(get_metric(name)(**opts).options), f"the options of metric {name!r}")
    return resolved


def model_fingerprint(module: Any) -> str:
    """SHA-256 of the module's state (names, dtypes, shapes and bytes of every parameter and buffer)."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def data_fingerprint(ids: Sequence[str], labels: Sequence[int] | None, classes: Sequence[str] | None) -> str:
    """SHA-256 of the data set's ids, labels (when it lists them) and class names, in order."""
    payload = {"ids": list(ids), "labels": None if labels is None else [int(v) for v in labels], "classes": classes}
    return "sha256:" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def dataset_ids(dataset: Any) -> list[str]:
    ids = getattr(dataset, "ids", None)
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(dataset))]
    twice = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if twice:
        raise CnnlensError(f"the data set's ids must be unique to name the stored rows; repeated: {twice[:5]}")
    return ids


def build_manifest(job: RunPlan, model_source: str | None, data_spec: str | None, version: str) -> dict[str, Any]:
    """The manifest of ``job`` (see the module docstring)."""
    clf, ds = job.classifier, job.dataset
    classes = list(clf.class_names) if clf.class_names is not None else None
    labels = getattr(ds, "labels", None)
    data_classes = getattr(ds, "classes", None)
    prep = clf.preprocessing
    return {
        "format": FORMAT,
        "cnnlens": version,
        "model": {
            "name": clf.name,
            "source": model_source,
            "fingerprint": model_fingerprint(clf.module),
            "classes": classes,
            "preprocessing": None if prep is None else plain(dataclasses.asdict(prep), "preprocessing"),
        },
        "dataset": {
            "spec": data_spec,
            "name": str(getattr(ds, "name", type(ds).__name__)),
            "size": job.size,
            "classes": None if data_classes is None else [str(c) for c in data_classes],
            "fingerprint": data_fingerprint(job.ids, None if labels is None else list(labels), data_classes),
            "skipped": [[str(i), str(r)] for i, r in getattr(ds, "skipped", [])],
        },
        "methods": {label: {"method": name, "options": opts} for label, (name, opts) in job.methods.items()},
        "metrics": job.metrics,
        "explain": job.explain,
        "top_k": job.top_k,
        "maps": {
            "dtype": "float16",
            "scale": "each map divided by its largest absolute value (column map_scale)",
            "cam": "single-layer CAM maps at the layer's resolution",
            "downsample": job.downsample,
        },
        "shard_size": job.shard_size,
        "seed": job.seed,
        "seeds": "shard k is explained and scored with numpy.random.SeedSequence([seed, k]).generate_state(1)[0]",
    }


def _compared(manifest: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in manifest.items() if k not in RUN_ONLY}
    out["model"] = {
        k: v for k, v in manifest.get("model", {}).items() if k not in ("name", "source", "arch", "arch_root")
    }
    out["dataset"] = {
        k: v for k, v in manifest.get("dataset", {}).items() if k not in ("spec", "name", "skipped", "class_map")
    }
    return out


def differences(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What ``new`` would compute differently from the store's manifest, one line per setting."""
    a, b = _compared(stored), _compared(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            for sub in sorted(set(a[key]) | set(b[key])):
                if a[key].get(sub) != b[key].get(sub):
                    lines.append(f"{key}.{sub}: store {_short(a[key].get(sub))}, this run {_short(b[key].get(sub))}")
        else:
            lines.append(f"{key}: store {_short(a.get(key))}, this run {_short(b.get(key))}")
    return lines


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_source(value: Any) -> str | None:
    """The text a model or data set was given as (a bundled name, a path or a spec), for the manifest."""
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
