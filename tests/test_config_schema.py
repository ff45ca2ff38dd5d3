"""The config schema: shipped in the package, the default config validates, defaults are filled, bad keys are
refused, and its enums are the code's own lists."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from spectral_anomaly.config import SCHEMA_PATH, load_schema, validate_config
from spectral_anomaly.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_the_schema_ships_inside_the_package():
    import spectral_anomaly

    assert SCHEMA_PATH.is_file() and SCHEMA_PATH.is_relative_to(Path(spectral_anomaly.__file__).parent)


def test_default_config_is_valid(config):
    validate_config(config)


def test_defaults_are_filled_in_also_behind_references_and_per_kind(config):
    del config["training"]["patience"]
    del config["models"]["vae"]["sigma_x"]
    config["models"]["small"] = {"kind": "autoencoder"}
    config["models"]["pca"] = {"kind": "pca"}
    validate_config(config)
    assert config["training"]["patience"] == 20
    assert config["models"]["vae"]["sigma_x"] == 1.0
    assert config["models"]["small"] == {"kind": "autoencoder", "architecture": "mlp", "hidden": [128, 32],
                                         "conv_channels": [16, 32], "kernel_size": 5, "latent_dim": 4, "activation": "relu",
                                         "augment": {"copies": 0, "gain": 0.0, "count_scale": 1.0}}
    assert config["models"]["pca"] == {"kind": "pca", "n_components": 4,
                                       "augment": {"copies": 0, "gain": 0.0, "count_scale": 1.0}}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("models", "ae", "hiden"), [3], "models.ae.hiden: unknown key; did you mean 'hidden'? valid keys: 'hidden'"),
        (("models", "pca", "latent_dim"), 3, "models.pca.latent_dim: unknown key; valid keys: .*'n_components'"),
        (("models", "ae", "likelihood"), "poisson", "models.ae.likelihood: unknown key"),
        (("models", "ae", "kind"), "forest", "allowed values: 'autoencoder', 'vae', 'pca'"),
        (("training", "device"), "gpu", "gpu"),
        (("training", "learning_rate"), -1.0, "learning_rate"),
        (("normalization", "steps"), ["unit_integral", "cbrt"], "cbrt"),
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
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        validate_config(copy.deepcopy(config))


def test_an_old_pca_section_gets_one_line_saying_how_to_change_it(config):
    del config["models"]["pca"]
    config["pca"] = {"n_components": 3}
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    assert str(info.value) == ("config: the top-level pca section is gone: the PCA baseline is a model kind now; "
                               "move it under models, e.g. models: {pca: {kind: pca, n_components: 3}}")


def test_every_schema_key_has_a_description():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():  # {}: allowed here, described in a shared branch
                if isinstance(sub, dict) and sub and "description" not in sub and "$ref" not in sub:
                    missing.append(f"{where}.{name}")
            for key, sub in node.items():
                if key != "if":  # conditions, not keys a user writes
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, "$")
    assert not missing


def _enums(schema) -> dict[str, list]:
    found: dict[str, list] = {}

    def walk(node, where):
        if isinstance(node, dict):
            if "enum" in node:
                found.setdefault(where.rsplit(".", 1)[-1], [])
                found[where.rsplit(".", 1)[-1]] += [v for v in node["enum"] if v not in found[where.rsplit(".", 1)[-1]]]
            for key, sub in node.items():
                walk(sub, f"{where}.{key}" if key not in ("properties", "items", "then", "allOf", "oneOf") else where)
        elif isinstance(node, list):
            for sub in node:
                walk(sub, where)

    walk(schema, "$")
    return found


def test_the_schemas_enums_are_the_codes_lists():
    from spectral_anomaly.io import FORMATS
    from spectral_anomaly.models import DETECTOR_KINDS
    from spectral_anomaly.models.likelihoods import LIKELIHOODS
    from spectral_anomaly.models.networks import ACTIVATIONS, ARCHITECTURES
    from spectral_anomaly.normalize import STEPS
    from spectral_anomaly.train import PRECISIONS

    enums = _enums(load_schema())
    assert sorted(enums["format"]) == sorted(FORMATS)
    assert sorted(enums["kind"]) == sorted(DETECTOR_KINDS)
    assert sorted(enums["steps"]) == sorted(STEPS)
    assert sorted(enums["likelihood"]) == sorted(LIKELIHOODS)
    assert sorted(enums["activation"]) == sorted(ACTIVATIONS)
    assert sorted(enums["architecture"]) == sorted(ARCHITECTURES)
    assert sorted(enums["precision"]) == sorted(PRECISIONS)


def test_several_seeds_give_one_instance_per_deep_model_and_seed(config):
    from spectral_anomaly.config import model_config, model_instances, split_instance

    validate_config(config)
    assert model_instances(config) == ["ae", "vae", "pca"]
    assert split_instance(config, "vae") == ("vae", 0)
    config["training"]["seeds"] = [3, 7]
    assert model_instances(config) == ["ae-seed3", "ae-seed7", "vae-seed3", "vae-seed7", "pca"]  # PCA draws nothing
    assert split_instance(config, "vae-seed7") == ("vae", 7)
    assert model_config(config, "ae-seed3") is config["models"]["ae"]


def _edited(config: dict, path: tuple[str, ...], value=None, *, remove: bool = False) -> dict:
    config = copy.deepcopy(config)
    target = config
    for key in path[:-1]:
        target = target[key]
    if remove:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "remove", "expected"),
    [
        (("training", "epoch"), 10, False,
         ["training.epoch: unknown key; did you mean 'epochs'? valid keys: 'epochs', "]),
        (("run_nam",), "x", False, ["run_nam: unknown key at the top level; did you mean 'run_name'? valid keys: "]),
        (("datasets", "demo_hdf5", "formt"), "csv", False,
         ["datasets.demo_hdf5.formt: unknown key; did you mean 'format'? valid keys: 'format', "]),
        (("models", "ae", "latent_dm"), 3, False,
         ["models.ae.latent_dm: unknown key; did you mean 'latent_dim'? valid keys: 'latent_dim', "]),
        (("datasets", "demo_hdf5", "format"), None, True,
         ["datasets.demo_hdf5.format: required key missing; datasets.demo_hdf5 needs 'format', 'path'"]),
        (("datasets", "demo_hdf5", "dataset"), None, True,
         ["datasets.demo_hdf5.dataset: required key missing; datasets.demo_hdf5 (format hdf5_array) needs 'dataset'"]),
        (("models", "ae", "kind"), None, True, ["models.ae.kind: required key missing; models.ae needs 'kind'"]),
        (("run_name",), None, True, ["run_name: required key missing; the config needs 'run_name', 'datasets'"]),
        (("training", "device"), "gpu", False,
         ["training.device: 'gpu' is not allowed; did you mean 'cpu'? allowed values: 'auto', 'cpu', 'cuda'"]),
        (("training", "epochs"), "ten", False, ["training.epochs: 'ten' is text; expected an integer from 1 to 100000"]),
        (("training", "learning_rate"), -1, False,
         ["training.learning_rate: -1 is out of range; allowed: a number above 0"]),
        (("models", "ae", "hidden"), [128, 0], False,
         ["models.ae.hidden[1]: 0 is out of range; allowed: an integer from 1 to 65536"]),
        (("models", "ae", "latent_dim"), 0, False,
         ["models.ae.latent_dim: 0 is not allowed; allowed: an integer from 1 to 1024 or 'auto'"]),
        (("training", "epochs"), list(range(1000)), False, ["training.epochs: [0, 1, 2,", " ... is a list; expected an"]),
    ],
)
def test_a_config_mistake_is_told_in_at_most_two_lines_naming_the_key(config, path, value, remove, expected):
    with pytest.raises(ConfigError) as info:
        validate_config(_edited(config, path, value, remove=remove), source="run.yaml")
    message = str(info.value)
    assert len(message.splitlines()) <= 2 and len(message) < 400, message
    assert message.startswith("run.yaml: "), message
    for part in expected:
        assert part in message, message


def test_a_config_without_models_gets_the_recommended_set(config):
    del config["models"]
    assert set(validate_config(config)["models"]) >= {"pca"}


@pytest.mark.workflow
def test_snakemake_prints_a_config_mistake_as_its_one_line(config, tmp_path):
    from test_workflow import snakemake

    run = snakemake(tmp_path, _edited(config, ("training", "epoch"), 10), "-n")
    output = (run.stdout + run.stderr).strip().splitlines()
    assert run.returncode != 0
    assert output == [f"{tmp_path / 'run.yaml'}: training.epoch: unknown key; did you mean 'epochs'? valid keys: "
                      + output[0].split("valid keys: ", 1)[1]], output
