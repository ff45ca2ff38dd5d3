"""Tests that change the machine run only when asked: the ``system`` marker, ``--run-system`` and
SPECTRAL_ANOMALY_SYSTEM_TESTS, defined in tests/conftest.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
#: commands a test runs that change the machine: installing packages, starting daemons, mounting
CHANGES_THE_MACHINE = re.compile(r'\["(?:apt-get|apt|dpkg|pip|mount|systemctl|service)",|start-cluster\.sh')

A_SYSTEM_TEST = """
import pytest

@pytest.mark.system
def test_changes_the_machine():
    pass

def test_leaves_it_alone():
    pass
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    """A suite of one system test and one other, with the project's conftest.py and markers."""
    monkeypatch.delenv("SPECTRAL_ANOMALY_SYSTEM_TESTS", raising=False)
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    system: changes the machine\naddopts = -ra --strict-markers\n")
    pytester.makepyfile(A_SYSTEM_TEST)
    return pytester


def test_a_system_test_is_skipped_unless_asked_with_the_way_to_ask(suite):
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*changes this machine*run with --run-system or SPECTRAL_ANOMALY_SYSTEM_TESTS=1*"])


@pytest.mark.parametrize("ask", ["option", "variable"])
def test_a_system_test_runs_when_asked(suite, monkeypatch, ask):
    if ask == "variable":
        monkeypatch.setenv("SPECTRAL_ANOMALY_SYSTEM_TESTS", "1")
    result = suite.runpytest_subprocess(*(["--run-system"] if ask == "option" else []))
    result.assert_outcomes(passed=2)


def test_every_test_that_changes_the_machine_is_marked_system():
    unmarked = []
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text()
        if CHANGES_THE_MACHINE.search(text) and "pytest.mark.system" not in text:
            unmarked.append(path.name)
    assert unmarked == []
