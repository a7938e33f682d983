"""Dataset-scale runs: every image explained by several methods and scored, written as it goes to a store on disk
(a Parquet table per shard, a Zarr store of maps chunked per image, a manifest), resumable after a kill, on this
machine or on Ray. `run` writes a store, `open_store` reads it back."""

from ._added import choose_label as choose_label
from ._added import compute_more as compute_more
from ._added import full_options as full_options
from ._kinds import kind_of as kind_of
from ._kinds import target_class as target_class
from ._reader import Store, open_store
from ._run import RunSummary, run
from ._run import Sources as Sources
from ._run import run_loaded as run_loaded
from ._sources import absolute as absolute

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = ["RunSummary", "Store", "open_store", "run"]
