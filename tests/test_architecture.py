"""The joints of the package: no import circle, no model kind named outside ``models/``, a library
that runs every stage without Snakemake, and torch imported only by the jobs of deep detectors."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "spectral_anomaly"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it is imported (not those imported inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            imported.add(module)
            imported |= {f"{module}.{alias.name}" for alias in node.names}
    return {module for module in imported if module.startswith("spectral_anomaly")}


def test_no_module_of_the_package_imports_itself_in_a_circle():
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _module_level_imports(path) if m in modules and m != name}
             for name, path in modules.items()}
    for name in graph:  # a module's import runs its package's __init__ first, which is not a circle
        graph[name] -= {parent for parent in graph if name.startswith(parent + ".")}
    circles, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)
    assert "spectral_anomaly.store.integrity" in graph["spectral_anomaly.store.atomic"], "relative imports are seen"


#: files outside models/ that may name a kind, and why
KIND_NAMED_ON_PURPOSE = {
    "src/spectral_anomaly/config.py": "the one-line migration of the old top-level pca section",
}


def test_no_detector_kind_is_special_cased_outside_the_models_package():
    from spectral_anomaly.models import DETECTOR_KINDS

    kinds = set(DETECTOR_KINDS)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("src/spectral_anomaly/models/") or relative in KIND_NAMED_ON_PURPOSE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in kinds:
                found.append(f"{relative}:{node.lineno}: {node.value!r}")
    rules = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    for path in rules:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {kind!r}" for kind in kinds
                      if re.search(rf"[\"']{kind}[\"']", line)]
    assert not found, "detector kinds named outside models/:\n" + "\n".join(found)


STAGES_WITHOUT_SNAKEMAKE = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoSnakemake(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "snakemake" or name.startswith("snakemake."):
                raise ImportError(f"{name} is blocked: the library must run without Snakemake")
            return None

    sys.meta_path.insert(0, NoSnakemake())
    out = sys.argv[1]
    import spectral_anomaly
    from spectral_anomaly import stages
    from spectral_anomaly.config import validate_config
    from spectral_anomaly.store.layout import VersionLayout

    config = validate_config({
        "run_name": "alone", "demo": {"n_spectra": 240, "n_bins": 24},
        "datasets": {"d": {"format": "hdf5_array", "path": "demo://spectra.h5", "dataset": "spectra",
                           "metadata_group": "metadata", "anomaly_label": "anomaly_kind != 0"}},
        "models": {"pca": {"kind": "pca", "n_components": 2},
                   "ae": {"kind": "autoencoder", "hidden": [8], "latent_dim": 2}},
        "training": {"epochs": 2, "device": "cpu"}})
    layout = VersionLayout(out)
    stages.run_demo(config, hdf5_path=layout.demo("spectra.h5"), root_path=layout.demo("spectra.root"))
    paths = {"data_path": layout.store("d"), "split_path": layout.split("d")}
    stages.run_ingest(config, "d", input_paths=[layout.demo("spectra.h5")], output=paths["data_path"])
    stages.run_split(config, "d", data_path=paths["data_path"], output=paths["split_path"])
    stages.run_normalize(config, "d", **paths, output=layout.normalization("d"))
    imported = {}

    def train(model):
        stages.run_train(config, "d", model, **paths, normalization_path=layout.normalization("d"),
                         model_path=layout.model("d", model), history_path=layout.history("d", model),
                         summary_path=layout.summary("d", model), scores_path=layout.scores("d", model),
                         examples_path=layout.examples("d", model))

    train("pca")
    stages.run_score(config, "d", "pca", **paths, model_path=layout.model("d", "pca"),
                     scores_path=layout.scores("d", "pca"), examples_path=layout.examples("d", "pca"))
    imported["torch after the PCA jobs"] = "torch" in sys.modules
    train("ae")
    imported["torch after the autoencoder job"] = "torch" in sys.modules
    stages.run_report(config, "d", result_dir=out, html_path=layout.report("d"), metrics_path=layout.metrics("d"),
                      figure_dir=layout.figures("d"), build_record=layout.build_record("d"))
    imported["snakemake"] = any(name.split(".")[0] == "snakemake" for name in sys.modules)
    print(json.dumps(imported))
""")


def test_every_stage_runs_without_snakemake_and_only_deep_jobs_import_torch(tmp_path):
    run = subprocess.run([sys.executable, "-c", STAGES_WITHOUT_SNAKEMAKE, str(tmp_path / "version")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    imported = json.loads(run.stdout.strip().splitlines()[-1])
    assert imported == {"torch after the PCA jobs": False, "torch after the autoencoder job": True,
                        "snakemake": False}
    metrics = json.loads((tmp_path / "version" / "reports" / "d.metrics.json").read_text())
    assert set(metrics["models"]) == {"pca", "ae"}


RULE_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]


def test_every_rule_has_a_docstring_for_the_rule_list():
    missing = []
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.match(r"\s*(rule|checkpoint) \w+:\s*$", line) and not lines[number + 1].strip().startswith('"""'):
                missing.append(f"{path.name}:{number + 1}: {line.strip()}")
    assert missing == []


def test_snakemake_lists_every_rule_of_a_training_run_with_its_description(tmp_path):
    snakemake = Path(sys.executable).parent / "snakemake"
    listed = subprocess.run([str(snakemake), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                             "--configfile", str(ROOT / "config" / "config.yaml"), "--list-rules"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr[-2000:]
    rules = [line for line in listed.stdout.splitlines() if line.strip()]
    assert {"all", "ingest", "train", "report", "manifest"} <= {line.split()[0] for line in rules}
    assert [line for line in rules if not re.fullmatch(r"\w+ \(.+\)", line)] == []


def test_every_rule_runs_its_subcommand_with_its_log_file():
    """So that a failed job's error line reaches the terminal, and its progress the log."""
    for path in RULE_FILES:
        for shell in re.findall(r"shell:\n\s+(\"spectral-anomaly[^\n]*)", path.read_text()):
            assert shell.startswith('"spectral-anomaly --log {log:q} '), f"{path.name}: {shell}"
        assert "2>&1" not in path.read_text(), path.name
