"""``import cnnlens`` gives every subpackage on first use (PEP 562) and loads nothing heavy: ``cnnlens --help``,
``cnnlens methods`` and ``cnnlens metrics`` start without torch, scikit-learn or matplotlib (their times are in
``benchmarks/startup.py``), and print the registries' own text."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "matplotlib", "sklearn", "scipy", "skimage", "numpy", "PIL", "tqdm", "jinja2")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints (stdout) what it printed, then the heavy modules loaded."""
    probe = (
        "import io, sys, json, contextlib\n"
        "buffer = io.StringIO()\n"
        f"with contextlib.redirect_stdout(buffer):\n    {code}\n"
        f"print(json.dumps({{'out': buffer.getvalue(), 'heavy': sorted({{m.split('.')[0] for m in sys.modules}} & "
        f"set({list(HEAVY)!r}))}}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import cnnlens",
        "import cnnlens.cli; cnnlens.cli.build_parser()",
        "from cnnlens.cli import main; main(['--help'])",
        "from cnnlens.cli import main; main(['methods', '--category', 'cam'])",
        "from cnnlens.cli import main; main(['metrics', '--markdown'])",
        "from cnnlens.cli import main; main(['methods', 'saliency', 'grad_cam'])",
        "from cnnlens.cli import main; main(['methods', 'occlusion', '--options'])",
        "from cnnlens.cli import main; main(['view', '--help'])",
    ],
)
def test_starting_loads_nothing_heavy(code: str) -> None:
    assert _run(code)["heavy"] == []


def test_the_light_listings_are_the_registries_own_text() -> None:
    from cnnlens.attribution import method_table, methods
    from cnnlens.quality import metric_table, metrics

    cam = [str(m) for m in methods("cam")]
    assert _run("from cnnlens.cli import main; main(['methods', '--category', 'cam'])")["out"].splitlines() == cam
    assert _run("from cnnlens.cli import main; main(['methods', '--markdown'])")["out"] == method_table() + "\n"
    assert _run("from cnnlens.cli import main; main(['metrics'])")["out"].splitlines() == [str(m) for m in metrics()]
    assert _run("from cnnlens.cli import main; main(['metrics', '--markdown'])")["out"] == metric_table() + "\n"


def test_the_cli_catalog_is_current() -> None:
    """``cnnlens/cli/_catalog.json`` is what the live registries say; ``tools/update_readme.py`` rewrites it."""
    from cnnlens.cli import _catalog

    assert _catalog.load() == _catalog.build(), "stale: run `.venv/bin/python tools/update_readme.py`"


def test_every_subpackage_is_an_attribute_of_cnnlens() -> None:
    import cnnlens

    names = ["attribution", "cli", "data", "inside", "models", "quality", "report", "viz"]
    assert all(hasattr(cnnlens, n) for n in names) and set(names) <= set(dir(cnnlens))
    assert callable(cnnlens.quality.scorecard) and callable(cnnlens.viz.compare_panel)
    assert callable(cnnlens.report.Report) and cnnlens.data.load_image.__module__ == "cnnlens.data._images"
    with pytest.raises(AttributeError, match="module 'cnnlens' has no attribute 'nothing'"):
        cnnlens.nothing  # noqa: B018


def test_cnnlens_evaluate_stays_the_function_when_its_package_is_imported() -> None:
    """The function ``cnnlens.evaluate`` and the package ``cnnlens.evaluation`` have different names, so
    importing the package (``from cnnlens.evaluation import save_evaluation``) leaves the function in place."""
    import cnnlens
    from cnnlens.evaluation import save_evaluation  # noqa: F401

    assert type(cnnlens.evaluate).__name__ == "function" and cnnlens.evaluate.__name__ == "evaluate"
    assert cnnlens.evaluation is sys.modules["cnnlens.evaluation"]
    assert cnnlens.Evaluation.__name__ == "Evaluation"
    cnnlens.explain = "x"  # other attributes are set as usual
    assert cnnlens.explain == "x"
    del cnnlens.explain
    assert callable(cnnlens.explain)  # found again on use
