"""The metadata expressions of a config (anomaly_label, train_selection) are parsed, never executed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectral_anomaly.exceptions import ConfigError
from spectral_anomaly.expressions import evaluate_boolean_expression, parse_expression
from spectral_anomaly.store.canonical import evaluate_metadata_expression

MARKER = "expression-ran"

#: ways out of a Python expression evaluator; each must be refused before anything runs
ESCAPES = [
    f"@os.system('touch {MARKER}')",
    f"__import__('os').system('touch {MARKER}')",
    f"run.__class__.__init__.__globals__['os'].system('touch {MARKER}')",
    "().__class__.__bases__[0].__subclasses__()",
    f"open('{MARKER}', 'w')",
    f"exec(\"open('{MARKER}', 'w')\")",
    f"eval(\"open('{MARKER}', 'w')\")",
    "run.sum() > 0",
    "quality.str.contains('bad')",
    "run[0] == 1",
    "lambda: 1",
    "[x for x in run]",
    "{x for x in run}",
    "(x for x in run)",
    "{1: run}",
    f"f\"{{open('{MARKER}', 'w')}}\"",
    "run if quality == 'bad' else run",
    "(run := 1)",
    "run ** 2 > 1",
    "10 ** 10 ** 10 > run",
    "run @ run",
    "run & (quality == 'bad')",
    "~(run == 1)",
    "run is None",
    "b'bad' == quality",
    "run == [1, 2]",
    "run in run",
    "run in [quality]",
    "__builtins__",
    "run == __file__",
    "*run",
    "yield run",
    "await run",
    "run; import os",
    "import os",
    "`run",
    "",
    "x" * 3000,
]


@pytest.fixture
def metadata() -> pd.DataFrame:
    return pd.DataFrame({
        "run": np.array([1, 2, 3, 4, 5, 6]),
        "quality": pd.array(["good", "bad", "good", "good", "bad", "good"], dtype="str"),
        "is_bad": np.array([0, 1, 0, 0, 1, 0], dtype=np.int8),
        "energy keV": np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),
    })


@pytest.mark.parametrize("expression", ESCAPES)
def test_escape_attempts_are_refused_before_anything_runs(expression, metadata, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        evaluate_metadata_expression(metadata, expression, dataset="d", key="anomaly_label")
    message = str(info.value)
    assert "\n" not in message, "one line"
    assert message.startswith("datasets.d.anomaly_label: "), "the message names the key"
    assert "comparisons" in message and "and / or / not" in message, "and says what is allowed"
    assert not (tmp_path / MARKER).exists(), "nothing ran"


@pytest.mark.parametrize(("expression", "expected"), [
    ("quality == 'bad'", [0, 1, 0, 0, 1, 0]),
    ('quality != "good"', [0, 1, 0, 0, 1, 0]),
    ("is_bad", [0, 1, 0, 0, 1, 0]),
    ("is_bad == 1 and run > 2", [0, 0, 0, 0, 1, 0]),
    ("run < 2 or run >= 6", [1, 0, 0, 0, 0, 1]),
    ("not (run == 1)", [0, 1, 1, 1, 1, 1]),
    ("run in [1, 3]", [1, 0, 1, 0, 0, 0]),
    ("run not in (1, 3)", [0, 1, 0, 1, 1, 1]),
    ("quality in ['bad']", [0, 1, 0, 0, 1, 0]),
    ("2 < run <= 4", [0, 0, 1, 1, 0, 0]),
    ("run % 2 == 1", [1, 0, 1, 0, 1, 0]),
    ("(run + 1) * 2 // 3 - run / 2 > 0", [1, 1, 1, 1, 1, 1]),
    ("-run < -4", [0, 0, 0, 0, 1, 1]),
    ("run in [-1, 2]", [0, 1, 0, 0, 0, 0]),
    ("`energy keV` > 35", [0, 0, 0, 1, 1, 1]),
    ("run == 1 or True", [1, 1, 1, 1, 1, 1]),
])
def test_the_documented_language_works(expression, expected, metadata):
    values = evaluate_boolean_expression(expression, metadata, key="k")
    assert values.dtype == bool
    np.testing.assert_array_equal(values, np.array(expected, dtype=bool))


def test_pandas_would_have_run_code_from_the_same_expression(metadata, tmp_path, monkeypatch):
    """The class of attack is real: DataFrame.eval resolves @names in the caller's globals."""
    monkeypatch.chdir(tmp_path)
    import os  # noqa: F401  (what an @os expression reaches)

    metadata.eval(f"@os.system('touch {MARKER}')", engine="python")
    assert (tmp_path / MARKER).exists()


@pytest.mark.parametrize(("expression", "problem"), [
    ("quality + 1 == 2", "arithmetic needs numbers"),
    ("'a' * 100000000 == quality", "arithmetic needs numbers"),
    ("quality < 3", "cannot compare"),
    ("run and is_bad", "and / or needs true/false"),
    ("run + 1", "must give one true/false value per spectrum"),
    ("1 == 1", "must give one true/false value per spectrum"),
])
def test_wrong_types_get_one_line_naming_the_key(expression, problem, metadata):
    with pytest.raises(ConfigError, match=problem) as info:
        evaluate_boolean_expression(expression, metadata, key="datasets.d.train_selection")
    assert str(info.value).startswith("datasets.d.train_selection: ") and "\n" not in str(info.value)


def test_an_unknown_column_is_named_with_the_closest_columns(metadata):
    with pytest.raises(ConfigError, match="unknown column 'qualty'") as info:
        evaluate_boolean_expression("qualty == 'bad'", metadata, key="k")
    assert "'quality'" in str(info.value)


def test_parsing_lists_the_columns_read_without_any_table():
    parsed = parse_expression("run == 1 and `energy keV` > 2 or quality in ['x']", key="k")
    assert parsed.column_names == ["run", "energy keV", "quality"]


def test_a_refused_expression_stops_the_config_before_any_job(tiny_demo_config):
    datasets = {"d": {"format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra",
                      "anomaly_label": f"@os.system('touch {MARKER}')"}}
    with pytest.raises(ConfigError, match="datasets.d.anomaly_label"):
        tiny_demo_config(datasets=datasets)


@pytest.mark.parametrize(("expression", "problem"), [
    ("-" * 1990 + "run == 1", "nested more than 64 levels deep"),
    ("1+" * 996 + "1 == run", "nested more than 64 levels deep"),
    ("not " * 400 + "is_bad", "nested more than 64 levels deep"),
    ("(" * 250 + "run == 1" + ")" * 250, "not a valid expression"),  # beyond Python's parser
])
def test_deeply_nested_expressions_are_refused_in_one_line(expression, problem, metadata):
    with pytest.raises(ConfigError, match=problem) as info:
        evaluate_boolean_expression(expression, metadata, key="k")
    assert "\n" not in str(info.value)
