"""The README's tables are the registries' own text, and the quick start is exactly two commands."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from update_readme import README, TABLES, block  # noqa: E402


@pytest.mark.parametrize("name", sorted(TABLES))
def test_readme_tables_match_the_registries(name: str) -> None:
    found = block(README.read_text(), name)
    assert found is not None, f"README lost its {name} markers"
    assert found == TABLES[name](), f"README {name} table is stale: run `.venv/bin/python tools/update_readme.py`"


def test_readme_quick_start_is_make_demo_and_make_test() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick, re.M)
    assert commands == ["make demo", "make test"]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_code_compiles_and_names_only_what_exists() -> None:
    """Every python block in the README compiles, every ``from cnnlens... import`` works, and every attribute it
    reads from ``cnnlens``, ``viz``, ``quality`` or the report package exists (the tour cannot name a ghost)."""
    import importlib

    blocks = _python_blocks()
    assert len(blocks) >= 5
    modules = {"cnnlens": "cnnlens", "viz": "cnnlens.viz", "quality": "cnnlens.quality"}
    checked = 0
    for code in blocks:
        compile(code, "README.md", "exec")
        for module, names in re.findall(r"^from (cnnlens[\w.]*) import ([\w, ]+)$", code, re.M):
            for name in (n.strip() for n in names.split(",")):
                exec(f"from {module} import {name}", {})  # a submodule or a name: as the README does it
                checked += 1
        for alias, attr in re.findall(r"\b(cnnlens|viz|quality)\.(\w+)", code):
            mod = importlib.import_module(modules[alias])
            assert hasattr(mod, attr), f"README uses {alias}.{attr}, which does not exist"
            checked += 1
    assert checked > 40


def test_readme_cli_reference_lists_exactly_the_commands() -> None:
    from cnnlens.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    section = README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^cnnlens (\w+)", section, re.M))
    assert listed == set(sub.choices), f"README lists {sorted(listed)}, the CLI has {sorted(sub.choices)}"


def _cli_section() -> str:
    return README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]


def _options(command: str) -> set[str]:
    from cnnlens.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return {s for action in sub.choices[command]._actions for s in action.option_strings}


def test_readme_cli_synopsis_names_only_real_options() -> None:
    """Each ``--option`` the synopsis shows under a command is one of that command's options."""
    usage = _cli_section().split("```\n", 2)[1]
    blocks = re.findall(r"^cnnlens (\w+)(.*?)(?=^cnnlens |\Z)", usage, re.M | re.S)
    assert len(blocks) == 14  # report and view twice: with --data and with --store / a STORE; concepts
    shown = 0
    for command, text in blocks:
        for option in re.findall(r"--[a-z][a-z-]*", text):
            assert option in _options(command), f"README shows cnnlens {command} {option}, which it does not take"
            shown += 1
    assert shown >= 20


def test_readme_cli_model_options_and_examples_are_real() -> None:
    """The model options the README promises are on every command that takes ``--model``, and the examples parse."""
    from cnnlens.cli import build_parser

    section = _cli_section()
    promised = re.findall(
        r"`(--[a-z-]+)", section.split("Every command that takes a model accepts", 1)[1].split(";")[0]
    )
    assert len(promised) == 10
    commands = ("explain", "scorecard", "evaluate", "inside", "report", "run", "concepts", "view")
    takers = [c for c in commands if "--model" in _options(c)]
    assert len(takers) == 8
    for command in takers:
        assert set(promised) <= _options(command), command
    examples = re.findall(r"`cnnlens ([^`]+)`", section.split("Example:", 1)[1])
    assert len(examples) == 7
    for example in examples:
        args = build_parser().parse_args(example.split())
        assert callable(args.func)
