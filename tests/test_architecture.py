"""The house rules of the package layout (tools/check_architecture.py) hold, and the checker does catch each kind of
violation on a small fake package."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import check_architecture as check  # noqa: E402


def test_cnnlens_keeps_the_rules() -> None:
    found = check.violations(ROOT / "src")
    assert not found, "\n".join(found)


def fake(tmp_path: Path, files: dict[str, str]) -> list[str]:
    """Write a fake ``cnnlens`` package (``files``: path under cnnlens/ -> source) and check it."""
    for name, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "cnnlens" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for folder in {p.parent for p in (tmp_path / "cnnlens").rglob("*.py")}:
        (folder / "__init__.py").touch()
    return [line.split(": ", 1)[1] for line in check.violations(tmp_path)]


@pytest.mark.parametrize(
    "source",
    [
        "from ..store._reader import Store\n",
        "from cnnlens.store._reader import Store\n",
        "import cnnlens.store._reader\n",
        "from ..store import _reader\n",
        "from ..store.reader import _SHARED\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..store._reader import Store\n",
        "def later():\n    from ..store._reader import Store\n",
    ],
)
def test_a_private_import_of_another_package_is_caught(tmp_path: Path, source: str) -> None:
    found = fake(
        tmp_path, {"store/_reader.py": "_SHARED = 1\n", "store/reader.py": "_SHARED = 1\n", "app/x.py": source}
    )
    assert len(found) == 1 and "private" in found[0]


def test_private_imports_inside_a_package_and_dunders_are_fine(tmp_path: Path) -> None:
    files = {
        "attribution/_base.py": "_x = 1\n",
        "attribution/cam/_y.py": "from .._base import _x\n",
        "attribution/cam/z.py": "from ._y import _x\nfrom .._base import __doc__\n",
        "app/v.py": "from .. import _version\nfrom .._version import __version__\n",
        "_version.py": "__version__ = '1'\n",
    }
    assert fake(tmp_path, files) == []


def test_a_private_attribute_of_another_package_is_caught(tmp_path: Path) -> None:
    files = {
        "store/reader.py": "class Store:\n    def __init__(self):\n        self._opened = 1\n",
        "app/state.py": "def read(store):\n    return store._opened\n",
    }
    assert fake(tmp_path, files) == ["reads private attribute _opened defined in another package"]


def test_private_attributes_of_self_own_package_or_other_libraries_are_fine(tmp_path: Path) -> None:
    files = {
        "store/reader.py": "class Store:\n    def __init__(self):\n        self._opened = 1\n",
        "store/use.py": "def read(store):\n    return store._opened\n",
        "app/state.py": "class S:\n    def f(self, t):\n        self._opened = 2\n        return t._version\n",
        "app/other.py": "def read(store):\n    return store._opened\n",
    }
    assert fake(tmp_path, files) == []


def test_an_import_circle_is_caught(tmp_path: Path) -> None:
    files = {
        "viz/a.py": "from .b import x\ny = 1\n",
        "viz/b.py": "x = 1\ndef later():\n    from .a import y\n",
    }
    assert fake(tmp_path, files) == ["import circle: cnnlens.viz.a -> cnnlens.viz.b -> cnnlens.viz.a"]


def test_a_package_import_is_an_import_of_its_init(tmp_path: Path) -> None:
    files = {
        "viz/__init__.py": "from .a import y\n",
        "viz/a.py": "from ..data.d import *\ny = 1\n",
        "data/d.py": "from ..viz import y\n",
    }
    assert fake(tmp_path, files) == ["import circle: cnnlens.data.d -> cnnlens.viz -> cnnlens.viz.a -> cnnlens.data.d"]


def test_importing_a_module_of_a_package_runs_the_package_first(tmp_path: Path) -> None:
    files = {
        "engine/__init__.py": "from .back import x\n",
        "engine/back.py": "from ..attribution.modes import y\nx = 1\n",
        "attribution/__init__.py": "from ..engine import x\n",
        "attribution/modes.py": "y = 1\n",
    }
    assert fake(tmp_path, files) == [
        "import circle: cnnlens.attribution -> cnnlens.engine -> cnnlens.engine.back -> cnnlens.attribution"
    ]


def test_type_checking_imports_and_submodules_of_a_running_package_make_no_circle(tmp_path: Path) -> None:
    files = {
        "viz/__init__.py": "from . import a\n",
        "viz/a.py": "from typing import TYPE_CHECKING\nfrom . import b\nif TYPE_CHECKING:\n    from .b import x\n",
        "viz/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import b\nx = 1\n",
    }
    assert fake(tmp_path, files) == []


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("from .. import explain\n", "cnnlens.explain"),
        ("import cnnlens\n", "cnnlens"),
        ("from cnnlens import *\n", "cnnlens.*"),
    ],
)
def test_an_import_of_the_package_root_is_caught(tmp_path: Path, source: str, name: str) -> None:
    found = fake(tmp_path, {"report/r.py": source})
    assert found == [f"imports {name} from the package root; import it from its package"]


def test_imports_of_other_packages_through_the_root_name_are_fine(tmp_path: Path) -> None:
    files = {"models/__init__.py": "x = 1\n", "report/r.py": "from .. import models\nfrom cnnlens.models import x\n"}
    assert fake(tmp_path, files) == []
