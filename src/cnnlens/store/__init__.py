"""Dataset-scale runs: every image explained by several methods and scored, written as it goes to a store on disk
(a Parquet table per shard, a Zarr store of maps chunked per image, a manifest), resumable after a kill, on this
machine or on Ray. `run` writes a store, `open_store` reads it back."""

from ._reader import Store, open_store
from ._run import RunSummary, run

__all__ = ["RunSummary", "Store", "open_store", "run"]
