"""Storage URLs: resolution order, redaction, and one-line errors for bad or unreachable ones."""

from __future__ import annotations

import os
import sqlite3
import uuid

import optuna
import pytest

from hpsearch.errors import StorageError
from hpsearch.storage import DEFAULT_STORAGE, open_storage, redact, resolve_storage_url

POSTGRES_URL = os.environ.get("HPSEARCH_TEST_POSTGRES")
MYSQL_URL = os.environ.get("HPSEARCH_TEST_MYSQL")


def test_flag_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    assert resolve_storage_url(None).render_as_string() == DEFAULT_STORAGE
    monkeypatch.setenv("HPSEARCH_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url(None).database == "env.db"
    assert resolve_storage_url("sqlite:///flag.db").database == "flag.db"


def test_installed_drivers_are_filled_in():
    # postgresql:// and mysql:// would ask for drivers hpsearch does not install.
    assert resolve_storage_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert resolve_storage_url("mysql://u@h/db").drivername == "mysql+pymysql"
    assert resolve_storage_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"


def test_password_is_never_shown():
    assert redact("postgresql://alice:s3cret@db:5432/hp") == "postgresql://alice:***@db:5432/hp"
    # Even in a URL too broken to parse (a port that is no number).
    assert redact("postgresql://alice:s3cret@db:port/hp") == "postgresql://alice:***@db:port/hp"


def test_malformed_url():
    with pytest.raises(
        StorageError, match=r"malformed storage URL 'not a url'; expected e.g. sqlite:///"
    ):
        resolve_storage_url("not a url")


def test_unreachable_server_is_one_line_without_password():
    # Nothing listens on port 1: the connection is refused at once.
    url = resolve_storage_url("postgresql://alice:s3cret@127.0.0.1:1/hp")
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    message = caught.value.message
    assert message.startswith("cannot open storage postgresql+psycopg://alice:***@127.0.0.1:1/hp: ")
    assert "s3cret" not in message and "\n" not in message


def test_missing_driver_names_the_extra():
    with pytest.raises(
        StorageError, match=r"no database driver for .*; install its SQLAlchemy driver"
    ):
        open_storage(resolve_storage_url("mssql+pymssql://u@h/db"))


def test_sqlite_file_is_created_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "hp.db"
    open_storage(resolve_storage_url(f"sqlite:///{path}"))
    # WAL lets readers work beside a writing worker; it is recorded in the file itself.
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_directory_is_refused(tmp_path):
    with pytest.raises(StorageError, match="is a directory; name a file"):
        open_storage(resolve_storage_url(f"sqlite:///{tmp_path}"))


@pytest.mark.parametrize("url", [POSTGRES_URL, MYSQL_URL], ids=["postgresql", "mysql"])
def test_real_servers_open(url):
    if url is None:
        pytest.skip("set HPSEARCH_TEST_POSTGRES / HPSEARCH_TEST_MYSQL to test against a server")
    # When the variable is set, the server must answer: a failure here is a failure, not a skip.
    storage = open_storage(resolve_storage_url(url))
    assert isinstance(storage.get_all_studies(), list)


def test_url_with_bad_port_is_malformed_not_a_crash():
    with pytest.raises(
        StorageError, match=r"malformed storage URL 'postgresql://alice:\*\*\*@db:port/hp'"
    ):
        resolve_storage_url("postgresql://alice:s3cret@db:port/hp")


def _sqlite_study(tmp_path, heartbeat_interval: int):
    import optuna

    storage = open_storage(resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}"))
    # Set directly: a spec refuses a grace period shorter than the interval, which this test needs.
    storage.heartbeat_interval, storage.grace_period = heartbeat_interval, 2
    return storage, optuna.create_study(storage=storage)


def test_a_trial_record_is_written_in_one_commit(tmp_path):
    from sqlalchemy import event

    from hpsearch.storage import set_user_attrs

    storage, study = _sqlite_study(tmp_path, heartbeat_interval=10)
    trial = study.ask()
    commits = []
    event.listen(storage.engine, "commit", lambda connection: commits.append(1))
    set_user_attrs(trial, {"seed": 3, "host": "h", "pid": 7, "device": "cpu"})
    # Four attributes, one transaction: Optuna's set_user_attr would commit four times.
    assert len(commits) == 1
    assert study.trials[0].user_attrs == {"seed": 3, "host": "h", "pid": 7, "device": "cpu"}


def test_stale_trials_are_looked_for_once_per_heartbeat_interval(tmp_path, monkeypatch):
    import time

    import hpsearch.storage.shortcuts

    storage, study = _sqlite_study(tmp_path, heartbeat_interval=5)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3.5)  # past the 2 s grace period (SQLite's clock counts whole seconds): stale
    clock = [time.monotonic()]
    monkeypatch.setattr(hpsearch.storage.shortcuts.time, "monotonic", lambda: clock[0])
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    # Within one heartbeat interval, a second check finds nothing new and asks the database nothing.
    clock[0] += 4.9
    assert storage._get_stale_trial_ids(study._study_id) == []
    clock[0] += 0.2
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]


def test_trials_are_counted_in_every_state(tmp_path):
    import optuna

    from hpsearch.storage import count_trials

    _, study = _sqlite_study(tmp_path, heartbeat_interval=10)
    study.tell(study.ask(), 1.0)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.ask()  # running
    study.enqueue_trial({})  # waiting
    # One COUNT over the trials table agrees with reading them all.
    assert count_trials(study) == len(study.trials) == 4
    # Another storage (in memory) falls back to reading them.
    memory = optuna.create_study()
    memory.ask()
    assert count_trials(memory) == 1


def test_password_from_a_file_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HPSEARCH_STORAGE_PASSWORD", raising=False)
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("HPSEARCH_STORAGE_PASSWORD_FILE", str(secret))
    url = resolve_storage_url("postgresql://alice@db:5432/hp")
    assert url.password == "s3cret" and "s3cret" not in redact(url)
    monkeypatch.delenv("HPSEARCH_STORAGE_PASSWORD_FILE")
    monkeypatch.setenv("HPSEARCH_STORAGE_PASSWORD", "from-env")
    assert resolve_storage_url("postgresql://alice@db:5432/hp").password == "from-env"


@pytest.mark.parametrize(
    "setup, message",
    [
        ({"HPSEARCH_STORAGE_PASSWORD_FILE": "{missing}"}, "cannot read it"),
        (
            {"HPSEARCH_STORAGE_PASSWORD_FILE": "{empty}"},
            "the file is empty; write the password on its first line",
        ),
        (
            {"HPSEARCH_STORAGE_PASSWORD_FILE": "{good}", "HPSEARCH_STORAGE_PASSWORD": "x"},
            "keep one of them",
        ),
    ],
    ids=["missing", "empty", "both"],
)
def test_password_apart_mistakes_are_one_line(monkeypatch, tmp_path, setup, message):
    monkeypatch.delenv("HPSEARCH_STORAGE_PASSWORD", raising=False)
    (tmp_path / "empty").write_text("")
    (tmp_path / "good").write_text("pw")
    for key, value in setup.items():
        monkeypatch.setenv(
            key,
            value.format(
                missing=tmp_path / "nope", empty=tmp_path / "empty", good=tmp_path / "good"
            ),
        )
    with pytest.raises(StorageError, match=message):
        resolve_storage_url("postgresql://alice@db:5432/hp")


def test_a_url_with_a_password_and_a_password_apart_is_refused(monkeypatch):
    monkeypatch.setenv("HPSEARCH_STORAGE_PASSWORD", "other")
    with pytest.raises(
        StorageError, match=r"postgresql\+psycopg://alice:\*\*\*@db/hp holds a password"
    ):
        resolve_storage_url("postgresql://alice:s3cret@db/hp")
    # The same password twice is the URL a worker resolved, handed to its child processes.
    assert resolve_storage_url("postgresql://alice:other@db/hp").password == "other"


def test_a_password_file_reaches_a_real_server(monkeypatch, tmp_path):
    # MariaDB checks passwords (PostgreSQL here trusts every local connection).
    if MYSQL_URL is None:
        pytest.skip("set HPSEARCH_TEST_MYSQL to test against MariaDB")
    import sqlalchemy

    base = resolve_storage_url(MYSQL_URL)
    admin = sqlalchemy.create_engine(base)
    with admin.begin() as connection:
        connection.execute(
            sqlalchemy.text("CREATE USER IF NOT EXISTS 'hp_pw'@'%' IDENTIFIED BY 'file-s3cret'")
        )
        # The URL's database (test, or test_gw0 for a pytest-xdist process).
        connection.execute(sqlalchemy.text(f"GRANT ALL ON `{base.database}`.* TO 'hp_pw'@'%'"))
    user_url = base.set(username="hp_pw", password=None).render_as_string(hide_password=False)
    secret = tmp_path / "password"
    secret.write_text("file-s3cret\n")
    monkeypatch.setenv("HPSEARCH_STORAGE_PASSWORD_FILE", str(secret))
    name = f"test-{uuid.uuid4().hex[:10]}"
    optuna.create_study(study_name=name, storage=open_storage(base))
    try:
        storage = open_storage(resolve_storage_url(user_url))
        # Signed in as hp_pw with the file's password, the storage reads the study the admin made.
        assert name in [s.study_name for s in storage.get_all_studies()]
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(base))
    secret.write_text("wrong\n")
    with pytest.raises(StorageError, match="hp_pw") as refused:
        open_storage(resolve_storage_url(user_url))
    assert "wrong" not in str(refused.value)


SESSIONS_OF_THIS_DATABASE = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    "mysql": "SELECT count(*) FROM information_schema.processlist "
    "WHERE db = DATABASE() AND id <> CONNECTION_ID()",
}


@pytest.mark.parametrize("variable", ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"])
def test_a_storage_opened_for_a_block_closes_its_connections_at_its_end(variable):
    # A worker that reads another study once per trial (distillation's teacher) must not leave a
    # server session behind each time: dropped storages hold theirs until a full GC pass.
    if not os.environ.get(variable):
        pytest.skip(f"{variable} is not set")
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from hpsearch.storage import closing_storage

    url = resolve_storage_url(os.environ[variable])
    query = sqlalchemy.text(SESSIONS_OF_THIS_DATABASE[url.get_backend_name()])
    admin = sqlalchemy.create_engine(url, poolclass=NullPool)

    def sessions() -> int:
        with admin.connect() as connection:
            return connection.execute(query).scalar_one()

    before = sessions()
    with closing_storage(url) as storage:
        storage.get_all_studies()
        assert sessions() > before
    assert sessions() == before
