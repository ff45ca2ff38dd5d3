"""Every key of the config schema refuses a wrong value, naming the key and what is allowed.

The cases are generated from the config schema (src/spectral_anomaly/schema/config.schema.yaml) itself: every property gets a
wrong value derived from its type, enum, bounds or pattern, and every object that refuses unknown
keys gets one; a key added to the schema later is covered without touching this file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from spectral_anomaly.config import validate_config
from spectral_anomaly.exceptions import ConfigError

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "src" / "spectral_anomaly" / "schema" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_FILE.read_text())
CONSTRAINTS = ("type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern",
               "minLength", "items", "minItems", "maxItems", "uniqueItems", "properties")


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target: Any = SCHEMA
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return resolve(target)
    return node


def dataset_schemas() -> dict[str, dict[str, Any]]:
    """Per dataset format: the properties its ``then`` branch allows and the keys it requires."""
    entry = SCHEMA["properties"]["datasets"]["additionalProperties"]
    return {branch["if"]["properties"]["format"]["const"]: branch["then"] for branch in entry["allOf"]}


def model_schemas() -> dict[str, dict[str, Any]]:
    """Per detector kind: the properties its ``then`` branches allow (a shared branch describes the keys
    of the deep kinds) and whether unknown keys are refused."""
    entry = SCHEMA["properties"]["models"]["additionalProperties"]
    merged = {}
    for kind in entry["properties"]["kind"]["enum"]:
        properties, strict = {}, False
        for branch in entry["allOf"]:
            condition = branch["if"]["properties"]["kind"]
            if condition.get("const") == kind or kind in condition.get("enum", []):
                for name, sub in branch["then"].get("properties", {}).items():
                    properties[name] = sub or properties.get(name, {})
                strict |= branch["then"].get("additionalProperties") is False
        properties["kind"] = entry["properties"]["kind"]  # constrained once, outside the branches
        merged[kind] = {"properties": properties, "additionalProperties": not strict}
    return merged


def base_config(variant: str = "csv") -> dict[str, Any]:
    """A smallest valid config: one dataset (of format ``variant``) and one detector (of kind
    ``variant[len("model:"):]`` for a ``model:`` variant, else an autoencoder)."""
    fmt, kind = ("csv", variant.removeprefix("model:")) if variant.startswith("model:") else (variant, "autoencoder")
    then = dataset_schemas()[fmt]
    dataset = {"format": fmt, "path": "x.dat", **{key: "x" for key in then.get("required", []) if key != "path"}}
    return {"run_name": "t", "datasets": {"d": dataset}, "models": {"m": {"kind": kind}}}


def objects() -> list[tuple[tuple[str, ...], dict[str, Any], str]]:
    """(path in a config, object schema, dataset format) of every object with named properties."""
    found = [((), SCHEMA, "csv")]
    for name, sub in SCHEMA["properties"].items():
        if sub.get("type") == "object" and "properties" in sub:
            found.append(((name,), sub, "csv"))
    for kind, schema in model_schemas().items():
        found.append((("models", "m"), schema, f"model:{kind}"))
    for fmt, then in dataset_schemas().items():
        found.append((("datasets", "d"), then, fmt))
    return found


def leaves() -> list[tuple[tuple[str, ...], dict[str, Any], str]]:
    """(key path, resolved schema, dataset format) of every constrained key."""
    found = []
    outer_dataset = SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]
    for path, schema, fmt in objects():
        for name, sub in schema["properties"].items():
            sub = resolve(sub)
            if path == ("datasets", "d") and not any(key in sub for key in CONSTRAINTS):
                sub = outer_dataset[name]  # e.g. format: constrained once, outside the branches
            if path == () and sub.get("type") == "object" and "properties" in sub:
                continue  # a section: its keys are leaves of their own
            found.append(((*path, name), sub, fmt))
    return found


def bad_value(schema: dict[str, Any]) -> tuple[Any, list[str]] | None:
    """A value the schema refuses and the words the error must show (what is allowed), or None."""
    if "oneOf" in schema:  # a value every alternative refuses; the error names each alternative
        alternatives = [resolve(sub) for sub in schema["oneOf"]]
        for sub in alternatives:
            candidate = bad_value(sub) if "const" not in sub else None
            if candidate is not None and not any(jsonschema.Draft202012Validator(a).is_valid(candidate[0]) for a in alternatives):
                return candidate[0], [*candidate[1], *["null" if a["const"] is None else repr(a["const"])
                                                       for a in alternatives if "const" in a]]
        return None
    if "enum" in schema:
        return "no_such_choice", [repr(v) for v in schema["enum"]]
    kind = schema.get("type")
    if kind in ("integer", "number"):
        for bound, step in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1), ("exclusiveMaximum", 0)):
            if bound in schema:
                return schema[bound] + step, [str(schema[bound])]
        return "text", [kind]
    if kind == "string":
        if "pattern" in schema:
            return "bad value!", [schema["pattern"]]
        if "minLength" in schema:
            return "", [str(schema["minLength"])]
        return 12, ["string"]
    if kind == "boolean":
        return "yes", ["boolean"]
    if kind == "array":
        items = resolve(schema.get("items", {}))
        if items:
            inner = bad_value(items)
            if inner is not None:
                return [inner[0]] * max(1, schema.get("minItems", 1)), inner[1]
        if "minItems" in schema:
            return [], [str(schema["minItems"])]
        return "text", ["array"]
    if kind == "object":
        return "text", ["object"]
    return None


def with_value(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(config)
    target = config
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return config


LEAVES = leaves()


def test_every_schema_key_has_a_derivable_wrong_value():
    assert len(LEAVES) > 50, "the walk must reach every section, model and dataset key"
    assert [".".join(path) for path, schema, _ in LEAVES if bad_value(schema) is None] == []


@pytest.mark.parametrize(("path", "schema", "fmt"), LEAVES, ids=[f"{fmt}:{'.'.join(p)}" if p[0] in ("datasets", "models")
                                                                   else ".".join(p) for p, _, fmt in LEAVES])
def test_a_wrong_value_names_the_key_and_what_is_allowed(path, schema, fmt):
    value, allowed = bad_value(schema)
    with pytest.raises(ConfigError) as error:
        validate_config(with_value(base_config(fmt), path, value))
    message = str(error.value)
    assert ".".join(path) in message, message
    for word in allowed:
        assert word in message, f"{word!r} missing from: {message}"


STRICT = [(path, schema, fmt) for path, schema, fmt in objects() if schema.get("additionalProperties") is False]


@pytest.mark.parametrize(("path", "schema", "fmt"), STRICT, ids=[f"{fmt}:{'.'.join(p)}" if p and p[0] in ("datasets", "models")
                                                                   else ".".join(p) or "top" for p, _, fmt in STRICT])
def test_an_unknown_key_is_refused_at_every_level(path, schema, fmt):
    with pytest.raises(ConfigError) as error:
        validate_config(with_value(base_config(fmt), (*path, "unknown_key"), 1))
    message = str(error.value)
    assert f"{'.'.join((*path, 'unknown_key'))}: unknown key" in message, message
    assert path or "at the top level" in message, message
    assert "valid keys:" in message and repr(next(iter(schema["properties"]))) in message, message


def test_the_walk_reaches_every_object_that_refuses_unknown_keys():
    strict = {".".join(p) + (f"[{fmt}]" if p and p[0] in ("datasets", "models") else "") for p, _, fmt in STRICT}
    expected = {"", "demo", "ingest", "split", "normalization", "training", "scoring", "report"}
    expected |= {f"datasets.d[{fmt}]" for fmt in dataset_schemas()} | {f"models.m[model:{kind}]" for kind in model_schemas()}
    assert expected <= strict
