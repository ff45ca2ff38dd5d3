"""File faults: writes are atomic, damaged results are refused, a full disk and a missing GPU are clear errors."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spectral_anomaly import stages
from spectral_anomaly.exceptions import (
    ConfigError,
    InputFileError,
    SpectralAnomalyError,
)
from spectral_anomaly.models import load_detector
from spectral_anomaly.score import read_scores
from spectral_anomaly.store import atomic
from spectral_anomaly.store.canonical import read_canonical
from spectral_anomaly.store.integrity import checksum_path
from spectral_anomaly.store.provenance import cached_sha256

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spectral_anomaly"


@pytest.fixture(scope="session")
def fresh_config(tiny_demo_config):
    """The tiny demo run, with a copied store unless the changes say otherwise."""
    return lambda **changes: tiny_demo_config(**{"ingest": {"store": "copy"}, **changes})


@pytest.fixture(scope="module")
def results(tmp_path_factory, fresh_config) -> Path:
    """Canonical store, split, normalization, model and score table of a tiny run of the stages."""
    out = tmp_path_factory.mktemp("stages")
    config = fresh_config()
    stages.run_demo(config, hdf5_path=out / "raw.h5", root_path=out / "raw.root")
    stages.run_ingest(config, "d", input_paths=[out / "raw.h5"], output=out / "data.h5")
    stages.run_split(config, "d", data_path=out / "data.h5", output=out / "split.json")
    stages.run_normalize(config, "d", data_path=out / "data.h5", split_path=out / "split.json", output=out / "norm.json")
    stages.run_train(config, "d", "ae", data_path=out / "data.h5", split_path=out / "split.json",
                     normalization_path=out / "norm.json", model_path=out / "ae.npz", history_path=out / "ae.history.csv",
                     summary_path=out / "ae.summary.json")
    stages.run_score(config, "d", "ae", data_path=out / "data.h5", split_path=out / "split.json", model_path=out / "ae.npz",
                     scores_path=out / "ae.parquet", examples_path=out / "ae.examples.npz")
    return out


# --- every write is atomic ------------------------------------------------------------------------

#: writers that are handed a temporary path by their caller, or do their own temporary file and rename
OWN_TEMPORARY = {
    ("atomic.py", "write_json"), ("atomic.py", "write_text"),  # write into atomic_path's temporary file
    ("atomic.py", "write_checksum"),  # its own <pid> temporary file, then os.replace
    ("provenance.py", "cached_sha256"),  # its own <pid> temporary file, then os.replace
    ("demo.py", "write_demo_hdf5"), ("demo.py", "write_demo_root"),  # callers pass atomic_path's temporary file
    ("figures.py", "render_png"),  # into an in-memory buffer
    # a job's log is written as the job runs, not a result: what a killed job leaves in it is what to read
    ("cli.py", "configure_logging"), ("cli.py", "report_error"),
}
#: (a .save of self, a detector or a resume checkpoint writes through atomic_path itself)
WRITE_METHODS = {"to_parquet", "write_table", "save", "write_text", "write_bytes", "savefig", "dump", "savez",
                 "savez_compressed", "to_csv", "to_hdf", "recreate", "write"}


def _is_write(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name in ("open", "File"):
        modes = [a for a in call.args[1:2]] + [k.value for k in call.keywords if k.arg == "mode"]
        return any(isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+")
                   for m in modes)
    if name == "write" and isinstance(func, ast.Attribute):
        return False  # stream.write on a stream opened above: the open is what is checked
    return isinstance(func, ast.Attribute) and name in WRITE_METHODS and not (name == "save" and isinstance(func, ast.Attribute)
                                          and isinstance(func.value, ast.Name) and func.value.id in ("self", "detector", "resume"))


def unprotected_writes() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_write(n)):
            node, function, protected = call, None, False
            while node in parents:
                node = parents[node]
                if isinstance(node, ast.With) and any("atomic_path" in ast.unparse(i.context_expr) for i in node.items):
                    protected = True
                if isinstance(node, ast.FunctionDef) and function is None:
                    function = node.name
            if not protected and (path.name, function) not in OWN_TEMPORARY:
                found.append(f"{path.relative_to(PACKAGE)}:{call.lineno} {function}: {ast.unparse(call)[:80]}")
    return found


def test_every_write_in_the_package_goes_through_atomic_path():
    assert unprotected_writes() == []


def test_a_failed_rename_leaves_neither_the_output_nor_a_temporary_file(results, tmp_path, monkeypatch, fresh_config):
    def no_rename(source, target):
        raise OSError(5, "Input/output error (injected)")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    config = fresh_config()
    with pytest.raises(OSError, match="injected"):
        stages.run_score(config, "d", "ae", data_path=results / "data.h5", split_path=results / "split.json",
                         model_path=results / "ae.npz", scores_path=tmp_path / "ae.parquet",
                         examples_path=tmp_path / "ae.examples.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ae.parquet.xxh128"] or list(tmp_path.iterdir()) == [], \
        "no output and no temporary file (a checksum without its file is refused as a mismatch only if the file appears)"
    assert not (tmp_path / "ae.parquet").exists()


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    code = ("import os, sys; from spectral_anomaly.store.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half'); os._exit(9)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.json")], check=False)
    assert [p.name for p in tmp_path.glob(".out.json.*.tmp")], "the killed writer leaves its temporary file"
    atomic.write_text(tmp_path / "out.json", "whole\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.json.xxh128", "out.json"]


# --- damaged results are refused ---------------------------------------------------------------

READERS = {"ae.npz": load_detector, "ae.parquet": read_scores, "data.h5": read_canonical}
DAMAGES = [("truncate", f) for f in (0.0, 0.02, 0.5, 0.98)] + [("flip", f) for f in (0.05, 0.3, 0.6, 0.95)]


@pytest.mark.parametrize("damage", DAMAGES, ids=[f"{kind}-{fraction}" for kind, fraction in DAMAGES])
@pytest.mark.parametrize("name", READERS)
def test_a_damaged_result_file_is_refused_naming_it_and_how_to_rebuild_it(results, tmp_path, name, damage):
    path = tmp_path / name
    shutil.copy(results / name, path)
    shutil.copy(checksum_path(results / name), checksum_path(path))
    READERS[name](path)  # the undamaged copy reads
    data, (kind, fraction) = path.read_bytes(), damage
    at = int(len(data) * fraction)
    path.write_bytes(data[:at] if kind == "truncate" else data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:])
    with pytest.raises(SpectralAnomalyError) as error:
        READERS[name](path)
    message = str(error.value)
    assert str(path) in message and any(word in message for word in ("rebuild", "rerun", "delete")), message


# --- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs: too small for the canonical store of 2000 spectra of 64 bins. Mounting it changes
    the machine (a test killed before its end leaves the mount), so its tests are marked ``system``."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False) if shutil.which("mount") else None
    if done is None or done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip() if done else 'no mount command'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.system
def test_a_full_disk_stops_ingestion_with_one_clear_line_and_leaves_nothing(full_disk, tmp_path, fresh_config):
    config = fresh_config(demo={"seed": 1, "n_spectra": 2000, "n_bins": 64, "anomaly_fraction": 0.1})
    stages.run_demo(config, hdf5_path=tmp_path / "raw.h5", root_path=tmp_path / "raw.root")
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    output = full_disk / "results" / "data" / "d.h5"
    cli = Path(sys.executable).parent / "spectral-anomaly"
    done = subprocess.run([str(cli), "ingest", "--config", str(config_path), "--dataset", "d", "--input",
                           str(tmp_path / "raw.h5"), "--output", str(output)], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert last.startswith("spectral-anomaly ingest: error:") and str(output) in last, last
    assert "no space left" in last and "free space" in last and "rerun" in last, last
    assert [p for p in full_disk.rglob("*") if p.is_file()] == [], "no partial output and no temporary file"


# --- devices and diverging training ----------------------------------------------------------------


def test_cuda_requested_without_a_gpu_is_a_clear_error_and_auto_falls_back_to_the_cpu(monkeypatch, caplog):
    import torch

    from spectral_anomaly.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device 'cuda' was requested but torch sees no CUDA GPU.*device: auto"):
        resolve_device("cuda")
    with caplog.at_level(logging.INFO, logger="spectral_anomaly.device"):
        assert resolve_device("auto") == "cpu"
    assert "device: cpu (" in caplog.text


def test_training_on_cuda_without_a_gpu_stops_before_writing_anything(results, tmp_path, monkeypatch, fresh_config):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = fresh_config(training={"epochs": 3, "device": "cuda"})
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        stages.run_train(config, "d", "ae", data_path=results / "data.h5", split_path=results / "split.json",
                         normalization_path=results / "norm.json", model_path=tmp_path / "m" / "ae.npz",
                         history_path=tmp_path / "m" / "ae.history.csv", summary_path=tmp_path / "m" / "ae.summary.json")
    assert not (tmp_path / "m").exists() or list((tmp_path / "m").iterdir()) == []


# --- inputs that change -----------------------------------------------------------------------------


def test_a_linked_input_changed_after_ingestion_stops_the_next_stage_naming_it(tmp_path, fresh_config):
    config = fresh_config(ingest={"store": "auto"})
    stages.run_demo(config, hdf5_path=tmp_path / "raw.h5", root_path=tmp_path / "raw.root")
    stages.run_ingest(config, "d", input_paths=[tmp_path / "raw.h5"], output=tmp_path / "data.h5")
    read_canonical(tmp_path / "data.h5")
    stat = (tmp_path / "raw.h5").stat()
    os.utime(tmp_path / "raw.h5", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # e.g. rewritten in place
    with pytest.raises(InputFileError) as error:
        stages.run_split(config, "d", data_path=tmp_path / "data.h5", output=tmp_path / "split.json")
    message = str(error.value)
    assert str(tmp_path / "raw.h5") in message and "has changed since ingestion" in message and "rerun" in message
    assert not (tmp_path / "split.json").exists()


def _hash_all(args):
    files, cache = args
    return [cached_sha256(file, cache_file=cache) for file in files]


def test_the_checksum_cache_stays_valid_under_concurrent_writers_and_a_lost_entry_is_recomputed(tmp_path):
    files = []
    for i in range(12):
        files.append(tmp_path / f"input{i}.bin")
        files[-1].write_bytes(os.urandom(1000 + i))
    cache = tmp_path / "results" / ".checksum-cache.json"
    with multiprocessing.get_context("fork").Pool(6) as pool:
        answers = pool.map(_hash_all, [(files[i::2] + files[: i % 3], cache) for i in range(12)])
    expected = {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    for i, answer in enumerate(answers):
        assert answer == [expected[str(f)] for f in files[i::2] + files[: i % 3]]
    stored = json.loads(cache.read_text())  # valid JSON, whatever the interleaving
    assert set(stored.values()) <= set(expected.values())
    cache.write_text(json.dumps({}))  # a lost entry: the file is hashed again, with the same answer
    assert cached_sha256(files[0], cache_file=cache) == expected[str(files[0])]
    cache.write_text("{\"trunc")  # a damaged cache: ignored and rewritten
    assert cached_sha256(files[1], cache_file=cache) == expected[str(files[1])]
    assert json.loads(cache.read_text())
    assert not list(cache.parent.glob("*.tmp"))


def test_a_gpu_is_visible_only_with_a_device_file_and_not_hidden_by_the_environment(monkeypatch, tmp_path):
    from spectral_anomaly import device

    gpu = tmp_path / "nvidia0"
    monkeypatch.setattr(device, "GPU_DEVICE_FILES", (str(tmp_path / "nvidia[0-9]*"),))
    for variable in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        monkeypatch.delenv(variable, raising=False)
    assert not device.gpu_visible()
    gpu.touch()
    assert device.gpu_visible()
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not device.gpu_visible()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert device.gpu_visible()
