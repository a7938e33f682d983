"""The store on disk, and writing it so that a kill at any moment loses at most the shard being written.

```
STORE/
  manifest.json                  what the run computes (see _settings.py); written once, atomically
  images/part-000012.parquet     one row per image of shard 12 (written last: the shard's commit mark)
  explanations/part-000012.parquet  one row per (image, method, class explained) of shard 12
  maps/                          Zarr v3 group: METHOD/predicted and METHOD/label arrays (N, C, h, w), float16,
                                 chunks of whole images (one per chunk, small maps grouped up to 64 KiB), one
                                 Zarr shard file per run shard
  .lock                          held (flock) by the run writing the store
```

A shard is done when, and only when, its ``images`` part exists. Its maps and explanations are written before,
each file atomically (a temporary name renamed over the final one), so a reader never sees half a file and a
resumed run simply writes an unfinished shard again. Temporary files a killed run left behind are removed when
the next run takes the lock.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CnnlensError
from ..core.files import TMP_PREFIX, remove_temporary, write_bytes, write_json
from ._compute import ShardResult
from ._settings import differences

MANIFEST = "manifest.json"
IMAGES, EXPLANATIONS, MAPS, LOCK = "images", "explanations", "maps", ".lock"
PART = re.compile(r"^part-(\d{6})\.parquet$")


def part_name(shard: int) -> str:
    return f"part-{shard:06d}.parquet"


def images_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("position", pa.int64()),
            ("id", pa.string()),
            ("shard", pa.int32()),
            ("label", pa.int64()),
            ("ok", pa.bool_()),
            ("error", pa.string()),
            ("predicted", pa.int64()),
            ("top_classes", pa.list_(pa.int32())),
            ("top_probabilities", pa.list_(pa.float64())),
            ("p_label", pa.float64()),
        ]
    )


def explanations_schema(metrics: list[str]) -> Any:
    import pyarrow as pa

    fields = [
        ("position", pa.int64()),
        ("id", pa.string()),
        ("method", pa.string()),
        ("explains", pa.string()),
        ("target", pa.int64()),
        ("seconds", pa.float64()),
        ("passes", pa.float64()),
        ("delta", pa.float64()),
        ("attribution_sum", pa.float64()),
        ("map_scale", pa.float64()),
        ("warnings", pa.list_(pa.string())),
        ("notes", pa.list_(pa.string())),
    ]
    return pa.schema(fields + [(m, pa.float64()) for m in metrics])


CHUNK_BYTES = 64 * 1024


def images_per_chunk(map_bytes: int, shard_size: int) -> int:
    """Images in one Zarr chunk: one for maps of ``CHUNK_BYTES`` or more; small maps are grouped (the largest
    divisor of the shard size that keeps a chunk within ``CHUNK_BYTES``), since each chunk costs a fixed overhead to
    encode while reading a small chunk whole costs nothing more than reading one map of it."""
    most = max(1, CHUNK_BYTES // max(1, map_bytes))
    return max(d for d in range(1, shard_size + 1) if shard_size % d == 0 and d <= most)


def done_shards(root: Path) -> set[int]:
    """Shards whose commit mark (the ``images`` part) exists."""
    folder = root / IMAGES
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for m in (PART.match(p.name) for p in folder.iterdir()) if m}


def read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CnnlensError(f"{path} cannot be read as JSON ({e}); it is not a cnnlens store's manifest") from e


def _parquet(rows: list[dict[str, Any]], schema: Any) -> bytes:
    import pyarrow as pa

    return parquet_bytes(pa.Table.from_pylist(rows, schema=schema))


def parquet_bytes(table: Any) -> bytes:
    """``table`` as the bytes of a Parquet file."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


class Lock:
    """An exclusive ``flock`` on ``STORE/.lock`` (released by the OS when the process dies, also by kill -9)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        self.handle: Any = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock on this platform: one run per store is then the user's care
            return
        self.handle = open(self.path, "a")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            self.handle = None
            raise CnnlensError(
                f"another run is writing to the store {self.path.parent}; wait for it to finish, or choose another "
                f"output folder"
            ) from None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class StoreWriter:
    """Opens (or creates) a store for one run's manifest and writes finished shards into it.

    ``submit(result)`` hands a shard to one writer thread and returns at once, so that the next shard is computed
    while this one is written (shards are written, and committed, in the order they are submitted; at most
    ``PENDING`` wait). Leaving the ``with`` block waits for them and raises the first error a write met.
    """

    PENDING = 2

    def __init__(self, root: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.metrics = list(manifest["metrics"])
        self.lock = Lock(self.root)
        self._arrays: dict[tuple[str, str], Any] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlens-store")
        self._pending: list[Future[None]] = []

    def __enter__(self) -> StoreWriter:
        self.open()
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        try:
            if kind is None:
                for future in self._pending:
                    future.result()  # a failed write raises here
        finally:
            # on an error: shards not yet started are dropped (a later run computes them again), one being written
            # is finished, so that the lock is released with no write in flight
            self._pool.shutdown(wait=True, cancel_futures=True)
            self.lock.release()

    def submit(self, result: ShardResult) -> None:
        """Write ``result`` in the writer thread (see the class docstring)."""
        while len(self._pending) >= self.PENDING:
            self._pending.pop(0).result()
        still = []
        for future in self._pending:
            if future.done():
                future.result()  # a failed write raises here
            else:
                still.append(future)
        self._pending = [*still, self._pool.submit(self.write, result)]

    def open(self) -> None:
        root = self.root
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            raise CnnlensError(f"{root} is a file or a symlink, not a store folder; choose another output folder")
        root.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self._check_or_create()
            self._remove_leftovers()
        except BaseException:
            self.lock.release()
            raise

    def _check_or_create(self) -> None:
        root = self.root
        stored = read_manifest(root)
        if stored is None:
            others = [p.name for p in root.iterdir() if p.name != LOCK and not p.name.startswith(TMP_PREFIX)]
            if others:
                raise CnnlensError(
                    f"{root} is not empty and holds no cnnlens store (no {MANIFEST}); choose an empty or new folder"
                )
        else:
            changed = differences(stored, self.manifest)
            if changed and done_shards(root):
                raise CnnlensError(
                    f"the store {root} was made with other settings, and a run never mixes results: "
                    + "; ".join(changed[:8])
                    + (" ..." if len(changed) > 8 else "")
                    + ". Run with the store's settings to resume it, or choose another output folder"
                )
            if not changed:
                self.manifest = stored  # keep the first run's record (creation time, run options)
                return
            for folder in (IMAGES, EXPLANATIONS, MAPS):  # nothing was finished: start afresh with the new settings
                shutil.rmtree(root / folder, ignore_errors=True)
        write_json(root / MANIFEST, self.manifest)

    def _remove_leftovers(self) -> None:
        """Temporary files of a run that was killed (we hold the lock: nobody else is writing them)."""
        for folder in (self.root, self.root / IMAGES, self.root / EXPLANATIONS):
            remove_temporary(folder)
        maps = self.root / MAPS
        if maps.is_dir():
            for p in maps.rglob("*.partial"):  # Zarr's own temporary names
                p.unlink(missing_ok=True)

    def done(self) -> set[int]:
        return done_shards(self.root)

    def write(self, result: ShardResult) -> None:
        """Maps, then explanations, then the images part that marks the shard as done."""
        import zarr

        # a shard's chunks go through Zarr's codecs in one batch rather than one by one (a quarter less CPU)
        with zarr.config.set({"codec_pipeline.batch_size": self.manifest["shard_size"]}):
            for key, block in result.maps.items():
                array = self._array(key, block, result.resolution[key])
                array[result.start : result.start + block.shape[0]] = block
        name = part_name(result.shard)
        write_bytes(self.root / EXPLANATIONS / name, _parquet(result.explanations, explanations_schema(self.metrics)))
        write_bytes(self.root / IMAGES / name, _parquet(result.images, images_schema()))

    def _array(self, key: tuple[str, str], block: np.ndarray, meta: dict[str, Any]) -> Any:
        if key not in self._arrays:
            self._arrays[key] = map_array(self.root, self.manifest, key, block, meta)
        return self._arrays[key]


def map_array(
    root: Path, manifest: dict[str, Any], key: tuple[str, str], block: np.ndarray, meta: dict[str, Any]
) -> Any:
    """The Zarr array ``maps/LABEL/KIND`` of ``key`` for maps shaped like ``block[0]`` (created if missing: one row
    per image of the data set, a Zarr shard per run shard), ready for whole-chunk writes."""
    import zarr

    group = zarr.open_group(root / MAPS, mode="a")
    path = f"{key[0]}/{key[1]}"
    size, shard = manifest["dataset"]["size"], manifest["shard_size"]
    shape = (size, *block.shape[1:])
    array = group.get(path)
    if isinstance(array, zarr.Group) or (array is not None and tuple(array.shape[1:]) != shape[1:]):
        found = "a Zarr group" if isinstance(array, zarr.Group) else f"shape {tuple(array.shape)}"
        raise CnnlensError(
            f"the store's maps of {path} have {found}, but this run makes maps of shape "
            f"{shape}; the store is damaged or was written by another program: choose another output folder"
        )
    if array is None:
        per = images_per_chunk(block[0].nbytes, shard)
        array = group.create_array(
            path,
            shape=shape,
            chunks=(per, *block.shape[1:]),
            shards=(shard, *block.shape[1:]),
            dtype="float16",
            fill_value=np.nan,
            attributes={"method": key[0], "explains": key[1], "images_per_chunk": per, **meta},
        )
    # every chunk is written (NaN rows are ours to write): no comparison of each chunk with the fill value
    return array.with_config({"write_empty_chunks": True})
