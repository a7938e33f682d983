"""Options declared once: validation, help(), the CLI's --set parsing and listings all read the declarations."""

from __future__ import annotations

import pytest
import torch

import cnnlens
from cnnlens import CnnlensError
from cnnlens.attribution._smooth import SMOOTH_OPTIONS
from cnnlens.cli import main
from cnnlens.core.options import Option, choice, integer, number, validate
from cnnlens.quality import get_metric, metrics


def _declared() -> list[tuple[str, str, Option]]:
    rows = [(m.name, k, o) for m in cnnlens.methods() for k, o in m.options.items()]
    rows += [(m.name, k, o) for m in metrics() for k, o in m.options.items()]
    rows += [("smooth", k, o) for k, o in SMOOTH_OPTIONS.items()]
    return rows


@pytest.mark.parametrize(("owner", "key", "option"), _declared(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_default_is_accepted_by_its_own_declaration(owner: str, key: str, option: Option) -> None:
    assert option.help and option.rule
    assert option.accepts(option.default), f"{owner}.{key}: default {option.default!r} breaks '{option.rule}'"


def test_rules_reject_what_they_say() -> None:
    steps = integer(50, "points")
    assert steps.accepts(1) and not steps.accepts(0) and not steps.accepts(True) and not steps.accepts(2.0)
    p = number(0.5, "keep", maximum=1.0, open_min=True)
    assert p.accepts(1.0) and p.accepts(1e-9) and not p.accepts(0.0) and not p.accepts(float("nan"))
    assert not p.accepts("0.5") and not p.accepts(None)
    q = choice(None, ("a", "b"), "x", none=True)
    assert q.accepts(None) and q.accepts("a") and not q.accepts("c")
    with pytest.raises(CnnlensError, match=r"f: option p must be a number in \(0, 1\]; got 2"):
        validate("f", {"p": p}, {"p": 2})
    with pytest.raises(CnnlensError, match="f has no option 'q'; its options are p"):
        validate("f", {"p": p}, {"q": 1})
    assert validate("f", {"p": p, "n": steps}, {"n": 3}) == {"p": 0.5, "n": 3}


def test_a_string_where_a_number_belongs_is_a_clear_error_not_a_type_error() -> None:
    with pytest.raises(CnnlensError, match=r"gradient_shap: option stdev must be a number in \[0, inf\); got '0.1'"):
        cnnlens.explain(torch.nn.Linear(2, 2), torch.zeros(1, 2, 1, 1), "gradient_shap", stdev="0.1")
    with pytest.raises(CnnlensError, match="smooth_samples must be an int >= 1"):
        cnnlens.get_method("saliency")(smooth="smoothgrad", smooth_samples=0)


def test_help_lists_every_option_with_its_rule() -> None:
    for info in cnnlens.methods():
        doc = cnnlens.get_method(info.name).__doc__ or ""
        for key, option in {**info.options, **SMOOTH_OPTIONS}.items():
            assert f"{key}={option.default!r}: {option.help} ({option.rule})" in doc
    doc = get_metric("deletion").__doc__ or ""
    assert "Petsiuk" in doc and "steps=20:" in doc and "one of positive, absolute" in doc


def test_parse_reads_literals_and_keeps_names() -> None:
    o = integer(1, "x")
    assert o.parse("3") == 3 and o.parse("0.5") == 0.5 and o.parse("(8, 8)") == (8, 8)
    assert o.parse("slic:50") == "slic:50" and o.parse("_blocks.15") == "_blocks.15"
    assert o.parse("true") is True and o.parse("None") is None and o.parse("none") is None


def test_cli_set_values_are_checked_before_the_model_loads(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    argv = ["explain", "missing.png", "--methods", "gradient_shap", "--set", "stdev=-1", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnlens: error: --set: gradient_shap: option stdev must be a number in [0, inf); got -1"]


def test_cli_listing_shows_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "occlusion", "--options"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("occlusion") and any(line.strip().startswith("window=16: occluded window") for line in out)
    assert main(["metrics", "road", "--options"]) == 0
    assert "noise=0.01: std of the noise" in capsys.readouterr().out
