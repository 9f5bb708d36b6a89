"""docker-compose.yml, read as YAML (no Docker engine here): services, commands, volume, GPUs."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_postgres_keeps_its_data_in_a_volume():
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "pgdata" in compose()["volumes"]


def test_dashboard_serves_the_same_storage_and_artifacts():
    dashboard = compose()["services"]["dashboard"]
    assert dashboard["entrypoint"] == ["optuna-dashboard"]
    storage, *flags = dashboard["command"]
    assert storage.startswith("postgresql+psycopg://hpsearch:") and storage.endswith(
        "@postgres:5432/hpsearch"
    )
    assert "--artifact-dir=/shared/artifacts" in flags and "--server=gunicorn" in flags
    # Published on the host's loopback only.
    assert dashboard["ports"] == ["127.0.0.1:8080:8080"]


def test_workers_join_the_study_and_gpu_workers_reserve_the_gpus():
    services = compose()["services"]
    worker, gpu = services["worker"], services["gpu-worker"]
    # The image's entrypoint is hpsearch: these run `hpsearch worker --study ...`.
    assert worker["command"][:2] == ["worker", "--study"]
    assert worker["environment"]["HPSEARCH_STORAGE"].startswith("postgresql://hpsearch:")
    assert "deploy" not in worker  # a plain CPU worker: `--scale worker=N` is safe
    assert gpu["command"][-2:] == ["--gpus", "all"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert gpu["profiles"] == ["gpu"]
    # Every hpsearch service shares one volume for artifacts and the tokenized-data cache.
    for name in ("dashboard", "worker", "gpu-worker"):
        assert "shared:/shared" in services[name]["volumes"]


def test_dockerfile_installs_the_entrypoint():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["hpsearch"]' in dockerfile
    assert ".[postgres,mysql]" in dockerfile
