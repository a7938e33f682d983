"""Outputs are safe: every file whole or absent, one run per folder (a lock), a manifest naming the run and its
files, an earlier or killed run's files replaced (never mixed), symlinks never written through, one name per
input. Library functions and the command line, with real ``kill -9`` and real concurrent processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens import CnnlensError
from cnnlens.cli import main
from cnnlens.cli._explain import output_names
from cnnlens.core.files import LOCK, MANIFEST, TMP_PREFIX, atomic_path, output_folder, write_json, write_text

pytestmark = pytest.mark.usefixtures("one_thread")
TESTS = Path(__file__).parent


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def assert_one_complete_run(folder: Path, since: float | None = None) -> dict:
    """The folder holds exactly the files its manifest lists (plus the manifest and the lock), all complete:
    no temporary file, no empty file, status complete; with ``since``, every file was written after it."""
    manifest = _manifest(folder)
    assert manifest["status"] == "complete", manifest
    present = sorted(p.name for p in folder.iterdir() if p.name not in (MANIFEST, LOCK))
    assert present == sorted(manifest["files"]), "files of another run, or missing ones"
    for p in folder.iterdir():
        assert not p.name.startswith(TMP_PREFIX)
        assert p.name == LOCK or p.stat().st_size > 0, f"{p.name} is empty"
        if since is not None and p.name != LOCK:
            assert p.stat().st_mtime >= since, f"{p.name} is older than the run"
    return manifest


# -- atomic files ------------------------------------------------------------------------------------------


def test_atomic_path_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed half-way")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_written_files_get_the_mode_open_would_give_them(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = write_text(tmp_path / "atomic.txt", "x")  # through a temporary file that starts owner-only
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_no_write_goes_through_a_symlink(tmp_path: Path) -> None:
    elsewhere = write_text(tmp_path / "elsewhere.txt", "precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").symlink_to(elsewhere)
    with pytest.raises(CnnlensError, match="is a symlink; cnnlens does not write through symlinks"):
        write_text(tmp_path / "out" / "a.txt", "new")
    assert elsewhere.read_text() == "precious"


# -- run folders -------------------------------------------------------------------------------------------


def test_a_run_replaces_the_files_of_the_earlier_run(tmp_path: Path) -> None:
    with output_folder(tmp_path / "o", "first", data="x") as folder:
        for name in ("a.png", "b.png", "c.json"):
            write_text(folder.file(name), name)
    first = _manifest(tmp_path / "o")
    assert first["command"] == "first" and first["data"] == "x" and first["files"] == ["a.png", "b.png", "c.json"]
    assert first["pid"] == os.getpid() and first["started"] <= first["finished"]
    with output_folder(tmp_path / "o", "second") as folder:
        write_text(folder.file("a.png"), "new a")
    assert assert_one_complete_run(tmp_path / "o")["files"] == ["a.png"]
    assert (tmp_path / "o" / "a.png").read_text() == "new a"


def test_a_run_that_writes_nothing_leaves_the_earlier_run_alone(tmp_path: Path) -> None:
    with output_folder(tmp_path, "first") as folder:
        write_text(folder.file("a.txt"), "a")
    with pytest.raises(ValueError), output_folder(tmp_path, "second"):
        raise ValueError("bad input, found before writing")
    assert assert_one_complete_run(tmp_path)["command"] == "first"


def test_a_failed_run_says_so_in_its_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValueError), output_folder(tmp_path, "run") as folder:
        write_text(folder.file("a.txt"), "a")
        raise ValueError("method failed")
    manifest = _manifest(tmp_path)
    assert manifest["status"] == "failed" and manifest["error"] == "method failed" and manifest["files"] == ["a.txt"]
    with output_folder(tmp_path, "again") as folder:  # the next run replaces it
        write_text(folder.file("b.txt"), "b")
    assert assert_one_complete_run(tmp_path)["files"] == ["b.txt"]


def test_one_name_twice_in_a_run_is_refused(tmp_path: Path) -> None:
    with output_folder(tmp_path, "run") as folder:
        folder.file("Cat.png")
        with pytest.raises(CnnlensError, match="two outputs of this run would both be written to"):
            folder.file("cat.png")  # one file on case-insensitive file systems
        for bad in ("../x.png", "sub/x.png", MANIFEST, LOCK, ""):
            with pytest.raises(CnnlensError, match="cannot be an output file name"):
                folder.file(bad)


def test_a_folder_with_other_files_or_symlinks_is_refused(tmp_path: Path) -> None:
    write_text(tmp_path / "mine" / "thesis.tex", "years of work")
    foreign = r"holds files that no cnnlens run wrote there \(thesis.tex\).*\(out=\)"
    with pytest.raises(CnnlensError, match=foreign), output_folder(tmp_path / "mine", "run"):
        pass
    with output_folder(tmp_path / "o", "run") as folder:
        write_text(folder.file("a.txt"), "a")
    precious = write_text(tmp_path / "precious.txt", "precious")
    (tmp_path / "o" / "a.txt").unlink()
    (tmp_path / "o" / "a.txt").symlink_to(precious)  # planted where the next run writes
    links = r"holds symlinks \(a.txt\); cnnlens does not write through symlinks"
    with pytest.raises(CnnlensError, match=links), output_folder(tmp_path / "o", "run"):
        pass
    assert precious.read_text() == "precious" and (tmp_path / "o" / "a.txt").is_symlink()
    (tmp_path / "o" / "a.txt").unlink()  # the fix the message gives
    with output_folder(tmp_path / "o", "run") as folder:
        write_text(folder.file("a.txt"), "new")
    assert_one_complete_run(tmp_path / "o")


def test_a_second_run_on_a_held_folder_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    with output_folder(tmp_path, "first") as folder:
        write_text(folder.file("a.txt"), "a")
        held = rf"another cnnlens run \(pid {os.getpid()}, first, started .*\) is writing to {tmp_path}; wait until"
        with pytest.raises(CnnlensError, match=held), output_folder(tmp_path, "second"):
            pass
    with output_folder(tmp_path, "second") as folder:  # the first one ended: the fix works
        write_text(folder.file("b.txt"), "b")
    assert assert_one_complete_run(tmp_path)["command"] == "second"


def test_a_killed_runs_files_and_temporary_files_are_removed(tmp_path: Path) -> None:
    """What a run killed at any moment leaves: a manifest "running" listing what it wrote, maybe a temporary
    file. The next run removes both."""
    write_text(tmp_path / "a.png", "a")
    write_text(tmp_path / "b.png", "b")
    (tmp_path / f"{TMP_PREFIX}x.png").write_bytes(b"")
    write_json(tmp_path / MANIFEST, {"command": "killed", "status": "running", "files": ["a.png", "b.png", "c.png"]})
    with output_folder(tmp_path, "next") as folder:
        write_text(folder.file("d.png"), "d")
    assert assert_one_complete_run(tmp_path)["files"] == ["d.png"]


def test_library_functions_replace_their_earlier_outputs(tmp_path: Path) -> None:
    """save_inside of other layers: the next call must not leave the first call's figures."""
    from _tiny_models import TinyCNN
    from cnnlens.inside import save_inside

    net, x = TinyCNN().eval(), torch.rand(1, 3, 8, 8)
    first = save_inside(net, x, tmp_path, layers=["features.0", "features.2"])
    assert assert_one_complete_run(tmp_path)["command"] == "save_inside" and "maps_features.0" in first
    second = save_inside(net, x, tmp_path, layers="features.2")
    assert not (tmp_path / "maps_features.0.png").exists() and not (tmp_path / "filters_features.0.png").exists()
    assert sorted(assert_one_complete_run(tmp_path)["files"]) == sorted(p.name for p in second.values())


# -- unique names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "names"),
    [
        (["a.png", "b.png"], ["a", "b"]),
        (["a.png", "a.jpg"], ["a-png", "a-jpg"]),
        (["x/cat.png", "y/cat.png"], ["cat-png", "cat-png-2"]),
        (["Cat.png", "cat.png", "cat-png.png"], ["Cat-png", "cat-png-2", "cat-png-3"]),
        ([".hidden", "summary.png"], [".hidden", "summary"]),
    ],
)
def test_output_names_are_unique_per_input(paths: list[str], names: list[str]) -> None:
    got = output_names(paths)
    assert got == names
    assert len({n.casefold() for n in got}) == len(paths)


def test_explain_writes_one_panel_per_image_with_one_stem(tiny, tmp_path: Path) -> None:
    Image.fromarray(np.full((20, 20, 3), 10, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((20, 20, 3), 240, np.uint8)).save(tmp_path / "a.jpg")
    out = tmp_path / "o"
    argv = ["explain", str(tmp_path / "a.png"), str(tmp_path / "a.jpg"), "--methods", "saliency", "--out", str(out)]
    assert main([*argv, *tiny.model, "--no-progress"]) == 0
    manifest = assert_one_complete_run(out)
    assert sorted(manifest["files"]) == ["a-jpg.npz", "a-jpg.png", "a-png.npz", "a-png.png", "summary.json"]
    maps = [np.load(out / f"a-{s}.npz")["saliency"] for s in ("png", "jpg")]
    assert not np.array_equal(maps[0], maps[1]), "two images, one map"
    assert manifest["command_line"].startswith("cnnlens explain ") and manifest["model"] == str(tiny.root / "tiny.pt")


# -- the command line: kill -9 and concurrent runs ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from _tiny_models import TinyCNN

    root = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(0)
    torch.save(TinyCNN(num_classes=3).state_dict(), root / "tiny.pt")
    rng = np.random.default_rng(0)
    for name in "abc":
        (root / "data" / name).mkdir(parents=True)
        for j in range(4):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "data" / name / f"{j}.png")
    model = ["--model", str(root / "tiny.pt"), "--arch", "_tiny_models:TinyCNN", "--classes", "a,b,c"]
    model += ["--input-size", "16"]
    return SimpleNamespace(root=root, data=root / "data", model=model)


def _child(moment: str, count: int, go: Path, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    cmd = [sys.executable, str(TESTS / "_pausing_cli.py"), moment, str(count), str(go), *argv]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_paused(child: subprocess.Popen, go: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not go.with_suffix(".paused").exists():
        if child.poll() is not None:
            raise AssertionError(f"the run ended before the moment: {child.communicate()}")
        assert time.monotonic() < end, "the run never reached the moment"
        time.sleep(0.05)


@pytest.mark.parametrize(("moment", "count"), [("file", 1), ("file", 4), ("replace", 7)])
def test_a_run_killed_at_any_moment_is_replaced_whole_by_the_next(tiny, tmp_path: Path, moment, count) -> None:
    """An earlier run (inside) holds the folder; evaluate is killed with SIGKILL before its first file, after some
    files, with a temporary file complete but not renamed... The next run leaves one whole run: its own files."""
    out = tmp_path / "o"
    assert main(["inside", str(tiny.data / "a" / "0.png"), *tiny.model, "--out", str(out)]) == 0
    evaluate = ["evaluate", str(tiny.data), *tiny.model, "--out", str(out), "--no-progress", "--batch-size", "2"]
    child = _child(moment, count, tmp_path / "go", evaluate)
    try:
        _wait_paused(child, tmp_path / "go")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    for p in out.iterdir():  # killed: never a half-written file under a final name
        assert p.name in (LOCK,) or p.name.startswith(TMP_PREFIX) or p.stat().st_size > 0, p.name
    started = time.time() - 0.05
    assert main(evaluate) == 0
    manifest = assert_one_complete_run(out, since=started)
    assert manifest["command"] == "evaluate" and "metrics.json" in manifest["files"]
    assert not any(name.startswith(("maps_", "filters_", "layers")) for name in manifest["files"])
    assert json.loads((out / "metrics.json").read_text())["samples"] == 12


def test_two_concurrent_runs_on_one_folder(tiny, tmp_path: Path) -> None:
    """A run holds the folder (paused after its first file); a second ``cnnlens`` process on the same folder
    fails at once with exit code 2 and says who holds it; the first then completes, whole."""
    out = tmp_path / "o"
    argv = ["evaluate", str(tiny.data), *tiny.model, "--out", str(out), "--no-progress"]
    first = _child("file", 2, tmp_path / "go", argv)
    try:
        _wait_paused(first, tmp_path / "go")
        second = subprocess.run(
            [sys.executable, "-m", "cnnlens", *argv],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 2, second.stderr
        assert second.stderr == (
            f"cnnlens: error: another cnnlens run (pid {first.pid}, evaluate, started "
            f"{_manifest(out)['started']}) is writing to {out}; wait until it ends, or choose another output folder "
            "(--out)\n"
        )
        (tmp_path / "go").touch()
        assert first.wait(timeout=300) == 0, first.communicate()
    finally:
        first.kill()
        first.communicate()
    assert assert_one_complete_run(out)["pid"] == first.pid  # (the fix, waiting: in the test of output_folder)


def test_the_cli_refuses_a_symlink_or_foreign_files_in_out(tiny, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    argv = ["evaluate", str(tiny.data), *tiny.model, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    elsewhere = write_text(tmp_path / "elsewhere.json", "precious")
    (out / "metrics.json").unlink()
    (out / "metrics.json").symlink_to(elsewhere)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds symlinks (metrics.json); cnnlens does not write through symlinks" in err and "(--out)" in err
    assert elsewhere.read_text() == "precious"
    (out / "metrics.json").unlink()
    assert main(argv) == 0
    assert_one_complete_run(out)
    write_text(tmp_path / "mine" / "notes.txt", "mine")
    assert main([*argv[:-3], "--out", str(tmp_path / "mine"), "--no-progress"]) == 2
    assert "holds files that no cnnlens run wrote there (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert main([*argv[:-3], "--out", str(tmp_path / "mine" / "run"), "--no-progress"]) == 0  # another folder
    assert_one_complete_run(tmp_path / "mine" / "run")
