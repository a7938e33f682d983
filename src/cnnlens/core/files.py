"""Writing files safely: every file appears whole or not at all, never through a symlink, and one run's outputs
never mix with another's.

``atomic_path(path)`` yields a temporary name in the same folder; when the ``with`` block ends without an error the
temporary file is renamed over ``path`` (``os.replace``, atomic on POSIX and Windows), otherwise it is removed. A
reader therefore sees the old file or the new one, never half of one, also when the process is killed. A ``path``
that is a symlink is refused (writing would follow it to a file elsewhere).

``output_folder(out, command=...)`` holds one run's output folder (see `OutputFolder`): a lock refuses a second
run on the same folder, a manifest (``cnnlens-run.json``) says which run wrote which files, and the files of an
earlier (or killed) run are removed before the new run writes its first file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import CnnlensError, say

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TMP_PREFIX = ".cnnlens-tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()
MANIFEST = "cnnlens-run.json"
LOCK = ".cnnlens.lock"


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; raises ``CnnlensError`` when it is a symlink or a folder (nothing would be safe to write)."""
    p = Path(path)
    if p.is_symlink():
        raise CnnlensError(
            f"{p} is a symlink; cnnlens does not write through symlinks. Remove it or choose another output"
        )
    if p.is_dir():
        raise CnnlensError(f"{p} is a folder, not a file; choose another output name")
    return p


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed.

    The temporary name keeps ``path``'s suffix, so libraries that choose a format by suffix (matplotlib, NumPy)
    write the right one. Raises ``CnnlensError`` when ``path`` is a symlink or a folder.
    """
    target = check_writable(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes it owner-only; the file gets the mode open() would give it
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def remove_temporary(folder: str | os.PathLike[str]) -> int:
    """Remove the temporary files ``atomic_path`` left in ``folder`` when its process was killed (call only while
    no other process writes there, e.g. holding a lock); returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX) and (p.is_file() or p.is_symlink())]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """``open`` a temporary file beside ``path`` (``mode`` "w" or "wb", ``options`` as for ``open``); when the block
    ends without an error it is flushed to disk and renamed to ``path``."""
    with atomic_path(path) as tmp, open(tmp, mode, **options) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename); returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], value: Any, **dumps: Any) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically; ``dumps``: extra ``json.dumps`` arguments."""
    return write_text(path, json.dumps(value, indent=2, **dumps) + "\n")


def save_figure(fig: Figure, path: str | os.PathLike[str], **savefig: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically (format from the suffix), then close the figure; returns ``path``."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **{"dpi": 110, "bbox_inches": "tight", **savefig})
    finally:
        plt.close(fig)
    return Path(path)


_COMMAND_LINE: ContextVar[str | None] = ContextVar("cnnlens_command_line", default=None)


@contextmanager
def command_line(argv: Sequence[str]) -> Iterator[None]:
    """Runs started inside the block record ``cnnlens ARGV...`` in their manifests (the command line uses it)."""
    token = _COMMAND_LINE.set(shlex.join(["cnnlens", *argv]))
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class OutputFolder:
    """The output folder of one run, held by `output_folder`: ask ``folder.file(name)`` for the path of each file
    before writing it (with `write_text`, `write_json`, `save_figure`, `atomic_open`...).

    The first ``file()`` call removes the files of the earlier run recorded in the folder's manifest; each call
    records the name in the manifest (``cnnlens-run.json``: command, model, data, times, status and files) before
    the file exists, so that a run killed at any moment leaves a manifest that lists everything it wrote.
    """

    def __init__(self, path: Path, info: dict[str, Any], previous: list[str]) -> None:
        self.path = path
        self.info = info
        self.files: list[str] = []
        self._previous = previous
        self._begun = False

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r}, files={len(self.files)})"

    def file(self, name: str) -> Path:
        """The path to write the output ``name`` (a plain file name, unique within the run) to."""
        if not name or name in (".", "..", MANIFEST, LOCK) or Path(name).name != name or name.startswith(TMP_PREFIX):
            raise CnnlensError(f"{name!r} cannot be an output file name; give a plain file name")
        taken = {f.casefold() for f in self.files}
        if name.casefold() in taken:  # casefold: one file on case-insensitive file systems
            raise CnnlensError(f"two outputs of this run would both be written to {self.path / name}")
        if not self._begun:
            self._begin()
        target = check_writable(self.path / name)
        self.files.append(name)
        self._write_manifest("running")
        return target

    def _begin(self) -> None:
        """Remove the earlier run's files and temporary files left by a killed run (the lock is held)."""
        for name in self._previous:
            if (self.path / name).is_file() and not (self.path / name).is_symlink():
                (self.path / name).unlink()
        for entry in self.path.iterdir():
            if entry.name.startswith(TMP_PREFIX) and not entry.is_dir():
                entry.unlink()
        self._begun = True

    def _write_manifest(self, status: str, error: str | None = None) -> None:
        manifest = {**self.info, "status": status, "files": list(self.files)}
        if status != "running":
            manifest["finished"] = _now()
        if error is not None:
            manifest["error"] = error
        write_json(self.path / MANIFEST, manifest)

    def close(self, error: BaseException | None) -> None:
        """Record how the run ended (only when it wrote something: otherwise the folder is left as it was)."""
        if self._begun:
            self._write_manifest("complete" if error is None else "failed", None if error is None else str(error))


def _previous_files(path: Path) -> list[str]:
    """The files the manifest in ``path`` lists ([] when there is none); a folder whose other entries a cnnlens
    run did not write, or that holds symlinks, is refused."""
    manifest = path / MANIFEST
    listed: list[str] = []
    if manifest.is_file() and not manifest.is_symlink():
        try:
            listed = [str(f) for f in json.loads(manifest.read_text(encoding="utf-8"))["files"]]
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise CnnlensError(f"{manifest} is not a cnnlens run manifest ({e}); remove it or choose another output "
                               f"folder{say(' (out=)', ' (--out)')}") from e  # fmt: skip
    listed = [f for f in listed if Path(f).name == f and f not in (MANIFEST, LOCK, ".", "..")]
    entries = sorted(path.iterdir())
    links = [e.name for e in entries if e.is_symlink()]
    if links:
        raise CnnlensError(
            f"{path} holds symlinks ({', '.join(links[:5])}); cnnlens does not write through symlinks: remove "
            f"them or choose another output folder{say(' (out=)', ' (--out)')}"
        )
    ours = {MANIFEST, LOCK, *listed}
    foreign = [e.name for e in entries if e.name not in ours and not e.name.startswith(".")]  # hidden: not outputs
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
        raise CnnlensError(
            f"{path} holds files that no cnnlens run wrote there ({shown}); cnnlens writes only to a new or empty "
            f"folder, or to one of its own earlier runs (it replaces that run's files): choose another output "
            f"folder{say(' (out=)', ' (--out)')}"
        )
    return listed


def _target(path: Path) -> str:
    """`` to TARGET`` (or `` to TARGET, which does not exist``) of the symlink ``path``."""
    try:
        target = os.readlink(path)
    except OSError:
        return ""
    return f" to {target}" + ("" if path.exists() else ", which does not exist")


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` without waiting; False when another process holds it.
    The operating system releases it when the process ends, also when it is killed."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _lock(path: Path, info: dict[str, Any]) -> int:
    """Lock ``path/.cnnlens.lock`` for this process (its pid, command and start are written into it)."""
    lock = path / LOCK
    try:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileNotFoundError:  # a run that created the folder and wrote nothing has just removed it
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise CnnlensError(f"cannot open the lock file {lock} ({e.strerror}); remove it or choose another "
                           f"output folder{say(' (out=)', ' (--out)')}") from e  # fmt: skip
    if not _try_lock(fd):
        try:
            holder = json.loads(os.read(fd, 4096) or b"{}")
            who = f"pid {holder['pid']}, {holder['command']}, started {holder['started']}"
        except (ValueError, KeyError, TypeError, OSError):
            who = "another process"
        os.close(fd)
        raise CnnlensError(
            f"another cnnlens run ({who}) is writing to {path}; wait until it ends, or choose another output "
            f"folder{say(' (out=)', ' (--out)')}"
        )
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({k: info[k] for k in ("pid", "command", "started")}).encode())
    return fd


def _unlock(fd: int, path: Path, created: bool, fresh_lock: bool = False) -> None:
    """Release the lock (closing the only descriptor releases it); a folder this run created and wrote nothing to
    is removed again (its lock file first, while the lock is held), as is a lock file it created (``fresh_lock``)
    and wrote nothing beside."""
    if created or fresh_lock:
        (path / LOCK).unlink(missing_ok=True)
    os.close(fd)
    if created:
        with contextlib.suppress(OSError):  # unless another run has begun to use it
            path.rmdir()


@contextmanager
def output_folder(out: str | os.PathLike[str] | OutputFolder, command: str, **info: Any) -> Iterator[OutputFolder]:
    """Hold ``out`` for one run: create it, lock it (a second run on it fails with a clear error until this one
    ends), check that it is new, empty or an earlier cnnlens run's folder without symlinks, and record the run in
    its manifest. ``info``: what the manifest records beside ``command`` (model, data, options...). A folder the
    run creates and writes nothing to (it failed first) is removed again. An `OutputFolder` given as ``out`` is
    used as it is (its run goes on; a library function called by the command line writes into the command's
    folder)."""
    if isinstance(out, OutputFolder):
        yield out
        return
    path = Path(out)
    if path.is_symlink():  # to a folder, a file or nothing: writing would follow it elsewhere
        raise CnnlensError(
            f"{path} is a symlink{_target(path)}; cnnlens does not write through symlinks: give the real folder, or "
            f"choose another output folder{say(' (out=)', ' (--out)')}"
        )
    if path.exists() and not path.is_dir():
        raise CnnlensError(f"{path} is a file, not a folder; choose another output folder{say(' (out=)', ' (--out)')}")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    fresh_lock = not os.path.lexists(path / LOCK)
    from .._version import __version__

    record = {"cnnlens": __version__, "command": command, **info, "pid": os.getpid(), "started": _now()}
    if _COMMAND_LINE.get() is not None:
        record["command_line"] = _COMMAND_LINE.get()
    fd = _lock(path, record)
    folder = None
    try:
        folder = OutputFolder(path, record, _previous_files(path))
        try:
            yield folder
        except BaseException as e:
            folder.close(e)
            raise
        folder.close(None)
    finally:
        idle = folder is None or not folder.files  # refused, or failed before its first file: leave no trace
        _unlock(fd, path, created and idle, fresh_lock and idle)
