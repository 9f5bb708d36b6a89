"""The databases the storage tests run on: a SQLite file, and the PostgreSQL and MariaDB servers
named by HPSEARCH_TEST_POSTGRES / HPSEARCH_TEST_MYSQL (.ci/run sets both; unset, a test skips)."""

from __future__ import annotations

import os

import pytest

BACKENDS = ["sqlite", "HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"]


def backend_url(backend: str, tmp_path) -> str:
    """The URL of `backend` (one of BACKENDS): a fresh SQLite file, or the server's (else skip)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'storage.db'}"
    if not os.environ.get(backend):
        pytest.skip(f"{backend} is not set")
    return os.environ[backend]


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> str:
    return backend_url(request.param, tmp_path)
