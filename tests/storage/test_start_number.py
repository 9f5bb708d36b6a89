"""A study's start numbers: each handed out once, whoever asks at once, and once through an outage.

The server tests run when HPSEARCH_TEST_POSTGRES / HPSEARCH_TEST_MYSQL are set (.ci/run sets both);
then a server that does not answer fails the test rather than skipping it.
"""

from __future__ import annotations

import os
import threading
import uuid

import optuna
import pytest
from sqlalchemy.engine import make_url

from hpsearch.storage import open_storage, resolve_storage_url, take_start_number
from tests.tcp_proxy import CuttableProxy

BACKENDS = ["sqlite", "HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"]


@pytest.fixture
def shared_study(request, tmp_path):
    """A fresh study on the named backend, deleted afterwards: (url, name)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'starts.db'}"
    else:
        url = os.environ.get(request.param)
        if not url:
            pytest.skip(f"{request.param} is not set")
        url = resolve_storage_url(url).render_as_string(hide_password=False)
    name = f"test-{uuid.uuid4().hex[:10]}"
    optuna.create_study(study_name=name, storage=open_storage(resolve_storage_url(url)))
    yield url, name
    optuna.delete_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


def study_of(url: str, name: str) -> optuna.Study:
    """The study as one more process sees it: its own storage, its own connections."""
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


@pytest.mark.parametrize("shared_study", BACKENDS, indirect=True)
def test_callers_at_once_get_distinct_numbers(shared_study):
    url, name = shared_study
    n_callers, n_each = 6, 3
    studies = [study_of(url, name) for _ in range(n_callers)]
    ready = threading.Barrier(n_callers)
    taken: list[int] = []
    errors: list[BaseException] = []

    def take(study: optuna.Study) -> None:
        try:
            ready.wait()
            for _ in range(n_each):
                taken.append(take_start_number(study))
        except Exception as e:  # noqa: BLE001 - reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=take, args=(study,)) for study in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # Every caller got its numbers, without an error.
    assert errors == []
    # 18 calls at once, 18 numbers: 0 to 17, none twice.
    assert sorted(taken) == list(range(n_callers * n_each))
    # The next caller, later, gets the next number.
    assert take_start_number(study_of(url, name)) == n_callers * n_each


@pytest.mark.parametrize("shared_study", BACKENDS[1:], indirect=True, ids=["postgresql", "mysql"])
def test_a_number_whose_answer_is_lost_is_taken_once(shared_study):
    url, name = shared_study
    server = make_url(url)
    port = server.port or (5432 if server.get_backend_name() == "postgresql" else 3306)
    proxy = CuttableProxy(server.host or "127.0.0.1", port)
    try:
        via_proxy = server.set(host="127.0.0.1", port=proxy.port)
        study = study_of(via_proxy.render_as_string(hide_password=False), name)
        # The number is taken on the server; the client sees its connection die instead of "done".
        cut = proxy.cut_after_commit(b"INSERT INTO study_system_attributes")
        assert take_start_number(study) == 0
        assert cut.is_set()
        # The retry found the number it had taken: the next caller gets 1, not 2.
        assert take_start_number(study_of(url, name)) == 1
    finally:
        proxy.close()


def test_an_in_memory_study_counts_its_starts():
    study = optuna.create_study()
    # Another storage than the RDB one numbers its starts too, from 0.
    assert [take_start_number(study) for _ in range(3)] == [0, 1, 2]
