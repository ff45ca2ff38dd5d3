"""Result versions side by side: list them, compare two, and describe one on the report's front page.

A result version is a folder ``results/<run_name>-<hash>/`` (see :mod:`.provenance`). This module
reads only what the workflow stored there: ``manifest.json`` (or, while a run is still going or
after it failed, ``config.yaml``), ``reports/<dataset>.metrics.json`` and the score tables. It
backs three things:

- ``spectral-anomaly runs``: every version, newest first, with its headline ROC AUC per dataset
  and model (:func:`list_versions`, :func:`format_runs_table`);
- ``spectral-anomaly compare A B``: what changed between two versions, i.e. the config (flattened key
  paths), provenance, metrics, and the spectra whose flags at the calibrated false-positive rates
  changed (:func:`compare_versions`, :func:`render_comparison`);
- the front page of ``snakemake --report`` (:func:`report_front_page`), written beside the manifest.

Readers of the manifest and the metrics refuse a newer format version, as every reader does.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import read_config_file
from ..exceptions import (
    ConfigError,
    InputFileError,
    ObjectNotFoundError,
    SpectralAnomalyError,
    closest_first,
)
from ..text import html_text, markdown_text, rst_text, template_text, visible
from .formats import check_format_version, read_versioned_json
from .layout import VersionLayout

PathLike = str | os.PathLike[str]

#: a result folder's name: the run name, a dash and the short hash of :func:`.provenance.result_version_name`
VERSION_NAME = re.compile(r"^(?P<run_name>[A-Za-z0-9][A-Za-z0-9_.-]*)-(?P<hash>[0-9a-f]{10})$")
#: prefix of the boolean flag columns of a score table, one per calibrated false-positive rate
FLAG_PREFIX = "flag_fpr_"
#: columns that locate a spectrum in its input files, used to match spectra between versions
ORIGIN_COLUMNS = ("source_file", "source_object", "entry")
#: spectrum ids listed per model and rate in a comparison before the list is cut short
MAX_LISTED_IDS = 50
ABSENT = "(absent)"


def read_manifest(path: PathLike) -> dict[str, Any]:
    """Read a version's ``manifest.json``, refusing a missing, corrupt or newer one."""
    return read_versioned_json(path, kind="manifest", step="manifest")


def read_metrics(path: PathLike) -> dict[str, Any]:
    """Read a report's ``<dataset>.metrics.json``, refusing a missing, corrupt or newer one."""
    return read_versioned_json(path, kind="metrics", step="report")


@dataclass
class ResultVersion:
    """What ``runs`` and ``compare`` know about one result folder."""

    path: Path
    run_name: str
    hash: str
    config: dict[str, Any]
    started: str | None
    finished: str | None
    manifest: dict[str, Any] | None = None
    #: dataset -> model -> {"roc_auc": ..., "pr_auc": ...} from the reports (datasets without a report left out)
    metrics: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    #: why part of the version could not be read (shown by ``runs`` instead of failing)
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        """Whether the workflow finished the version (its manifest is written last)."""
        return self.manifest is not None

    @property
    def datasets(self) -> list[str]:
        return list(self.config.get("datasets") or {})

    @property
    def models(self) -> list[str]:
        """Fitted detector instances (deep ones once per training seed)."""
        from ..config import model_instances

        try:
            return model_instances(self.config)
        except (KeyError, TypeError, ValueError):
            return list(self.config.get("models") or {})

    @property
    def files(self) -> VersionLayout:
        return VersionLayout(self.path)


def is_result_version(path: Path) -> bool:
    """Whether ``path`` is a result folder the workflow started (it writes ``config.yaml`` first)."""
    return (path.is_dir() and VERSION_NAME.match(path.name) is not None
            and (VersionLayout(path).config.is_file() or VersionLayout(path).manifest.is_file()))


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


def headline_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """model -> ROC AUC and PR AUC of its primary score on the test split, from a metrics payload."""
    return {model: {"roc_auc": entry.get("roc_auc"), "pr_auc": entry.get("pr_auc")}
            for model, entry in (metrics.get("models") or {}).items()}


def load_version(path: PathLike, *, strict: bool = True) -> ResultVersion:
    """Read a result folder's manifest (or config while unfinished) and its reports' metrics.

    With ``strict=False`` an unreadable manifest or metrics file is recorded in ``problem`` instead
    of raised, so one bad folder does not hide the others from ``runs``.
    """
    folder = Path(path)
    match = VERSION_NAME.match(folder.name)
    if match is None or not folder.is_dir():
        raise InputFileError(f"{folder}: not a result version folder (expected results/<run_name>-<10 hex digits>/)")
    problems = []
    manifest = None
    files = VersionLayout(folder)
    if files.manifest.exists():
        try:
            manifest = read_manifest(files.manifest)
        except SpectralAnomalyError as error:
            if strict:
                raise
            problems.append(str(error))
    if manifest is not None:
        config, started, finished = manifest.get("config") or {}, manifest.get("started"), manifest.get("finished")
    else:
        config_file = files.config
        try:
            config = read_config_file(config_file)
        except SpectralAnomalyError as error:
            if strict:
                raise
            problems.append(str(error))
            config = {}
        started, finished = (_mtime_iso(config_file) if config_file.exists() else None), None
    version = ResultVersion(path=folder, run_name=match["run_name"], hash=match["hash"], config=config,
                            started=started, finished=finished, manifest=manifest)
    for dataset in version.datasets:
        metrics_file = files.metrics(dataset)
        if not metrics_file.exists():
            continue
        try:
            version.metrics[dataset] = headline_metrics(read_metrics(metrics_file))
        except SpectralAnomalyError as error:
            if strict:
                raise
            problems.append(str(error))
    version.problem = "; ".join(problems) or None
    return version


def _version_folders(results_dir: PathLike) -> list[Path]:
    root = Path(results_dir)
    if not root.is_dir():
        raise InputFileError(f"{root}: results folder not found; run the workflow first, or pass --results DIR")
    return sorted(p for p in root.iterdir() if is_result_version(p))


def list_versions(results_dir: PathLike) -> list[ResultVersion]:
    """Every result version under ``results_dir``, newest first (by start time, then name)."""
    versions = [load_version(folder, strict=False) for folder in _version_folders(results_dir)]
    return sorted(versions, key=lambda v: (v.started or "", v.name), reverse=True)


def resolve_version(results_dir: PathLike, reference: str) -> ResultVersion:
    """The version named ``reference``: a folder name, a unique prefix of one, a unique hash prefix, or a path.

    Raises :class:`ObjectNotFoundError` listing the available versions when none or several match.
    """
    candidate = Path(reference)
    if candidate.is_dir() and is_result_version(candidate):
        return load_version(candidate)
    folders = _version_folders(results_dir)
    names = [f.name for f in folders]
    exact = [f for f in folders if f.name == reference]
    matches = exact or [f for f in folders if f.name.startswith(reference)] or [
        f for f in folders if VERSION_NAME.match(f.name)["hash"].startswith(reference)]
    if len(matches) == 1:
        return load_version(matches[0])
    if matches:
        raise ObjectNotFoundError(
            f"result version {reference!r} is ambiguous in {results_dir}: it matches "
            f"{', '.join(f.name for f in matches)}; give more of the name")
    raise ObjectNotFoundError(
        f"no result version {reference!r} in {results_dir}; available: {closest_first(reference, names)}"
        if names else f"no result version {reference!r}: {results_dir} holds no result versions yet; run the workflow")


# --- runs ----------------------------------------------------------------------------------------


def _short_time(value: str | None) -> str:
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: object, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def _status(version: ResultVersion) -> str:
    if version.problem:
        return f"unreadable: {version.problem}"
    return "complete" if version.complete else "unfinished (running or failed)"


def version_summary(version: ResultVersion) -> dict[str, Any]:
    """The JSON row of ``runs --json``."""
    return {
        "name": version.name, "run_name": version.run_name, "hash": version.hash, "path": str(version.path),
        "started": version.started, "finished": version.finished, "complete": version.complete,
        "datasets": version.datasets, "models": version.models,
        "roc_auc": {d: {m: v["roc_auc"] for m, v in ms.items()} for d, ms in version.metrics.items()},
        "pr_auc": {d: {m: v["pr_auc"] for m, v in ms.items()} for d, ms in version.metrics.items()},
        "problem": version.problem,
    }


def aligned_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, separated by two spaces; control characters shown as escapes."""
    header, rows = [visible(cell) for cell in header], [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def format_runs_table(versions: list[ResultVersion]) -> str:
    """One row per version and dataset; the ROC AUC of each model's primary score on the test split."""
    if not versions:
        return "no result versions"
    header = ["VERSION", "HASH", "STARTED (UTC)", "FINISHED (UTC)", "DATASET", "ROC AUC per model (test split)", "STATUS"]
    rows = []
    for version in versions:
        first = [version.name, version.hash, _short_time(version.started), _short_time(version.finished)]
        datasets = version.datasets or ["-"]
        for i, dataset in enumerate(datasets):
            metrics = version.metrics.get(dataset, {})
            models = version.models if version.datasets else []
            aucs = "  ".join(f"{m} {_number(metrics.get(m, {}).get('roc_auc'), 3)}" for m in models) or "-"
            rows.append([*(first if i == 0 else [""] * 4), dataset, aucs, _status(version) if i == 0 else ""])
    return aligned_table(header, rows)


def run_runs(results_dir: PathLike, *, as_json: bool = False) -> str:
    """The text ``spectral-anomaly runs`` prints."""
    versions = list_versions(results_dir)
    if as_json:
        return json.dumps([version_summary(v) for v in versions], indent=1)
    return format_runs_table(versions)


# --- compare -------------------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}``; lists and scalars are leaves."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, sub in value.items():
            flat.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def diff_mappings(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Flattened key paths whose value differs: ``{"key", "old", "new"}``, :data:`ABSENT` where missing."""
    a, b = flatten(old), flatten(new)
    return [{"key": key, "old": a.get(key, ABSENT), "new": b.get(key, ABSENT)}
            for key in sorted(set(a) | set(b)) if a.get(key, ABSENT) != b.get(key, ABSENT)]


def read_flag_table(path: Path) -> Any:
    """The id, origin and flag columns of a score table (format version checked, other columns not read)."""
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputFileError(f"{path}: score table not found; run the workflow's score step")
    try:
        schema = pq.read_schema(path)
        metadata = schema.metadata or {}
        check_format_version(metadata.get(b"spectral_anomaly.format_version", b"").decode() or None, kind="scores", path=path)
        columns = [c for c in schema.names if c == "spectrum_id" or c in ORIGIN_COLUMNS or c.startswith(FLAG_PREFIX)]
        return pq.read_table(path, columns=columns).to_pandas()
    except SpectralAnomalyError:
        raise
    except Exception as error:
        raise InputFileError(f"{path}: not a readable score table ({error}); delete it and rerun the workflow") from None


def source_names(paths: Any, dataset_path: str) -> Any:
    """Each input file's name relative to its dataset's configured ``path``: stable between versions that read
    the same files from another place (or a generated demo file from another version's folder).

    For a glob the name is relative to the folder before its first wildcard; for one file or the demo
    data it is the file's name.
    """
    import pandas as pd

    values = pd.Series(paths, dtype=object).astype(str)
    if not dataset_path.startswith("demo://") and glob.has_magic(dataset_path):
        literal = re.split(r"[*?\[]", dataset_path, maxsplit=1)[0]
        base = os.path.normpath(os.path.dirname(literal) or ".")
        inside = values.map(lambda v: os.path.normpath(v).startswith(base + os.sep))
        relative = values.map(lambda v: os.path.relpath(os.path.normpath(v), base))
        return relative.where(inside, values.map(os.path.basename)).to_numpy()
    return values.map(os.path.basename).to_numpy()


def _match_keys(table_a, table_b, version_a: ResultVersion, version_b: ResultVersion,
                dataset: str) -> tuple[list, list, str]:
    """Keys that identify each row's spectrum in both tables, and how they were chosen.

    Spectra are matched by where they come from: the input file's name relative to the dataset's path
    (:func:`source_names`), the object and the entry, when both tables have those columns and they are
    unique, so that a version with an added or reordered input file, or the demo data generated in
    another version's folder, still matches; otherwise by ``spectrum_id``, which identifies the same
    spectrum only when the inputs are the same.
    """
    origin = [c for c in ORIGIN_COLUMNS if c in table_a.columns and c in table_b.columns]

    def keys(table, version):
        dataset_path = str((version.config.get("datasets") or {}).get(dataset, {}).get("path", ""))
        parts = [source_names(table[column], dataset_path) if column == "source_file" else table[column].astype(str).to_numpy()
                 for column in origin]
        return list(zip(*parts))

    if origin:
        a, b = keys(table_a, version_a), keys(table_b, version_b)
        if len(set(a)) == len(a) and len(set(b)) == len(b):
            described = ["source file (relative to the dataset's path)" if c == "source_file" else c for c in origin]
            return a, b, f"matched by {', '.join(described)}"
    return (list(table_a["spectrum_id"]), list(table_b["spectrum_id"]),
            "matched by spectrum_id (no unique input file and entry columns)")


def flag_changes(version_a: ResultVersion, version_b: ResultVersion, dataset: str, model: str) -> dict[str, Any]:
    """Per flag column present in both score tables: spectra flagged in A only and in B only."""
    table_a = read_flag_table(version_a.files.scores(dataset, model))
    table_b = read_flag_table(version_b.files.scores(dataset, model))
    keys_a, keys_b, matching = _match_keys(table_a, table_b, version_a, version_b, dataset)
    id_a = dict(zip(keys_a, table_a["spectrum_id"].tolist()))
    id_b = dict(zip(keys_b, table_b["spectrum_id"].tolist()))
    flags_a = [c for c in table_a.columns if c.startswith(FLAG_PREFIX)]
    flags_b = [c for c in table_b.columns if c.startswith(FLAG_PREFIX)]
    common = set(id_a) & set(id_b)
    rates = {}
    for column in [c for c in flags_a if c in flags_b]:
        flagged_a = {k for k, f in zip(keys_a, table_a[column].to_numpy()) if f and k in common}
        flagged_b = {k for k, f in zip(keys_b, table_b[column].to_numpy()) if f and k in common}
        rates[column] = {
            "n_flagged_a": int(table_a[column].sum()), "n_flagged_b": int(table_b[column].sum()),
            "only_a": sorted(int(id_a[k]) for k in flagged_a - flagged_b),
            "only_b": sorted(int(id_b[k]) for k in flagged_b - flagged_a),
        }
    return {
        "matching": matching, "n_a": len(table_a), "n_b": len(table_b), "n_matched": len(common),
        "rates": rates, "only_in_a": sorted(set(flags_a) - set(flags_b)), "only_in_b": sorted(set(flags_b) - set(flags_a)),
    }


def compare_versions(version_a: ResultVersion, version_b: ResultVersion) -> dict[str, Any]:
    """Everything that changed from version A to version B, as plain data (see :func:`render_comparison`)."""
    manifest_a, manifest_b = version_a.manifest or {}, version_b.manifest or {}
    provenance = []
    for label, key in (("package", "packages"), ("input", "input_checksums"), ("format", "format_versions")):
        for change in diff_mappings(manifest_a.get(key) or {}, manifest_b.get(key) or {}):
            provenance.append({**change, "key": f"{label} {change['key']}"})
    for key in ("git_commit", "devices"):
        provenance.extend(diff_mappings({key: manifest_a.get(key)}, {key: manifest_b.get(key)}))
    metrics = []
    datasets = [*version_a.datasets, *(d for d in version_b.datasets if d not in version_a.datasets)]
    for dataset in datasets:
        old, new = version_a.metrics.get(dataset, {}), version_b.metrics.get(dataset, {})
        for model in [*old, *(m for m in new if m not in old)]:
            row = {"dataset": dataset, "model": model}
            for name in ("roc_auc", "pr_auc"):
                a, b = old.get(model, {}).get(name), new.get(model, {}).get(name)
                row[name] = {"old": a, "new": b, "delta": None if a is None or b is None else b - a}
            metrics.append(row)
    flags = []
    for dataset in [d for d in version_a.datasets if d in version_b.datasets]:
        for model in [m for m in version_a.models if m in version_b.models]:
            paths = [v.files.scores(dataset, model) for v in (version_a, version_b)]
            if all(p.exists() for p in paths):
                flags.append({"dataset": dataset, "model": model, **flag_changes(version_a, version_b, dataset, model)})
    return {
        "a": version_summary(version_a), "b": version_summary(version_b),
        "config": diff_mappings(version_a.config, version_b.config),
        "provenance": provenance, "metrics": metrics, "flags": flags,
        "datasets_only_in_a": [d for d in version_a.datasets if d not in version_b.datasets],
        "datasets_only_in_b": [d for d in version_b.datasets if d not in version_a.datasets],
    }


def _value(value: Any) -> str:
    if value == ABSENT or isinstance(value, str):
        return str(value)
    return json.dumps(value, default=str)


def _delta(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _ids(ids: list[int]) -> str:
    if not ids:
        return "-"
    shown = ", ".join(str(i) for i in ids[:MAX_LISTED_IDS])
    return shown + (f", ... ({len(ids) - MAX_LISTED_IDS} more)" if len(ids) > MAX_LISTED_IDS else "")


def comparison_sections(comparison: dict[str, Any]) -> list[tuple[str, list[str], list[str], list[list[str]]]]:
    """The comparison as (heading, paragraphs, table header, table rows), rendered by :func:`render_comparison`."""
    a, b = comparison["a"], comparison["b"]
    sections = [(
        f"Comparison of {a['name']} (A) and {b['name']} (B)",
        [f"A: {a['path']}, started {_short_time(a['started'])}, finished {_short_time(a['finished'])} (UTC).",
         f"B: {b['path']}, started {_short_time(b['started'])}, finished {_short_time(b['finished'])} (UTC)."]
        + ([f"Datasets only in A: {', '.join(comparison['datasets_only_in_a'])}."] if comparison["datasets_only_in_a"] else [])
        + ([f"Datasets only in B: {', '.join(comparison['datasets_only_in_b'])}."] if comparison["datasets_only_in_b"] else []),
        [], [],
    )]
    config = comparison["config"]
    sections.append(("Config changes", [] if config else ["The configs are identical."],
                     ["key", "A", "B"] if config else [],
                     [[c["key"], _value(c["old"]), _value(c["new"])] for c in config]))
    provenance = comparison["provenance"]
    sections.append(("Provenance changes", [] if provenance else ["Same packages, inputs, format versions, commit and devices."],
                     ["what", "A", "B"] if provenance else [],
                     [[c["key"], _value(c["old"]), _value(c["new"])] for c in provenance]))
    metrics = comparison["metrics"]
    sections.append((
        "Metric changes (primary score, test split)", [] if metrics else ["Neither version has report metrics."],
        ["dataset", "model", "ROC AUC A", "ROC AUC B", "Δ ROC AUC", "PR AUC A", "PR AUC B", "Δ PR AUC"] if metrics else [],
        [[m["dataset"], m["model"], _number(m["roc_auc"]["old"]), _number(m["roc_auc"]["new"]), _delta(m["roc_auc"]["delta"]),
          _number(m["pr_auc"]["old"]), _number(m["pr_auc"]["new"]), _delta(m["pr_auc"]["delta"])] for m in metrics],
    ))
    rows = []
    notes = []
    for entry in comparison["flags"]:
        notes.append(f"{entry['dataset']} / {entry['model']}: {entry['n_matched']} of {entry['n_a']} (A) and "
                     f"{entry['n_b']} (B) spectra {entry['matching']}."
                     + (f" Flags only in A: {', '.join(entry['only_in_a'])}." if entry["only_in_a"] else "")
                     + (f" Flags only in B: {', '.join(entry['only_in_b'])}." if entry["only_in_b"] else ""))
        for column, change in entry["rates"].items():
            rows.append([entry["dataset"], entry["model"], column, str(change["n_flagged_a"]), str(change["n_flagged_b"]),
                         str(len(change["only_a"])), _ids(change["only_a"]), str(len(change["only_b"])), _ids(change["only_b"])])
    if not comparison["flags"]:
        notes.append("No dataset and model has score tables in both versions.")
    elif not rows:
        notes.append("The score tables share no flag columns (scoring.false_positive_rates).")
    sections.append((
        "Spectra whose flags changed", [
            ("Per calibrated false-positive rate: spectra flagged in one version and not in the other "
             "(spectrum ids of that version; only spectra present in both are compared)."), *notes],
        ["dataset", "model", "flag", "flagged A", "flagged B", "# only A", "only in A", "# only B", "only in B"] if rows else [],
        rows,
    ))
    return sections


def render_comparison(comparison: dict[str, Any], *, fmt: str = "md") -> str:
    """The comparison as Markdown (``fmt="md"``) or as a self-contained HTML page (``fmt="html"``)."""
    sections = comparison_sections(comparison)
    if fmt == "md":
        lines = []
        for level, (heading, paragraphs, header, rows) in enumerate(sections):
            lines += [f"{'#' if level == 0 else '##'} {markdown_text(heading)}", ""]
            for paragraph in paragraphs:
                lines += [markdown_text(paragraph), ""]
            if header:
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(markdown_text(c) for c in row) + " |" for row in rows]
                lines.append("")
        return "\n".join(lines)
    if fmt == "html":
        parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
                 f"<title>{html_text(sections[0][0])}</title>",
                 ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
                  "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}</style></head><body>")]
        for level, (heading, paragraphs, header, rows) in enumerate(sections):
            tag = "h1" if level == 0 else "h2"
            parts.append(f"<{tag}>{html_text(heading)}</{tag}>")
            parts += [f"<p>{html_text(p)}</p>" for p in paragraphs]
            if header:
                parts.append("<table><tr>" + "".join(f"<th>{html_text(h)}</th>" for h in header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in row) + "</tr>" for row in rows]
                parts.append("</table>")
        parts.append("</body></html>")
        return "\n".join(parts)
    raise ValueError(f"unknown comparison format {fmt!r}; valid: 'md', 'html'")


def run_compare(a: str, b: str, *, results_dir: PathLike = "results", output: PathLike | None = None) -> str:
    """``spectral-anomaly compare``: resolve A and B, compare them, write ``output`` (.md or .html) if given."""
    fmt = "md"
    if output is not None:
        suffix = Path(output).suffix.lower()
        formats = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}
        if suffix not in formats:
            raise ConfigError(f"--output {output}: unknown file type {suffix or '(none)'!r}; valid: .md, .html")
        fmt = formats[suffix]
    text = render_comparison(compare_versions(resolve_version(results_dir, a), resolve_version(results_dir, b)), fmt=fmt)
    if output is not None:
        from .atomic import write_text

        write_text(output, text)
    return text


# --- front page of snakemake --report ------------------------------------------------------------


def _rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A reStructuredText "simple table" of escaped cells."""
    header, rows = [rst_text(c) or "\\-" for c in header], [[rst_text(c) or "\\-" for c in row] for row in rows]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(row: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
    return [rule, line(header), rule, *(line(r) for r in rows), rule, ""]


def report_front_page(manifest: dict[str, Any], *, result_dir: PathLike | None = None) -> str:
    """The front page of ``snakemake --report``: the run's config, package versions and devices, from its manifest.

    reStructuredText in which every value from the config, the inputs or the environment is plain
    text: escaped for reStructuredText (:func:`.text.rst_text`, or inside a literal block) and for the
    Jinja template Snakemake renders the page as (:func:`.text.template_text`).
    """
    import yaml

    config = manifest.get("config") or {}
    datasets = list(config.get("datasets") or {})
    version = ResultVersion(path=Path(manifest.get("result_version", "unknown-0000000000")),
                            run_name=str(manifest.get("run_name")), hash="", config=config,
                            started=manifest.get("started"), finished=manifest.get("finished"), manifest=manifest)
    title = f"Anomalous spectra: result version {rst_text(manifest.get('result_version'))}"
    lines = [title, "=" * len(title), "",
             ("Spectra are ingested into a canonical store, split (seeded), normalized on the training split, "
              "modelled by each configured autoencoder and VAE and by the PCA baseline, scored (higher anomaly_score = "
              "more anomalous) and compared per dataset. The results are grouped by dataset; within a dataset, by "
              "model comparison, training, most anomalous spectra and latent space. Every figure has a caption, and "
              "each dataset's full HTML report is listed beside its figures."), "",
             "Run", "---", ""]
    fields = [("Result version", manifest.get("result_version")), ("Run name", manifest.get("run_name")),
              ("Started", f"{_short_time(manifest.get('started'))} UTC"),
              ("Finished", f"{_short_time(manifest.get('finished'))} UTC"),
              ("Git commit", manifest.get("git_commit") or "unknown"), ("Datasets", ", ".join(datasets) or "-"),
              ("Models", ", ".join(version.models)),
              ("Device", f"{config.get('training', {}).get('device', '?')} requested")]
    lines += [f":{name}: {rst_text(value)}" for name, value in fields] + [""]
    devices = manifest.get("devices") or {}
    lines += ["Devices", "-------", "", "The device each model trained on.", ""]
    lines += _rst_table(["dataset / model", "device"], [[k, v] for k, v in devices.items()] or [["-", "-"]])
    if result_dir is not None:
        rows = []
        for dataset in datasets:
            path = VersionLayout(result_dir).metrics(dataset)
            if path.exists():
                for model, values in headline_metrics(read_metrics(path)).items():
                    rows.append([dataset, model, _number(values["roc_auc"]), _number(values["pr_auc"])])
        if rows:
            lines += ["Headline metrics", "----------------", "",
                      "Area under the ROC and precision-recall curves of each model's primary score on the test split.", ""]
            lines += _rst_table(["dataset", "model", "ROC AUC", "PR AUC"], rows)
    packages = manifest.get("packages") or {}
    lines += ["Package versions", "----------------", ""]
    lines += _rst_table(["package", "version"], [[k, str(v)] for k, v in packages.items()] or [["-", "-"]])
    formats = manifest.get("format_versions") or {}
    if formats:
        lines += ["File format versions", "--------------------", ""]
        lines += _rst_table(["file kind", "format version"], [[k, str(v)] for k, v in formats.items()])
    lines += ["Configuration", "-------------", "",
              "The effective config (defaults filled in); the report section is not part of the version's hash.", "",
              "::", ""]
    lines += ["    " + line for line in yaml.safe_dump(config, sort_keys=False, width=10**9).splitlines()]
    lines += [""]
    return template_text("\n".join(lines))
