"""The CLI as a user meets it: real processes, exit codes, one-line errors, nothing half-written."""

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
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
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
    assert_one_line_error(
        result, 2, "studies/bad.yaml: search_space.learning_rate: range [0.001, 1e-05] is inverted"
    )
    assert not (workdir / "storage").exists()


def test_missing_data_column_exits_2(workdir, tiny_spec):
    tiny_spec["dataset"]["text"] = "tweet"
    write_spec(workdir, "bad", tiny_spec)
    result = run_hpsearch("run", "--study", "bad", cwd=workdir)
    assert_one_line_error(
        result, 2, "dataset.text: no column 'tweet'", "its columns are sentiment, confidence, text"
    )


@pytest.mark.parametrize(
    "url, fragments",
    [
        ("nonsense", ["malformed storage URL 'nonsense'"]),
        (
            "postgresql://bob:hunter2@127.0.0.1:1/x",
            ["cannot open storage postgresql+psycopg://bob:***@127.0.0.1:1/x"],
        ),
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
    assert_one_line_error(
        result, 1, "dataset.source: cannot load hub dataset 'someone/tweets-that-do-not-exist'"
    )
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
    assert_one_line_error(
        result, 1, "--gpus all: no GPU is visible here; use --workers N to run on CPU"
    )
    with sqlite3.connect(workdir / "storage" / "hpsearch.db") as db:
        assert db.execute("select count(*) from studies").fetchone()[0] == 0


# Every subcommand, and what it needs to name a study: (name, arguments before --study NAME).
SUBCOMMANDS = {
    "worker": ["worker"],
    "dashboard": ["dashboard", "--port", "1"],  # never reaches the port: the study is checked first
    "status": ["status"],
    "best": ["best"],
    "export": ["export", "OUT"],
    "report": ["report", "--out", "OUT"],
}


def storage_state(directory) -> dict:
    """Everything a command could have written: each file's name, and each database's rows."""
    state = {}
    for path in sorted(directory.rglob("*")):
        if path.name.endswith(("-wal", "-shm")):
            continue  # SQLite's journal files come and go with connections; the rows hold it all
        if path.suffix == ".db":
            with sqlite3.connect(path) as db:
                state[path.name] = list(db.iterdump())
        else:
            state[path.name] = path.is_dir() or path.read_bytes()
    return state


@pytest.fixture(scope="module")
def storages(tmp_path_factory):
    """Databases in each state a mistake meets: with a study, empty, with broken specs."""
    import optuna

    from hpsearch.spec import parse_spec
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study import SPEC_ATTR, open_study
    from tests.conftest import TINY_SPEC

    root = tmp_path_factory.mktemp("mistakes")
    with_study = open_storage(resolve_storage_url(f"sqlite:///{root / 'one.db'}"))
    open_study(with_study, "other", parse_spec(dict(TINY_SPEC), "t"))
    open_storage(resolve_storage_url(f"sqlite:///{root / 'empty.db'}"))
    broken = open_storage(resolve_storage_url(f"sqlite:///{root / 'broken.db'}"))
    optuna.create_study(study_name="foreign", storage=broken)  # made by plain Optuna: no spec
    garbled = optuna.create_study(study_name="garbled", storage=broken)
    garbled.set_user_attr(
        SPEC_ATTR, {"model": "m", "budget": {"n_trials": "many"}}
    )  # not a valid spec
    return root


MISTAKES = [
    # (storage file, study, exit code, what the one line says)
    ("one.db", "nope", 1, "Error: no study 'nope' in the storage; studies there: other"),
    ("empty.db", "nope", 1, "Error: no study 'nope' in the storage; the storage holds no study"),
    ("missing.db", "nope", 1, "Error: no storage at "),
    (
        "broken.db",
        "foreign",
        1,
        "Error: study 'foreign' was not created by hpsearch (it has no stored spec)",
    ),
    ("broken.db", "garbled", 2, "Error: stored spec of study 'garbled': "),
]


@pytest.mark.parametrize(
    "database, study, code, message", MISTAKES, ids=[m[0] + ":" + m[1] for m in MISTAKES]
)
def test_every_subcommand_meets_every_mistake_with_one_line(
    storages, tmp_path, database, study, code, message
):
    from concurrent.futures import ThreadPoolExecutor

    def attempt(command: str):
        cwd = tmp_path / command
        cwd.mkdir()
        args = [str(cwd / "out") if a == "OUT" else a for a in SUBCOMMANDS[command]]
        return cwd, run_hpsearch(
            *args, "--study", study, "--storage", f"sqlite:///{storages / database}", cwd=cwd
        )

    before = storage_state(storages)
    with ThreadPoolExecutor(max_workers=3) as pool:  # real processes, a few at a time
        outcomes = dict(zip(SUBCOMMANDS, pool.map(attempt, SUBCOMMANDS), strict=True))
    for command, (cwd, result) in outcomes.items():
        line = assert_one_line_error(result, code)
        assert line.startswith(message), f"{command}: {line}"
        # Nothing written by any of them: no output folder, no stray files ...
        assert list(cwd.iterdir()) == [], command
    # ... and no database created or changed.
    assert storage_state(storages) == before


@pytest.mark.parametrize(
    "content, message",
    [
        (b"model: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 10); save it as UTF-8 YAML"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not UTF-8 text"),
        (b"model: x\x00\x00\n", "is a binary file, not YAML text"),
        (b"", "the spec is empty"),
        (None, "is a directory; name a .yaml file"),
    ],
    ids=["latin-1", "binary", "nul-bytes", "empty", "directory"],
)
def test_run_with_an_unreadable_spec_is_one_line(workdir, content, message):
    spec = workdir / "studies" / "bad.yaml"
    if content is None:
        spec.mkdir()
    else:
        spec.write_bytes(content)
    result = run_hpsearch("run", "--study", str(spec), cwd=workdir)
    assert message in assert_one_line_error(result, 2)
    assert not (workdir / "storage").exists()


def test_a_directory_as_dataset_source_says_what_a_source_may_be(workdir, tiny_spec):
    (workdir / "tweets").mkdir()
    (workdir / "tweets" / "notes.txt").write_text("no data here")
    tiny_spec["dataset"]["source"] = str(workdir / "tweets")
    write_spec(workdir, "folder", tiny_spec)
    result = run_hpsearch("run", "--study", "folder", cwd=workdir)
    line = assert_one_line_error(
        result, 2, f"dataset.source: {workdir / 'tweets'} is a directory with no data files in it"
    )
    assert (
        "a source is a csv/tsv/json/jsonl/parquet file, a folder of such files named by split"
        in line
    )
    assert "hub dataset" in line and "cannot load" not in line
    assert not (workdir / "storage").exists()


def test_create_makes_the_study_for_workers_to_join_and_runs_no_trial(workdir, tiny_spec):
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study import stored_spec
    from tests.conftest import write_spec

    write_spec(workdir, "tiny", tiny_spec)
    result = run_hpsearch("create", "--study", "tiny", "--n-trials", "5", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "0/5 trials spent; workers join it with: hpsearch worker --study tiny" in result.stdout
    storage = open_storage(resolve_storage_url("sqlite:///storage/hpsearch.db"), must_exist=True)
    assert stored_spec(storage, "tiny").budget.n_trials == 5
    assert storage.get_all_trials(storage.get_study_id_from_name("tiny")) == []
    # Again, with the same spec: nothing changes; with another, refused as `run` refuses it.
    assert run_hpsearch("create", "--study", "tiny", "--n-trials", "5", cwd=workdir).returncode == 0
    tiny_spec["dataset"]["max_length"] = 16
    write_spec(workdir, "tiny", tiny_spec)
    line = assert_one_line_error(run_hpsearch("create", "--study", "tiny", cwd=workdir), 1)
    assert "created from a different spec (dataset.max_length: 32 -> 16)" in line


def test_run_keeps_its_timeout_out_of_the_spec_and_records_a_run_only_change(workdir, tiny_spec):
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study import SPEC_CHANGES_ATTR, stored_spec

    # One optimizer step, one evaluation: the cheapest real trial.
    tiny_spec["dataset"].update(max_train_samples=16, max_eval_samples=8)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    tiny_spec["budget"] = {"n_trials": 1}
    write_spec(workdir, "cheap", tiny_spec)
    result = run_hpsearch("run", "--study", "cheap", "--timeout", "30", cwd=workdir)
    assert result.returncode == 0, result.stderr
    storage = open_storage(resolve_storage_url("sqlite:///storage/hpsearch.db"), must_exist=True)
    study_id = storage.get_study_id_from_name("cheap")
    # --timeout was this run's deadline: a worker joining later must not inherit it.
    assert stored_spec(storage, "cheap").budget.timeout is None

    # How evaluation batches and loads the data changes no trial's value: taken, and recorded.
    tiny_spec["training"].update(per_device_eval_batch_size=4, dataloader_num_workers=0)
    write_spec(workdir, "cheap", tiny_spec)
    result = run_hpsearch("run", "--study", "cheap", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "stored spec updated: training.per_device_eval_batch_size: null -> 4" in result.stdout
    assert "stored spec updated: training.dataloader_num_workers: null -> 0" in result.stdout
    assert stored_spec(storage, "cheap").training["per_device_eval_batch_size"] == 4
    recorded = storage.get_study_user_attrs(study_id)[SPEC_CHANGES_ATTR]
    assert [(r["key"], r["old"], r["new"]) for r in recorded] == [
        ("training.dataloader_num_workers", None, 0),
        ("training.per_device_eval_batch_size", None, 4),
    ]
    # `status` shows the record, each key whole.
    shown = run_hpsearch("status", "--study", "cheap", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert "spec changes" in shown.stdout, shown.stdout
    assert "training.per_device_eval_batch_size" in shown.stdout, shown.stdout

    # A fixed training value changes what a trial's value means: one line naming the key and the
    # new study to start instead; nothing written.
    before = storage.get_study_user_attrs(study_id)
    tiny_spec["training"]["weight_decay"] = 0.1
    write_spec(workdir, "cheap", tiny_spec)
    line = assert_one_line_error(
        run_hpsearch("run", "--study", "cheap", cwd=workdir),
        1,
        "training.weight_decay: null -> 0.1",
        "--study-name cheap-2",
    )
    assert "changes what its trials' values mean" in line
    assert storage.get_study_user_attrs(study_id) == before
