"""docs/ARCHITECTURE.md draws the rooms and who may import whom: the drawing must be what the code imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "cnnlens"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


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


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cnnlens"


def _imported_rooms() -> dict[str, set[str]]:
    """room -> the other rooms its modules import (any import statement, also inside functions)."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts if parts[-1] == "__init__" else parts[:-1]
        package = [p for p in package if p != "__init__"]
        module = ".".join(parts)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, node.module] if node.module else base)
                targets = [target] if target.split(".")[0] == "cnnlens" else []
                if target == "cnnlens":  # `from .. import x`: x is a room or a name of the root
                    targets = [f"cnnlens.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "cnnlens"]
            for target in targets:
                if _room(target) not in (_room(module), "_version"):  # the version string: any room may read it
                    edges.setdefault(_room(module), set()).add(_room(target))
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
