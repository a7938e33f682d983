"""The Ray backend: the run's pending shards as a Ray Data data set, mapped by a pool of actors that each hold the
model, and written to the store by this process as results arrive (so workers need no access to the store).

Each actor asks for one CPU (and one GPU when the model is on CUDA) and runs torch with one thread per CPU it holds;
the pool has one actor per CPU of the cluster by default. Nothing else in the pipeline asks for a CPU (the shard
list is built in memory), so a pool that fills the cluster never waits for a task that cannot be scheduled.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Iterator

import numpy as np

from ..core.errors import CnnlensError
from ._compute import ShardResult, compute_shard
from ._settings import RunPlan


class ShardWorker:
    """A Ray Data actor: holds the job (model and data set) and computes the shards it is given."""

    def __init__(self, job: RunPlan, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.job = job

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [compute_shard(self.job, int(k)) for k in batch["shard"]]
        payload = np.empty(len(results), dtype=object)
        payload[:] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]
        return {"shard": np.asarray(batch["shard"]), "result": payload}


def _start(address: str | None) -> bool:
    """Connect to Ray (``address``) or start a local instance; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    try:  # address None: start a local instance
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise CnnlensError(f"cannot start or reach {where}: {e}") from e
    return True


def ray_results(job: RunPlan, pending: list[int], address: str | None, workers: int | None) -> Iterator[ShardResult]:
    """Results of the ``pending`` shards computed on Ray, in the order they finish."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise CnnlensError("the Ray backend needs Ray: pip install 'cnnlens[ray]' (or use the local backend)") from e
    if not pending:
        return
    started = _start(address)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # e.g. "progress bars disabled": ours are on
        with warnings.catch_warnings():  # Ray's own deprecation notices about its settings, nothing of ours
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = min(workers or max(1, cpus), len(pending))
        gpus = 1 if job.classifier.device.type == "cuda" else 0
        shards = ray.data.from_items([{"shard": k} for k in pending], override_num_blocks=len(pending))
        mapped = shards.map_batches(
            ShardWorker,
            fn_constructor_kwargs={"job": job, "threads": 1},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=1,
            num_gpus=gpus,
            batch_format="numpy",
        )
        try:
            for row in mapped.iter_rows():
                yield pickle.loads(row["result"])
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, CnnlensError):
                raise CnnlensError(str(cause)) from e
            raise
    finally:
        if started:
            ray.shutdown()
