"""environment.yml (for conda users) and pyproject.toml must pin the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", requirement.strip())
        assert match, f"not an exact pin: {requirement!r}"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_environment_yml_pins_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = _pins([r for r in pip_section if not r.startswith("-e")])
    assert listed == expected
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert project["requires-python"] == ">=" + python.split("=")[1]
