"""The config schema: the default config validates, defaults are filled, bad keys are refused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate
from snakemake_interface_common.exceptions import WorkflowError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture()
def config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid(config):
    validate(config, SCHEMA)


def test_defaults_are_filled_in(config):
    del config["training"]["patience"]
    del config["models"]["vae"]["sigma_x"]
    validate(config, SCHEMA)
    assert config["training"]["patience"] == 20
    assert config["models"]["vae"]["sigma_x"] == 1.0


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("models", "ae", "hiden"), [3], "hiden"),
        (("training", "device"), "gpu", "gpu"),
        (("training", "learning_rate"), -1.0, "learning_rate"),
        (("normalization", "steps"), ["unit_integral", "sqrt"], "sqrt"),
        (("datasets", "demo_root", "key"), "data", "key"),
        (("split", "train_on"), "good", "good"),
        (("unknown_section",), {}, "unknown_section"),
    ],
)
def test_bad_values_and_unknown_keys_are_refused(config, path, value, message):
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(WorkflowError, match=message):
        validate(copy.deepcopy(config), SCHEMA)


def test_pca_is_a_reserved_model_name(config):
    config["models"]["pca"] = {"kind": "autoencoder"}
    with pytest.raises(WorkflowError):
        validate(config, SCHEMA)


def test_every_schema_key_has_a_description():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                    missing.append(f"{where}.{name}")
            for key, sub in node.items():
                if key != "if":  # conditions, not keys a user writes
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, "$")
    assert not missing


def test_several_seeds_give_one_instance_per_model_and_seed(config):
    from spectral_anomaly.config import model_config, model_instances, split_instance

    validate(config, SCHEMA)
    assert model_instances(config) == ["ae", "vae"]
    assert split_instance(config, "vae") == ("vae", 0)
    config["training"]["seeds"] = [3, 7]
    assert model_instances(config) == ["ae-seed3", "ae-seed7", "vae-seed3", "vae-seed7"]
    assert split_instance(config, "vae-seed7") == ("vae", 7)
    assert model_config(config, "ae-seed3") is config["models"]["ae"]
