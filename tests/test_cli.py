"""The CLI as a user meets it: real processes, exit codes, one-line errors, nothing left half-written."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import run_hpsearch, write_spec


def assert_one_line_error(result, code: int, *fragments: str) -> str:
    # One line on stderr that starts with "Error:", no traceback, the expected exit code.
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_help_does_not_import_torch_or_transformers():
    code = (
        "import sys; from hpsearch.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout
    assert "run" in result.stdout


def test_unknown_study_spec(workdir):
    result = run_hpsearch("run", "--study", "nope", cwd=workdir)
    assert_one_line_error(result, 2, "no spec for study 'nope'", "studies/nope.yaml does not exist")
    # Nothing was written: no database file appeared.
    assert not (workdir / "storage").exists()


def test_invalid_spec_exits_2_and_writes_nothing(workdir, tiny_spec):
    tiny_spec["search_space"]["learning_rate"] = {"float": [1e-3, 1e-5]}
    write_spec(workdir, "bad", tiny_spec)
    result = run_hpsearch("run", "--study", "bad", cwd=workdir)
    assert_one_line_error(result, 2, "studies/bad.yaml: search_space.learning_rate: range [0.001, 1e-05] is inverted")
    assert not (workdir / "storage").exists()


def test_missing_data_column_exits_2(workdir, tiny_spec):
    tiny_spec["dataset"]["text"] = "tweet"
    write_spec(workdir, "bad", tiny_spec)
    result = run_hpsearch("run", "--study", "bad", cwd=workdir)
    assert_one_line_error(result, 2, "dataset.text: no column 'tweet'", "its columns are sentiment, confidence, text")


@pytest.mark.parametrize(
    "url, fragments",
    [
        ("nonsense", ["malformed storage URL 'nonsense'"]),
        ("postgresql://bob:hunter2@127.0.0.1:1/x", ["cannot open storage postgresql+psycopg://bob:***@127.0.0.1:1/x"]),
    ],
)
def test_bad_storage_url(workdir, tiny_spec, url, fragments):
    write_spec(workdir, "tiny", tiny_spec)
    result = run_hpsearch("run", "--study", "tiny", "--storage", url, cwd=workdir)
    line = assert_one_line_error(result, 1, *fragments)
    assert "hunter2" not in result.stdout + line


def test_bad_flag_value_is_a_usage_error(workdir):
    result = run_hpsearch("run", "--study", "x", "--n-trials", "0", cwd=workdir)
    assert result.returncode == 2
    assert "Invalid value for '--n-trials'" in result.stderr
    assert "Traceback" not in result.stderr


def test_hub_dataset_without_network_is_one_line(workdir, tiny_spec):
    tiny_spec["dataset"] = {"source": "someone/tweets-that-do-not-exist", "label": "label"}
    write_spec(workdir, "hub", tiny_spec)
    result = run_hpsearch("run", "--study", "hub", cwd=workdir, env={"HF_HUB_OFFLINE": "1"})
    assert_one_line_error(result, 1, "dataset.source: cannot load hub dataset 'someone/tweets-that-do-not-exist'")
    # The failure came before the study was created: the storage holds no study.
    with sqlite3.connect(workdir / "storage" / "hpsearch.db") as db:
        assert db.execute("select count(*) from studies").fetchone()[0] == 0


def test_debug_shows_the_traceback(workdir):
    result = run_hpsearch("--debug", "run", "--study", "nope", cwd=workdir)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: no spec for study 'nope'")


def test_bad_gpus_fails_before_anything_is_written(workdir, tiny_spec):
    write_spec(workdir, "tiny", tiny_spec)
    # This machine has no GPU: --gpus all is refused with what to do instead.
    result = run_hpsearch("run", "--study", "tiny", "--gpus", "all", cwd=workdir)
    assert_one_line_error(result, 1, "--gpus all: no GPU is visible here; use --workers N to run on CPU")
    with sqlite3.connect(workdir / "storage" / "hpsearch.db") as db:
        assert db.execute("select count(*) from studies").fetchone()[0] == 0
