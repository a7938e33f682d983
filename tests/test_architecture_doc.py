"""docs/ARCHITECTURE.md draws the rooms and who may import whom: the drawing must be what the code imports."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "cnnlens"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
sys.path.insert(0, str(ROOT / "tools"))

import check_architecture as check  # noqa: E402


def _table() -> dict[str, set[str]]:
    """room -> the rooms its row says it may import."""
    rows: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[0] not in ("room", "---"):
            rows[cells[0]] = {r.strip() for r in cells[2].split(",") if r.strip() not in ("", "-")}
    return rows


def _layers() -> list[list[str]]:
    """The drawing's lines, top first: the rooms on each."""
    text = DOC.read_text()
    block = re.search(r"## Rooms and who may import whom\n\n```\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md has no drawing of the rooms"
    return [[w.removesuffix(".py") for w in re.findall(r"[a-z_]+(?:\.py)?", line)] for line in block[1].splitlines()]


def _imported_rooms() -> dict[str, set[str]]:
    """room -> the other rooms its modules import when they run (imports for type checking only aside); the root
    is ``"cnnlens"``, and ``_version`` (the version string, read by any room) is left out."""
    modules = check.load(ROOT / "src")
    edges: dict[str, set[str]] = {}
    for module in modules.values():
        for imp in module.imports:
            if imp.type_checking:
                continue
            targets = [imp.module]
            if imp.module == "cnnlens":  # `from .. import x`: x is a room or a name of the root
                targets = [f"cnnlens.{name}" for name in imp.names]
            for target in targets:
                room = check.room_of(target, modules) or target.split(".")[1]
                if room not in (module.room, "_version"):
                    edges.setdefault(module.room or "cnnlens", set()).add(room)
    return edges


def test_every_room_is_in_the_table() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(_table()), "rooms in src/cnnlens vs rows of the table in docs/ARCHITECTURE.md"


def test_the_table_is_what_the_code_imports() -> None:
    table, actual = _table(), _imported_rooms()
    for room, allowed in table.items():
        assert actual.get(room, set()) == allowed, f"{room}: the code imports {sorted(actual.get(room, set()))}"
    assert set(actual) - {"cnnlens"} <= set(table)
    assert actual["cnnlens"] <= set(table), "the package root re-exports rooms only"


def test_the_drawing_runs_downwards() -> None:
    line_of = {room: i for i, line in enumerate(_layers()) for room in line}
    table = _table()
    assert set(table) <= set(line_of), f"rooms missing from the drawing: {sorted(set(table) - set(line_of))}"
    for room, allowed in table.items():
        for other in allowed:
            assert line_of[other] > line_of[room], f"{room} imports {other}, drawn on the same line or above"
