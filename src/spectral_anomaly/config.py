"""The run config: its schema, validation (filling in defaults), and its sections by name.

The schema ships with the package (``schema/config.schema.yaml``) and is checked with
``jsonschema`` directly, so the library stands alone: the Snakefile validates through
:func:`validate_config`, as every subcommand does. The workflow writes the validated config, defaults
filled in, into the result version as ``config.yaml``; every subcommand reads that file, so a
stage run by hand sees exactly what the workflow saw.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigError, InputFileError, closest_first, did_you_mean

#: the config schema, shipped inside the package
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "config.schema.yaml"


def load_schema() -> dict[str, Any]:
    """The config schema with its local ``$ref`` s written out (so defaults behind them are filled in too)."""
    global _SCHEMA
    if _SCHEMA is None:
        raw = yaml.safe_load(SCHEMA_PATH.read_text())
        _SCHEMA = _inline_references(raw, raw)
    return copy.deepcopy(_SCHEMA)


_SCHEMA: dict[str, Any] | None = None


def _inline_references(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            merged = {**_inline_references(target, root), **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline_references(merged, root)
        return {key: _inline_references(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_references(item, root) for item in node]
    return node


def _validator(schema: dict[str, Any]):
    """A Draft 2020-12 validator that fills in every ``default`` of the properties it checks."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, subschema):
        if validator.is_type(instance, "object"):
            for name, property_schema in properties.items():
                if isinstance(property_schema, dict) and "default" in property_schema and name not in instance:
                    instance[name] = copy.deepcopy(property_schema["default"])
        yield from check_properties(validator, properties, instance, subschema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})(schema)


def validate_config(config: dict[str, Any], *, source: str | os.PathLike[str] = "config") -> dict[str, Any]:
    """Validate ``config`` against the schema in place, filling in defaults; then the checks a schema
    cannot express (:func:`check_config_values`). The Snakefile and every stage call this, so a stage
    run by hand accepts exactly what the workflow accepts."""
    import jsonschema

    if isinstance(config.get("pca"), dict):
        raise ConfigError(
            f"{source}: the top-level pca section is gone: the PCA baseline is a model kind now; move it under models, "
            f"e.g. models: {{pca: {{kind: pca, n_components: {config['pca'].get('n_components', 4)}}}}}"
        )
    validator = _validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    while error is not None and error.parent is not None and error.parent.validator == "oneOf":
        error = error.parent  # name every allowed form (e.g. a number or 'auto'), not only the closest one
    if error is not None:
        raise ConfigError(f"{source}: {describe_schema_error(error)}")
    check_config_values(config, source=source)
    return config


def describe_schema_error(error: Any) -> str:
    """A schema violation in one line, ``<key path>: <problem>; <what is allowed>``, never the schema itself:
    an unknown key with the closest valid ones, a missing key by name, a wrong value with what is allowed."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _describe_unknown_keys(path, error.instance, list(error.schema.get("properties") or {}))
    if error.validator == "required" and isinstance(error.instance, dict):
        return _describe_missing_keys(path, error.instance, list(error.validator_value))
    if "propertyNames" in error.schema_path:
        return f"{_key_path(path)}: the name {_short(error.instance)} is not allowed; allowed: {_describe_form(error.schema)}"
    return f"{_key_path(path)}: {_describe_wrong_value(error)}"


def _key_path(path: list) -> str:
    """``datasets.d.bin_range[0]``: the keys joined by dots, list positions in brackets."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _describe_unknown_keys(path: list, instance: dict, known: list[str]) -> str:
    key, *others = [name for name in instance if name not in known]
    where = "" if path else " at the top level"
    more = f", ... ({len(others) - 5} more)" if len(others) > 5 else ""
    also = f" (also unknown: {', '.join(map(repr, others[:5]))}{more})" if others else ""
    return (f"{_key_path([*path, str(key)])}: unknown key{where}{also};{did_you_mean(key, known)} "
            f"valid keys: {closest_first(str(key), known)}")


def _describe_missing_keys(path: list, instance: dict, required: list[str]) -> str:
    missing = next(key for key in required if key not in instance)
    owner = _key_path(path) if path else "the config"
    for selector in ("format", "kind"):  # the key that chose which other keys apply
        if selector in instance and selector not in required:
            owner += f" ({selector} {instance[selector]})"
    return f"{_key_path([*path, missing])}: required key missing; {owner} needs {', '.join(map(repr, required))}"


#: what a wrong value is, in the words of a YAML file
_VALUE_KINDS = ((bool, "true/false"), (int, "a whole number"), (float, "a number"), (str, "text"), (list, "a list"),
                (dict, "a mapping"), (type(None), "empty"))


def _describe_wrong_value(error: Any) -> str:
    """``<value> <is what>; allowed: <what is allowed>`` for every rule but unknown and missing keys."""
    rule, rule_value, value = error.validator, error.validator_value, error.instance
    shown = _short(value)
    if rule == "enum":
        return f"{shown} is not allowed;{did_you_mean(value, rule_value)} allowed values: {', '.join(map(repr, rule_value))}"
    if rule == "const":
        return f"{shown} is not allowed; allowed value: {rule_value!r}"
    if rule == "type":
        kind = next((name for cls, name in _VALUE_KINDS if isinstance(value, cls)), type(value).__name__)
        return f"{shown} is {kind}; expected {_describe_form(error.schema)}"
    if rule in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return f"{shown} is out of range; allowed: {_describe_form(error.schema)}"
    if rule == "oneOf":
        return f"{shown} is not allowed; allowed: " + " or ".join(_describe_form(sub) for sub in rule_value)
    allowed = {
        "pattern": lambda: f"text matching {rule_value}",
        "minLength": lambda: f"text of at least {rule_value} characters",
        "minItems": lambda: f"at least {rule_value} entries",
        "maxItems": lambda: f"at most {rule_value} entries",
        "uniqueItems": lambda: "entries without repeats",
        "minProperties": lambda: f"at least {rule_value} entries",
    }.get(rule)
    if allowed is None:
        return f"{shown} is not allowed (schema rule {rule})"
    return f"{shown} is not allowed; allowed: {allowed()}"


def _describe_form(schema: dict) -> str:
    """What a schema allows, in words: ``'auto'``, ``an integer from 1 to 1024``, ``a number above 0``, ``a list ...``."""
    if "const" in schema:
        return "null (left out)" if schema["const"] is None else repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return f"{'an' if kind == 'integer' else 'a'} {kind}{_describe_bounds(schema)}"
    if kind == "array":
        items = schema.get("items") or {}
        return "a list (array)" + (f" of {_describe_form(items)}" if items else "")
    if kind == "string":
        if "pattern" in schema:
            return f"text (string) matching {schema['pattern']}"
        return f"text (string) of at least {schema['minLength']} character(s)" if "minLength" in schema else "text (string)"
    return {"boolean": "true or false (boolean)", "object": "a mapping of keys (object)"}.get(kind, f"a {kind}")


def _describe_bounds(schema: dict) -> str:
    """`` from 1 to 10``, `` above 0``, `` at least 0 and below 1``: the bounds of a number schema."""
    if "minimum" in schema and "maximum" in schema:
        return f" from {schema['minimum']} to {schema['maximum']}"
    words = {"minimum": "at least", "exclusiveMinimum": "above", "maximum": "at most", "exclusiveMaximum": "below"}
    return "".join(f"{' and' if i else ''} {words[key]} {schema[key]}"
                   for i, key in enumerate(key for key in words if key in schema))


#: top-level system folders that can never hold result versions (besides the file-system root itself)
SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys",
                  "/usr", "/var")
#: system folders below which nothing may be written either: the kernel's, devices, boot files, configuration
#: and programs (a folder of one's own below /usr/local or /var is fine)
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys")


def check_results_dir(value: object) -> str:
    """Refuse a ``results_dir`` that is empty, a file-system root or system folder, or unusable in rule patterns."""
    allowed = ("a non-empty relative path (e.g. results) or an absolute path below a folder of your own "
               "(e.g. /data/me/results)")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"results_dir: {value!r} is empty; give {allowed}")
    if any(ord(char) < 32 for char in value):
        raise ConfigError(f"results_dir: {value!r} holds control characters (e.g. a newline); give {allowed}")
    if "{" in value or "}" in value:
        raise ConfigError(f"results_dir: {value!r} holds braces, which Snakemake reads as wildcards; give {allowed}")
    if "<" in value or ">" in value:  # the path is written into a <script> of the Snakemake report as it is
        raise ConfigError(f"results_dir: {value!r} holds < or >, which the Snakemake report would embed in its page "
                          f"unescaped; give {allowed}")
    if value.startswith("-"):
        raise ConfigError(f"results_dir: {value!r} starts with '-', which a command line reads as an option; "
                          f"write ./{value} for a folder of that name")
    resolved = Path(os.path.abspath(value))
    if resolved.parent == resolved or str(resolved) in SYSTEM_FOLDERS:
        raise ConfigError(f"results_dir: {value!r} is the system folder {str(resolved)!r}; give {allowed}")
    tree = next((t for t in SYSTEM_TREES if str(resolved).startswith(t + "/")), None)
    if tree is not None:
        raise ConfigError(f"results_dir: {value!r} lies inside the system folder {tree!r}; give {allowed}")
    existing = next((p for p in (resolved, *resolved.parents) if os.path.lexists(p)), None)
    if existing is not None and not os.path.isdir(existing):
        raise ConfigError(f"results_dir: {value!r}: {str(existing)!r} exists and is not a folder; give {allowed}")
    return value


def check_config_values(config: dict[str, Any], *, source: str | os.PathLike[str] = "config") -> None:
    """The checks a schema cannot express: ``results_dir`` and every metadata expression (parsed, never run)."""
    from .expressions import check_config_expressions

    try:
        check_results_dir(config.get("results_dir", "results"))
        check_config_expressions(config)
        for name, dataset in (config.get("datasets") or {}).items():
            low, high = dataset.get("bin_range") or (0.0, 1.0)
            if not high > low:
                raise ConfigError(f"datasets.{name}.bin_range: [{low}, {high}] is empty or reversed; give [low, high] "
                                  "with high above low")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file as it is, with a clear error if it is missing or not a mapping.

    A version's ``config.yaml`` written by the workflow carries a checksum, so an edited one is refused.
    """
    from .store.integrity import verify_checksum

    if os.path.isfile(path):
        verify_checksum(path)
    try:
        with open(path) as stream:
            config = yaml.safe_load(stream)
    except FileNotFoundError:
        raise InputFileError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(config).__name__}")
    return config


def load_run_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a YAML run config, with a clear error if it is missing or invalid."""
    return validate_config(read_config_file(path), source=path)


def _section_entry(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    entries = config.get(section) or {}
    if name not in entries:
        raise ConfigError(
            f"config has no {section[:-1]} named {name!r}; configured {section}: {closest_first(name, entries)}"
        )
    return entries[name]


def dataset_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``datasets.<name>`` section."""
    return _section_entry(config, "datasets", name)


#: separates a model's name from its seed in the name of one trained instance: ``vae-seed3``
SEED_SEPARATOR = "-seed"


def model_instances(config: dict[str, Any]) -> list[str]:
    """The fitted detectors of a run: each detector trained over epochs once per seed of
    ``training.seeds``, every other kind (PCA, deterministic) once.

    With one seed an instance is named as its model; with several, ``<model>-seed<n>``.
    """
    from .models import detector_kind

    seeds = config["training"]["seeds"]
    instances = []
    for model, spec in config["models"].items():
        seeded = len(seeds) > 1 and detector_kind(spec.get("kind")).trained_by_epochs
        instances += [f"{model}{SEED_SEPARATOR}{seed}" for seed in seeds] if seeded else [model]
    return instances


def split_instance(config: dict[str, Any], instance: str) -> tuple[str, int]:
    """The model name and training seed of a trained instance (see :func:`model_instances`)."""
    model, separator, seed = instance.rpartition(SEED_SEPARATOR)
    if separator and seed.isdigit() and model in (config.get("models") or {}):
        return model, int(seed)
    return instance, int(config.get("training", {}).get("seeds", [0])[0])


def model_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``models.<name>`` section; ``name`` may be a trained instance such as ``vae-seed3``."""
    return _section_entry(config, "models", split_instance(config, name)[0])


def check_bin_count(dataset: str, n_bins: int) -> None:
    """Refuse spectra of fewer than two bins: no detector can learn a shape from them."""
    if n_bins < 2:
        raise ConfigError(
            f"dataset {dataset!r}: its spectra have {n_bins} bin; every model needs at least 2 bins to learn a shape "
            "from (check the dataset's object, branch or bin_columns)"
        )


def check_model_shapes(config: dict[str, Any], *, dataset: str, n_bins: int) -> None:
    """Refuse latent spaces that are not smaller than the spectra of ``dataset`` (``n_bins`` bins).

    A latent dimension (or number of principal components) at or above the number of bins can copy
    every spectrum unchanged and so cannot tell an anomaly from a normal spectrum.
    """
    from .models import detector_kind

    check_bin_count(dataset, n_bins)
    for name, spec in (config.get("models") or {}).items():
        latent_key = detector_kind(spec["kind"]).latent_key
        size = spec.get(latent_key)
        if isinstance(size, int) and size >= n_bins:  # auto is chosen below the bin count
            key = f"models.{name}.{latent_key}"
            raise ConfigError(
                f"{key} is {size}, but dataset {dataset!r} has spectra of {n_bins} bins; a latent space must be "
                f"smaller than the spectrum: choose {latent_key} from 1 to {n_bins - 1}"
            )


def check_report_options(config: dict[str, Any], *, source: str | os.PathLike[str] = "config") -> None:
    """Refuse ``report.top_spectra`` above ``scoring.n_examples``: the report draws only stored examples."""
    top, stored = config["report"]["top_spectra"], config["scoring"]["n_examples"]
    if top > stored:
        raise ConfigError(
            f"{source}: report.top_spectra is {top}, but the score step stores only the {stored} most anomalous "
            f"spectra per model (scoring.n_examples); choose report.top_spectra from 1 to {stored}, or raise "
            "scoring.n_examples (which makes a new result version)"
        )
