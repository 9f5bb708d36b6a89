"""docker-compose.yml and the Dockerfile, read as files (no Docker engine here): services, commands,
volumes, the GPU reservation; no database password on any command line or in any environment (the
dashboard, like the workers, reads the URL from the environment and the password from a secret
file); a non-root image whose every pip install is pinned by docker/constraints.txt, CPU or CUDA
torch by a build argument, and the Hugging Face cache on the shared volume. The constraints file is
checked to be what tools/constraints.py makes of the environment the tests pass in, and (with PyPI
reachable) to resolve."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hpsearch.storage import resolve_storage_url
from tests.conftest import REPO

CONSTRAINTS = REPO / "docker" / "constraints.txt"
HPSEARCH_SERVICES = ("dashboard", "worker", "gpu-worker")
# user:password@ in a URL, whatever the scheme (a ${VAR} stands for the password just as well).
PASSWORD_IN_URL = re.compile(r"://[^/@\s:]+:[^@\s]+@")


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def dockerfile_lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for line in dockerfile_lines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in shlex.split(line[4:]))
    return env


def test_postgres_keeps_its_data_in_a_volume():
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "pgdata" in compose()["volumes"]


def test_no_password_on_a_command_line_nor_in_an_environment():
    for name, service in compose()["services"].items():
        shown = [
            *(service.get("command") or []),
            *(service.get("entrypoint") or []),
            *(service.get("healthcheck", {}).get("test") or []),
        ]
        # `ps` shows commands, `docker inspect` commands and environments: no URL with a password.
        for text in [*shown, *map(str, (service.get("environment") or {}).values())]:
            assert not PASSWORD_IN_URL.search(str(text)), (name, text)
        # A password comes from a secret file only, never from a variable of its own.
        environment = service.get("environment") or {}
        assert not {"POSTGRES_PASSWORD", "HPSEARCH_STORAGE_PASSWORD"} & set(environment), name


def test_the_dashboard_reads_the_storage_from_the_environment_and_the_secret(tmp_path, monkeypatch):
    services = compose()["services"]
    dashboard = services["dashboard"]
    # `hpsearch dashboard` (the image's entrypoint), with no --storage: the environment's.
    assert "entrypoint" not in dashboard
    assert dashboard["command"][0] == "dashboard" and "--storage" not in dashboard["command"]
    assert "--server" in dashboard["command"] and "gunicorn" in dashboard["command"]
    environment = dashboard["environment"]
    # The password file is the secret the service mounts, and postgres sets its password from it.
    secret = PurePosixPath(environment["HPSEARCH_STORAGE_PASSWORD_FILE"])
    assert secret.parent == PurePosixPath("/run/secrets") and secret.name in dashboard["secrets"]
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == str(secret)
    assert secret.name in postgres["secrets"] and secret.name in compose()["secrets"]
    # hpsearch resolves that pair as the dashboard will: the URL, with the file's password.
    (tmp_path / "db_password").write_text("s3cret\n")
    monkeypatch.setenv("HPSEARCH_STORAGE", environment["HPSEARCH_STORAGE"])
    monkeypatch.setenv("HPSEARCH_STORAGE_PASSWORD_FILE", str(tmp_path / "db_password"))
    monkeypatch.delenv("HPSEARCH_STORAGE_PASSWORD", raising=False)
    url = resolve_storage_url(None)
    assert (url.username, url.password, url.host, url.database) == (
        "hpsearch",
        "s3cret",
        "postgres",
        postgres["environment"]["POSTGRES_DB"],
    )
    # Published on the host's loopback only.
    assert dashboard["ports"] == ["127.0.0.1:8080:8080"]


def test_the_secret_file_stays_out_of_git_and_of_the_image():
    source = Path(compose()["secrets"]["db_password"]["file"].split(":-")[-1].rstrip("}"))
    top = source.parts[1] if source.parts[0] == "." else source.parts[0]
    # Its folder is ignored by git and left out of the build context.
    assert f"/{top}/" in (REPO / ".gitignore").read_text().splitlines()
    assert top in (REPO / ".dockerignore").read_text().splitlines()


def test_workers_join_the_study_and_gpu_workers_reserve_the_gpus():
    services = compose()["services"]
    worker, gpu = services["worker"], services["gpu-worker"]
    # The image's entrypoint is hpsearch: these run `hpsearch worker --study ...`.
    assert worker["command"][:2] == ["worker", "--study"]
    assert worker["environment"]["HPSEARCH_STORAGE"].startswith("postgresql://hpsearch@")
    assert "deploy" not in worker  # a plain CPU worker: `--scale worker=N` is safe
    assert gpu["command"][-2:] == ["--gpus", "all"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert gpu["profiles"] == ["gpu"]
    # Every hpsearch service shares one volume for artifacts and the tokenized-data cache.
    for name in HPSEARCH_SERVICES:
        assert "shared:/shared" in services[name]["volumes"]
        assert services[name]["environment"]["HPSEARCH_STORAGE_PASSWORD_FILE"]


def test_the_huggingface_cache_is_on_a_volume():
    services = compose()["services"]
    image_env = dockerfile_env()
    for name in HPSEARCH_SERVICES:
        service = services[name]
        mounts = [PurePosixPath(v.split(":")[1]) for v in service["volumes"]]
        named = {v.split(":")[0] for v in service["volumes"]}
        home = PurePosixPath(service["environment"].get("HF_HOME", image_env["HF_HOME"]))
        # HF_HOME lies in a named volume: a restarted container finds its downloads there.
        assert any(home.is_relative_to(m) for m in mounts), (name, home)
        assert named <= set(compose()["volumes"])
    # The image sets it too (for Kubernetes and plain `docker run -v`), under the shared folder.
    assert PurePosixPath(image_env["HF_HOME"]).is_relative_to("/shared")


def test_the_image_runs_as_an_unprivileged_user():
    lines = dockerfile_lines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    # The last USER is the one the entrypoint runs as: not root, by name or by uid.
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    created = next(line for line in lines if "useradd" in line)
    assert re.search(rf"--uid (\d+) .*\b{users[-1]}\b", created)
    uid = int(re.search(r"--uid (\d+)", created).group(1))
    assert uid != 0
    # It owns the shared folder the volumes start from, and the working directory (storage/logs).
    assert re.search(rf"chown -R {users[-1]}:{users[-1]} /shared", created)
    assert any(f"chown {users[-1]}:{users[-1]} /app" in line for line in lines)
    assert lines[-1] == 'ENTRYPOINT ["hpsearch"]'
    assert lines.index(f"USER {users[-1]}") > max(
        i for i, line in enumerate(lines) if line.startswith("RUN ")
    )


def pip_installs() -> list[list[str]]:
    """Every `pip install` of the Dockerfile, as its arguments."""
    installs = []
    for line in dockerfile_lines():
        if not line.startswith("RUN "):
            continue
        for command in re.split(r"&&|;", line[4:]):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"]:
                installs.append(words[words.index("install") + 1 :])
    return installs


def test_every_pip_install_is_pinned_by_the_constraints_file():
    installs = pip_installs()
    assert len(installs) == 2  # torch from its index, then hpsearch and the rest from PyPI
    copied = next(line for line in dockerfile_lines() if "docker/constraints.txt" in line)
    target = copied.split()[-1]
    for args in installs:
        # Each names the constraints file: every package it installs is pinned there.
        assert "--constraint" in args and args[args.index("--constraint") + 1] == target
        assert "--no-constraint" not in args and "-U" not in args and "--upgrade" not in args
    assert installs[1][-1] == ".[postgres,mysql]"


def test_a_build_argument_chooses_cpu_or_cuda_torch():
    lines = dockerfile_lines()
    # ARG TORCH, CPU unless told otherwise.
    assert "ARG TORCH=cpu" in lines
    torch_install = next(args for args in pip_installs() if args[-1] == "torch")
    index = torch_install[torch_install.index("--index-url") + 1]
    assert index == "https://download.pytorch.org/whl/${TORCH}"
    services = compose()["services"]
    # Compose builds the CPU image for the dashboard and the CPU workers, CUDA for gpu-worker.
    for name in ("dashboard", "worker"):
        assert services[name]["build"]["args"]["TORCH"] == "cpu"
    assert services["gpu-worker"]["build"]["args"]["TORCH"].split(":-")[-1].startswith("cu")
    # Two builds, two tags: neither overwrites the other.
    assert services["worker"]["image"] != services["gpu-worker"]["image"]


def test_the_constraints_are_this_environments_resolution():
    generated = subprocess.run(
        [sys.executable, str(REPO / "tools" / "constraints.py")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # What the generator makes of the venv the tests pass in, as committed (else: make constraints).
    assert CONSTRAINTS.read_text() == generated
    pins = {}
    for line in generated.splitlines():
        if line.startswith("#"):
            continue
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version
    # Every dependency of hpsearch[postgres,mysql] is pinned, within pyproject's own range.
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for line in [*project["dependencies"], *extras["postgres"], *extras["mysql"]]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins and requirement.specifier.contains(pins[name]), line
    # torch's CUDA libraries are its own to pin, per build.
    assert not [name for name in pins if name.startswith("nvidia-") or name == "triton"]


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from here")
def test_the_constraints_resolve_against_pypi(tmp_path):
    report = tmp_path / "report.json"
    # pip's resolver, as the image's second install runs it (torch here from PyPI, by its version).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--constraint",
            str(CONSTRAINTS),
            "--report",
            str(report),
            ".[postgres,mysql]",
        ],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    chosen = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = dict(line.split("==") for line in CONSTRAINTS.read_text().splitlines() if "==" in line)
    # Everything pinned that pip installs is installed at its pin.
    for name, version in pins.items():
        if canonicalize_name(name) in chosen:
            assert chosen[canonicalize_name(name)].split("+")[0] == version, name
