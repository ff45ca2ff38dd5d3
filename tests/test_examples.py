"""The example configs in config/examples/ are valid and run end to end on the real data, each giving a
detection metric; those in config/exploratory/ (no metric possible) are valid and say why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_workflow import snakemake

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
EXPLORATORY = sorted((ROOT / "config" / "exploratory").glob("*.yaml"))


@pytest.mark.parametrize("example", EXPLORATORY, ids=[p.stem for p in EXPLORATORY])
def test_exploratory_config_is_valid_and_says_why_it_gives_no_metric(example):
    from spectral_anomaly.config import validate_config

    validate_config(yaml.safe_load(example.read_text()))
    assert example.read_text().startswith("# Not a ready run: it gives no detection metric")


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_is_valid(example):
    from spectral_anomaly.config import validate_config

    validate_config(yaml.safe_load(example.read_text()))


@pytest.mark.workflow
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_end_to_end(example, tmp_path):
    config = yaml.safe_load(example.read_text())
    for dataset in config["datasets"].values():  # the examples use paths relative to the repository root
        dataset["path"] = str((ROOT / dataset["path"]).resolve())
        if not Path(dataset["path"]).exists():
            pytest.skip(f"real data not found: {dataset['path']}")
    config["training"]["epochs"] = 20  # end to end, not to convergence
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    (version,) = (tmp_path / "results").glob(f"{config['run_name']}-*")
    for name in config["datasets"]:
        metrics = json.loads((version / "reports" / f"{name}.metrics.json").read_text())
        assert set(metrics["models"]) == set(config.get("models") or ("pca", "ae", "vae"))
        assert metrics["labelled"] is True
        for model, entry in metrics["models"].items():  # a ready run measures how well each detector detects
            assert isinstance(entry["roc_auc"], float) and 0.0 <= entry["roc_auc"] <= 1.0, model
