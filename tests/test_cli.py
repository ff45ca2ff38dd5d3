"""The command line program: clear one-line errors with exit status 2, nothing half-written."""

from __future__ import annotations

import yaml

from spectral_anomaly.cli import main


def _config(tmp_path, datasets):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"run_name": "t", "datasets": datasets, "models": {"ae": {"kind": "autoencoder"}}}))
    return str(path)


def test_missing_input_file_is_one_clear_error(tmp_path, capsys):
    config = _config(tmp_path, {"d": {"format": "hdf5_array", "path": "x.h5", "dataset": "spectra"}})
    output = tmp_path / "out" / "d.h5"
    status = main(["ingest", "--config", config, "--dataset", "d", "--input", str(tmp_path / "missing.h5"),
                   "--output", str(output)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("spectral-anomaly ingest: error:") and "missing.h5" in err[-1] and "not found" in err[-1]
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_wrong_key_lists_what_is_available_and_writes_nothing(tmp_path, capsys):
    import h5py
    import numpy as np

    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as handle:
        handle["spectra"] = np.ones((5, 4))
        handle["spectrum_edges"] = np.arange(5.0)
    config = _config(tmp_path, {"d": {"format": "hdf5_array", "path": str(raw), "dataset": "spectrs"}})
    output = tmp_path / "out" / "d.h5"
    status = main(["ingest", "--config", config, "--dataset", "d", "--input", str(raw), "--output", str(output)])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert "'spectrs'" in message and message.index("'spectra'") < message.index("'spectrum_edges'")
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_unknown_dataset_name_lists_the_configured_ones(tmp_path, capsys):
    config = _config(tmp_path, {"lumi": {"format": "hdf5_array", "path": "x.h5", "dataset": "s"}})
    status = main(["ingest", "--config", config, "--dataset", "lumy", "--input", "x.h5", "--output", str(tmp_path / "o.h5")])
    assert status == 2
    assert "'lumi'" in capsys.readouterr().err


def test_an_invalid_config_is_refused_with_the_key(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"run_name": "t", "models": {"ae": {"kind": "autoencoder"}},
                                    "datasets": {"d": {"format": "hdf5_array", "path": "x.h5", "dataset": "s",
                                                       "nonfinite": "ignore"}}}))
    status = main(["split", "--config", str(path), "--dataset", "d", "--data", "x.h5", "--output", str(tmp_path / "s.json")])
    message = capsys.readouterr().err
    assert status == 2 and "nonfinite" in message and "ignore" in message


def test_with_a_log_file_the_error_line_goes_into_it_and_onto_stderr_with_its_path(tmp_path, capsys):
    config = _config(tmp_path, {"d": {"format": "hdf5_array", "path": "x.h5", "dataset": "spectra"}})
    log = tmp_path / "logs" / "ingest.log"
    status = main(["--log", str(log), "ingest", "--config", config, "--dataset", "d", "--input",
                   str(tmp_path / "missing.h5"), "--output", str(tmp_path / "d.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-2].startswith("spectral-anomaly ingest: error:") and "missing.h5" in err[-2]
    assert err[-1] == f"log: {log}"
    assert log.read_text().splitlines()[-1] == err[-2], "the same line in the log as on the terminal"


def test_with_a_log_file_progress_goes_into_it_and_not_onto_stderr(tmp_path, capsys):
    log = tmp_path / "write-config.log"
    log.write_text("an older run's log\n")
    status = main(["--log", str(log), "write-config", "--json", '{"run_name": "t"}', "--output",
                   str(tmp_path / "config.yaml")])
    assert status == 0
    assert capsys.readouterr().err == ""
    assert "older run" not in log.read_text()


def test_an_unexpected_exception_leaves_its_traceback_in_the_log_and_one_line_on_stderr(tmp_path, capsys):
    log = tmp_path / "link.log"
    status = main(["--log", str(log), "link", "--links", "not json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err == [err[0], f"log: {log}"] and err[0].startswith("spectral-anomaly link: JSONDecodeError: ")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and text.splitlines()[-1] == err[0]


def _parsers():
    """(command, parser) of the program and of every subcommand."""
    import argparse

    from spectral_anomaly.cli import build_parser

    parser = build_parser()
    (subcommands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return [("spectral-anomaly", parser), *subcommands.choices.items()]


def test_every_option_of_every_subcommand_has_help_in_plain_words():
    import argparse

    parsers = _parsers()
    assert {"apply", "monitor-report", "train", "score", "ingest"} <= {name for name, _ in parsers}
    for name, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}: no help"
        text = parser.format_help()
        for markup in ("``", ":func:", ":class:", ":mod:", ":data:", ":meth:", "`"):
            assert markup not in text, f"{name} --help shows {markup!r}"


def _stages_to_normalization(tiny_demo_config, out):
    """A tiny demo dataset ingested, split and normalized in ``out``; its config file and paths."""
    from spectral_anomaly import stages

    config = tiny_demo_config()
    stages.run_demo(config, hdf5_path=out / "raw.h5", root_path=out / "raw.root")
    paths = {"data": out / "d.h5", "split": out / "split.json", "normalization": out / "norm.json"}
    stages.run_ingest(config, "d", input_paths=[out / "raw.h5"], output=paths["data"])
    stages.run_split(config, "d", data_path=paths["data"], output=paths["split"])
    stages.run_normalize(config, "d", data_path=paths["data"], split_path=paths["split"], output=paths["normalization"])
    (out / "run.yaml").write_text(yaml.safe_dump(config))
    return out / "run.yaml", paths


def test_train_uses_the_threads_it_is_given_and_logs_no_library_notes(tmp_path, tiny_demo_config):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    config_path, paths = _stages_to_normalization(tiny_demo_config, tmp_path)
    out = {name: tmp_path / f"ae.{name}" for name in ("npz", "csv", "json", "parquet", "examples.npz")}
    # no thread variables: numexpr (imported by pandas) would note its thread count at INFO
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS")}
    for threads in (1, 2):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "spectral-anomaly"), "train", "--config", str(config_path), "--dataset", "d",
             "--model", "ae", "--threads", str(threads), *(f"--{k}={v}" for k, v in paths.items()),
             f"--model-file={out['npz']}", f"--history={out['csv']}", f"--summary={out['json']}",
             f"--scores={out['parquet']}", f"--examples={out['examples.npz']}"],
            capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(out["json"].read_text())
        assert summary["threads"] == threads
        assert summary["device"] == ("cpu (1 thread)" if threads == 1 else "cpu (2 threads)")
        assert "NumExpr" not in done.stderr and "numexpr" not in done.stderr.lower()
        assert "1 threads" not in done.stderr and "1 epochs" not in done.stderr


def test_threads_below_one_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "--config", "x.yaml", "--dataset", "d", "--model", "ae", "--threads", "0", "--data", "a",
              "--split", "b", "--normalization", "c", "--model-file", "d", "--history", "e", "--summary", "f"])
    assert "expected a whole number of at least 1, got '0'" in capsys.readouterr().err
