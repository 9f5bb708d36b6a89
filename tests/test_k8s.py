"""cluster/k8s/, read as YAML (no cluster here): every document valid against the Kubernetes API
schemas (kubernetes-validate ships them: offline), and what the schemas cannot see: the workers are
an Indexed Job of `hpsearch worker` that hpsearch's own CLI parses, the storage URL comes from the
Secret and from nowhere else, a mistake fails the Job while a crash is retried, the dashboard's
Service reaches its pods, the shared volume holds the paths the image names. The wait for the study
runs here for real, and so does a worker pod's stop: SIGTERM to `hpsearch worker` as the PID 1 of
its own PID namespace, as in a container."""

from __future__ import annotations

import copy
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from hpsearch.cli import cli
from tests.conftest import REPO, run_hpsearch, write_spec

K8S = REPO / "cluster" / "k8s"
# The oldest Kubernetes the manifests are written for (backoffLimitPerIndex is GA from 1.33,
# podFailurePolicy and changing an Indexed Job's completions from 1.31), and the newest
# kubernetes-validate has schemas for.
OLDEST_KUBERNETES = "1.33"
KUBERNETES_VERSIONS = sorted(
    {OLDEST_KUBERNETES, ".".join(kubernetes_validate.latest_version().split(".")[:2])}
)
GPU_JOB, CPU_JOB = "worker-job.yaml", "worker-job-cpu.yaml"
WORKER_JOBS = [GPU_JOB, CPU_JOB]
STUDY = "sentiment"
GPU = "nvidia.com/gpu"


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc is not None]


def all_documents() -> list[dict]:
    return [doc for path in manifest_files() for doc in documents(path.name)]


def the(kind: str, name: str, file: str | None = None) -> dict:
    docs = documents(file) if file else all_documents()
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(workload: dict, name: str) -> dict:
    found = [c for c in containers(workload) if c["name"] == name]
    assert len(found) == 1, f"{workload['metadata']['name']}: no container {name}"
    return found[0]


def env_var(container_: dict, name: str) -> dict | None:
    return next((e for e in container_.get("env", []) if e["name"] == name), None)


def worker_job(file: str) -> dict:
    return the("Job", "hpsearch-worker", file)


def parse_hpsearch(args: list[str]) -> tuple[str, dict]:
    """The subcommand and its options as hpsearch's own click CLI parses `hpsearch ARGS`: a
    misspelt, unknown or missing option is a click.UsageError here, as it would be in the pod."""
    root = cli.make_context("hpsearch", list(args))
    name = next(arg for arg in args if not arg.startswith("-"))
    command = cli.get_command(root, name)
    assert command is not None, f"hpsearch has no command {name!r}"
    return name, command.make_context(name, list(args[args.index(name) + 1 :]), parent=root).params


def hpsearch_args(container_: dict) -> list[str]:
    """What a container runs `hpsearch` with: the image's entrypoint is `hpsearch`; the init
    container's shell loop takes it after its script."""
    command, args = container_.get("command"), container_.get("args", [])
    if command is None:
        return list(args)
    if command == ["sh", "-c"]:
        assert 'hpsearch "$@"' in args[0]
        return args[2:]  # args[1] is the script's $0
    raise AssertionError(f"{container_['name']}: unexpected command {command}")


def hpsearch_containers() -> list[tuple[dict, dict]]:
    """(workload, container) for every container of the hpsearch image."""
    return [
        (doc, c)
        for doc in all_documents()
        if "template" in doc.get("spec", {})
        for c in containers(doc)
        if c["image"].split(":")[0] == "hpsearch"
    ]


def dockerfile_env() -> dict[str, str]:
    """Every ENV of the image (tests/test_compose.py reads the Dockerfile)."""
    from tests.test_compose import dockerfile_env as image_env

    return image_env()


def dockerfile_uid() -> int:
    """The uid of the user the image runs as (its useradd --uid)."""
    from tests.test_compose import dockerfile_lines

    created = next(line for line in dockerfile_lines() if "useradd" in line)
    return int(re.search(r"--uid (\d+)", created).group(1))


def cpus(quantity) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


# --- the files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_document_is_valid_against_the_kubernetes_schemas(path, version):
    docs = documents(path.name)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        # strict: a misspelt or misplaced field is an error, not silently dropped by the API server.
        kubernetes_validate.validate(doc, version, strict=True)


def test_each_manifest_says_what_it_is_first():
    for path in [*manifest_files(), K8S / "kustomization.yaml"]:
        assert path.read_text().startswith("# "), f"{path.name} does not start with a comment"


def test_the_kustomization_lists_every_manifest_once():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    # Every manifest but the CPU variant of the workers, which replaces worker-job.yaml (the same
    # Job).
    assert set(resources) == {p.name for p in manifest_files()} - {CPU_JOB}
    # The images transformer renames the one image every hpsearch container uses.
    images = {c["image"] for _, c in hpsearch_containers()}
    assert images == {"hpsearch:latest"}
    assert [i["name"] for i in kustomization["images"]] == ["hpsearch"]


# --- the workers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("file", WORKER_JOBS)
def test_workers_are_an_indexed_job_of_n_pods(file):
    job = worker_job(file)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    # N workers at once, each index done when its worker exits 0 (the budget spent); the scaling
    # in docs/deploy.md patches both together, which the API allows for Indexed Jobs only in tandem.
    assert spec["parallelism"] == spec["completions"] >= 1
    # An Indexed Job's pods are named NAME-INDEX, which must be a DNS label (the API checks this).
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    assert len(f"{job['metadata']['name']}-{spec['completions'] - 1}") <= 63


@pytest.mark.parametrize("file", WORKER_JOBS)
def test_worker_pods_run_hpsearch_worker_on_the_created_study(file):
    job = worker_job(file)
    command, params = parse_hpsearch(hpsearch_args(container(job, "worker")))
    assert command == "worker"
    assert params["name"] == STUDY
    # One trial at a time in the pod's one process: no --gpus/--workers supervisor inside a pod.
    assert params["gpus"] is None and params["workers"] is None and not params["supervised"]
    # The init container waits for that same study.
    command, params = parse_hpsearch(hpsearch_args(container(job, "wait-for-study")))
    assert (command, params["name"]) == ("status", STUDY)

    # The study the workers join is the one hpsearch-create-study creates from a spec in the image.
    create = the("Job", "hpsearch-create-study")
    command, params = parse_hpsearch(hpsearch_args(container(create, "create-study")))
    assert command == "create"
    assert (params["study_name"] or Path(params["study_ref"]).stem) == STUDY
    assert (REPO / "studies" / f"{params['study_ref']}.yaml").is_file()
    assert re.search(
        r"^COPY (--chown=\S+ )?studies ./studies$", (REPO / "Dockerfile").read_text(), re.MULTILINE
    )


def test_the_gpu_workers_request_one_gpu_each():
    worker = container(worker_job(GPU_JOB), "worker")
    resources = worker["resources"]
    # An extended resource is given in limits (requests, if any, must equal them).
    assert int(resources["limits"][GPU]) == 1
    assert int(resources.get("requests", {}).get(GPU, 1)) == 1
    tolerations = pod_spec(worker_job(GPU_JOB))["tolerations"]
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_the_cpu_workers_request_no_gpu_and_see_none():
    job = worker_job(CPU_JOB)
    assert GPU not in yaml.safe_dump(job)
    assert env_var(container(job, "worker"), "CUDA_VISIBLE_DEVICES") == {
        "name": "CUDA_VISIBLE_DEVICES",
        "value": "",
    }


@pytest.mark.parametrize("file", WORKER_JOBS)
def test_a_workers_torch_threads_are_its_cpu_request(file):
    worker = container(worker_job(file), "worker")
    threads = env_var(worker, "HPSEARCH_THREADS")
    assert threads is not None
    assert int(threads["value"]) == cpus(worker["resources"]["requests"]["cpu"])


def test_the_cpu_variant_differs_only_in_resources():
    def without_hardware(job: dict) -> dict:
        job = copy.deepcopy(job)
        spec = pod_spec(job)
        spec.pop("tolerations", None)
        for c in containers(job):
            c.pop("resources", None)
            c["env"] = [
                e
                for e in c.get("env", [])
                if e["name"] not in ("HPSEARCH_THREADS", "CUDA_VISIBLE_DEVICES")
            ]
        return job

    assert without_hardware(worker_job(CPU_JOB)) == without_hardware(worker_job(GPU_JOB))


# --- failures -------------------------------------------------------------------------------------


def failure_action(job: dict, exit_codes: dict[str, int], conditions: tuple[str, ...] = ()) -> str:
    """What the Job controller does with a failed pod, as Kubernetes decides it: the first rule of
    the podFailurePolicy that matches (an exit code of a container it names, or of any; a pod
    condition with status True), else Count (a retry, within the backoff limit)."""
    for rule in job["spec"].get("podFailurePolicy", {}).get("rules", []):
        if "onExitCodes" in rule:
            requirement = rule["onExitCodes"]
            codes = [
                code
                for name, code in exit_codes.items()
                if code != 0 and requirement.get("containerName") in (None, name)
            ]
            if requirement["operator"] == "In":
                matched = any(code in requirement["values"] for code in codes)
            else:
                matched = any(code not in requirement["values"] for code in codes)
            if matched:
                return rule["action"]
        if any(
            p["type"] in conditions and p["status"] == "True"
            for p in rule.get("onPodConditions", [])
        ):
            return rule["action"]
    return "Count"


def api_server_errors(job: dict) -> list[str]:
    """The API server's own checks of a Job's failure handling, which the JSON schema cannot express
    (k8s.io/kubernetes pkg/apis/batch/validation): the Job would be refused at `kubectl apply`."""
    spec, errors = job["spec"], []
    names = {c["name"] for c in containers(job)}
    if "podFailurePolicy" in spec and pod_spec(job)["restartPolicy"] != "Never":
        errors.append("podFailurePolicy needs restartPolicy: Never")
    for i, rule in enumerate(spec.get("podFailurePolicy", {}).get("rules", [])):
        if ("onExitCodes" in rule) == bool(rule.get("onPodConditions")):
            errors.append(f"rule {i}: exactly one of onExitCodes and onPodConditions")
        if rule["action"] == "FailIndex" and "backoffLimitPerIndex" not in spec:
            errors.append(f"rule {i}: FailIndex needs backoffLimitPerIndex")
        requirement = rule.get("onExitCodes")
        if requirement:
            values = requirement["values"]
            if requirement.get("containerName") not in (None, *names):
                errors.append(f"rule {i}: containerName names no container")
            if values != sorted(set(values)) or not values:
                errors.append(f"rule {i}: values must be ordered, unique, at least one")
            if requirement["operator"] == "In" and 0 in values:
                errors.append(f"rule {i}: 0 is not a failure")
        for pattern in rule.get("onPodConditions", []):
            if pattern.get("status") not in ("True", "False", "Unknown"):
                errors.append(f"rule {i}: a pod condition needs its status")
    if "backoffLimitPerIndex" in spec and spec.get("completionMode") != "Indexed":
        errors.append("backoffLimitPerIndex needs completionMode: Indexed")
    return errors


@pytest.mark.parametrize("file", WORKER_JOBS)
def test_a_mistake_fails_the_worker_job_and_a_crash_is_retried(file):
    job = worker_job(file)
    assert api_server_errors(job) == []
    # hpsearch's exit codes: 1 a mistake, 2 a spec mistake, 3 a bug met in a trial: every pod would
    # repeat them, so the whole Job fails at once; the init container's 1 (no study, no database
    # after its wait) too.
    assert failure_action(job, {"worker": 1}) == "FailJob"
    assert failure_action(job, {"worker": 2}) == "FailJob"
    assert failure_action(job, {"worker": 3}) == "FailJob"
    assert failure_action(job, {"wait-for-study": 1}) == "FailJob"
    # 70 a crash, 137 killed (out of memory): a new pod for that index, within its backoff limit.
    assert failure_action(job, {"worker": 70}) == "Count"
    assert failure_action(job, {"worker": 137}) == "Count"
    assert job["spec"]["backoffLimitPerIndex"] >= 1
    # 130: stopped on request (SIGTERM, forwarded as SIGINT), its trial recorded and re-queued; a
    # pod the cluster took away (drain, preemption): neither is counted against the index.
    assert failure_action(job, {"worker": 130}) == "Ignore"
    assert failure_action(job, {"worker": 137}, ("DisruptionTarget",)) == "Ignore"


def test_creating_the_study_fails_on_a_spec_mistake_and_waits_out_the_database():
    job = the("Job", "hpsearch-create-study")
    assert api_server_errors(job) == []
    assert failure_action(job, {"create-study": 2}) == "FailJob"
    # "cannot open storage" (exit 1) is retried: PostgreSQL may still be starting.
    assert failure_action(job, {"create-study": 1}) == "Count"
    assert job["spec"]["backoffLimit"] >= 3


def test_the_policy_checks_catch_what_the_api_server_refuses():
    # failure_action and api_server_errors are themselves right on Jobs Kubernetes would read so.
    job = copy.deepcopy(worker_job(GPU_JOB))
    rules = job["spec"]["podFailurePolicy"]["rules"]
    rules.append(
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "nope", "operator": "In", "values": [3, 0]},
        }
    )
    pod_spec(job)["restartPolicy"] = "OnFailure"
    assert len(api_server_errors(job)) == 4
    job = copy.deepcopy(worker_job(GPU_JOB))
    not_a_crash = {"operator": "NotIn", "values": [70]}
    job["spec"]["podFailurePolicy"]["rules"] = [{"action": "Ignore", "onExitCodes": not_a_crash}]
    assert failure_action(job, {"worker": 1}) == "Ignore"
    assert failure_action(job, {"worker": 70}) == "Count"


# --- the storage URL ------------------------------------------------------------------------------


def test_every_hpsearch_container_gets_the_storage_from_the_secret():
    secret = the("Secret", "hpsearch-storage", "secret.yaml")
    assert set(secret["stringData"]) == {"url", "password"}
    pairs = hpsearch_containers()
    assert {c["name"] for _, c in pairs} == {
        "worker",
        "wait-for-study",
        "create-study",
        "dashboard",
    }
    for workload, c in pairs:
        where = f"{workload['metadata']['name']}/{c['name']}"
        url = env_var(c, "HPSEARCH_STORAGE")
        assert url is not None, where
        assert url["valueFrom"]["secretKeyRef"] == {"name": "hpsearch-storage", "key": "url"}, where
        password = env_var(c, "HPSEARCH_STORAGE_PASSWORD")["valueFrom"]["secretKeyRef"]
        assert (password["name"], password["key"]) == ("hpsearch-storage", "password"), where
        # Optional: with a URL that carries its password, the key may go.
        assert password.get("optional") is True, where
        assert "--storage" not in hpsearch_args(c), where


def test_the_storage_url_and_password_are_on_no_command_line_nor_in_plain_env():
    secret = the("Secret", "hpsearch-storage", "secret.yaml")["stringData"]
    for doc in all_documents():
        if "template" not in doc.get("spec", {}):
            continue
        for c in containers(doc):
            for word in [*c.get("command", []), *c.get("args", [])]:
                # Visible to `ps` and `kubectl get pod -o yaml`: no URL and no password there.
                assert "://" not in word and secret["password"] not in word, (c["name"], word)
            for e in c.get("env", []):
                assert "://" not in e.get("value", ""), (c["name"], e)


def test_the_secrets_url_reaches_the_bundled_postgres():
    secret = the("Secret", "hpsearch-storage", "secret.yaml")["stringData"]
    url = make_url(secret["url"])
    # The password comes apart (HPSEARCH_STORAGE_PASSWORD): a URL holding one too is refused.
    assert url.password is None
    service = the("Service", "hpsearch-postgres", "postgres.yaml")
    database = container(the("StatefulSet", "hpsearch-postgres", "postgres.yaml"), "postgres")
    assert url.get_backend_name() == "postgresql"
    assert url.host == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"]
    assert url.username == env_var(database, "POSTGRES_USER")["value"]
    assert url.database == env_var(database, "POSTGRES_DB")["value"]


# --- the database ---------------------------------------------------------------------------------


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_templates() -> list[tuple[str, dict]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["metadata"].get("labels", {}))
        for doc in all_documents()
        if "template" in doc.get("spec", {})
    ]


def assert_selects_exactly(service: dict, workload: dict) -> None:
    selector = service["spec"]["selector"]
    chosen = [name for name, labels in pod_templates() if selects(selector, labels)]
    # The Service reaches its workload's pods and no other (the workers share some labels).
    assert chosen == [workload["metadata"]["name"]], chosen


def port_number(c: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p.get("name") == port)


def test_postgres_is_a_statefulset_behind_a_headless_service_with_the_secrets_password():
    service = the("Service", "hpsearch-postgres", "postgres.yaml")
    statefulset = the("StatefulSet", "hpsearch-postgres", "postgres.yaml")
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    template_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert selects(statefulset["spec"]["selector"]["matchLabels"], template_labels)
    assert_selects_exactly(service, statefulset)
    postgres = container(statefulset, "postgres")
    assert port_number(postgres, service["spec"]["ports"][0]["targetPort"]) == 5432
    password = env_var(postgres, "POSTGRES_PASSWORD")
    assert "value" not in password
    assert password["valueFrom"]["secretKeyRef"] == {"name": "hpsearch-storage", "key": "password"}
    # Its data is on the volume claim each replica gets, in a folder of it (initdb refuses a
    # volume root that holds lost+found).
    claim = statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    mount = next(m["mountPath"] for m in postgres["volumeMounts"] if m["name"] == claim)
    assert env_var(postgres, "PGDATA")["value"].startswith(mount.rstrip("/") + "/")


# --- the dashboard --------------------------------------------------------------------------------


def test_the_dashboard_service_reaches_the_deployments_pods_inside_the_cluster_only():
    service = the("Service", "hpsearch-dashboard", "dashboard.yaml")
    deployment = the("Deployment", "hpsearch-dashboard", "dashboard.yaml")
    # No login: reached with `kubectl port-forward`, never from outside the cluster.
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert selects(
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"],
    )
    assert_selects_exactly(service, deployment)
    dashboard = container(deployment, "dashboard")
    command, params = parse_hpsearch(hpsearch_args(dashboard))
    assert command == "dashboard"
    assert params["host"] == "0.0.0.0" and params["server"] == "gunicorn"
    # The Service, the container port and the readiness probe all name the port it listens on.
    (port,) = service["spec"]["ports"]
    assert port_number(dashboard, port["targetPort"]) == params["port"]
    probe = dashboard["readinessProbe"]["httpGet"]
    assert port_number(dashboard, probe["port"]) == params["port"]
    assert probe["path"] == "/api/meta"  # optuna-dashboard's, answered without the database


# --- the shared volume ----------------------------------------------------------------------------


@pytest.mark.parametrize("workload", [GPU_JOB, CPU_JOB, "dashboard.yaml"])
def test_workers_and_dashboard_share_the_volume_at_the_images_paths(workload):
    claim = the("PersistentVolumeClaim", "hpsearch-shared", "shared-volume.yaml")
    # Pods on several nodes write it at once.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    doc = next(d for d in documents(workload) if d["kind"] in ("Job", "Deployment"))
    volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
    c = container(doc, "worker" if workload != "dashboard.yaml" else "dashboard")
    mounts = [
        m
        for m in c["volumeMounts"]
        if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName")
        == claim["metadata"]["name"]
    ]
    assert len(mounts) == 1 and not mounts[0].get("readOnly")
    mount = Path(mounts[0]["mountPath"])
    # HPSEARCH_ARTIFACTS and HPSEARCH_CACHE as the container sees them: its env, else the image's.
    image_env = dockerfile_env()
    for name in ("HPSEARCH_ARTIFACTS", "HPSEARCH_CACHE", "HF_HOME"):
        value = (env_var(c, name) or {}).get("value", image_env[name])
        assert Path(value).is_relative_to(mount), (name, value, mount)
    # The image's unprivileged user writes it: the pod's fsGroup is that user's group.
    assert pod_spec(doc)["securityContext"]["fsGroup"] == dockerfile_uid()


def test_every_hpsearch_pod_runs_as_the_images_unprivileged_user():
    workloads = [d for d in all_documents() if d["kind"] in ("Job", "Deployment")]
    hpsearch = [
        d for d in workloads if any(c["image"].startswith("hpsearch") for c in containers(d))
    ]
    assert len(hpsearch) == 4  # create-study, dashboard, the two worker Jobs
    for doc in hpsearch:
        context = pod_spec(doc)["securityContext"]
        # Never root: the Dockerfile's user, which Kubernetes checks is not uid 0 before starting.
        assert context["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert context["runAsUser"] == context["runAsGroup"] == dockerfile_uid() != 0


# --- the scripts in the worker pods, run for real -------------------------------------------------


def run_wait_for_study(
    tmp_path: Path, succeed_on: int | None
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The init container's script with a fake `hpsearch` (fails until call `succeed_on`) and a
    `sleep` that returns at once, on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "hpsearch").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f"n=$(wc -l < {calls})\n"
        f'[ "$n" -eq {succeed_on or 0} ] && exit 0\n'
        'echo "Error: no study" >&2; exit 1\n'
    )
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    init = container(worker_job(GPU_JOB), "wait-for-study")
    result = subprocess.run(
        [*init["command"], *init["args"]],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    return result, calls.read_text().splitlines()


def test_the_init_container_waits_for_the_study(tmp_path):
    result, calls = run_wait_for_study(tmp_path, succeed_on=3)
    # Tried until `hpsearch status --study` succeeds, each failure's reason shown.
    assert result.returncode == 0
    assert calls == [f"status --study {STUDY}"] * 3
    assert result.stderr.count("Error: no study") == 2


def test_the_init_container_gives_up_with_hpsearchs_exit_code(tmp_path):
    result, calls = run_wait_for_study(tmp_path, succeed_on=None)
    # 180 tries, then one more whose exit code (1) fails the Job through the podFailurePolicy.
    assert result.returncode == 1
    assert len(calls) == 181


def running_trials(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database, timeout=30) as db:
        try:
            return db.execute("select count(*) from trials where state = 'RUNNING'").fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0


@pytest.mark.slow
def test_sigterm_to_a_real_worker_pod_records_its_trial_as_interrupted(
    workdir, tiny_spec, cache_dir
):
    import optuna

    from hpsearch.study import FAIL_REASON_ATTR, INTERRUPTED

    # Long enough a trial (about 125 steps) that the signal lands in the middle of training.
    tiny_spec["dataset"]["max_train_samples"] = 2000
    write_spec(workdir, "stop", tiny_spec)
    created = run_hpsearch("create", "--study", "stop", cwd=workdir)
    assert created.returncode == 0, created.stderr
    database = workdir / "storage" / "hpsearch.db"
    # The pod's command, with this Python's hpsearch for the image's, as PID 1 of a new PID
    # namespace (as in a container): the kernel spares it every signal it has no handler for.
    pod = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            sys.executable,
            "-m",
            "hpsearch.cli",
            "worker",
            "--study",
            "stop",
        ],
        cwd=workdir,
        env={**os.environ, "HPSEARCH_CACHE": str(cache_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while running_trials(database) == 0:
        assert pod.poll() is None and time.monotonic() < deadline, pod.communicate()
        time.sleep(0.2)
    time.sleep(2.0)  # into the training loop
    # The kubelet signals the container's PID 1: unshare's child, not unshare.
    init = int(Path(f"/proc/{pod.pid}/task/{pod.pid}/children").read_text().split()[0])
    os.kill(init, signal.SIGTERM)
    _, stderr = pod.communicate(timeout=120)
    # The pod ends with 130 (not counted by the podFailurePolicy); its trial is FAIL 'interrupted'
    # with a copy waiting for the other workers, not RUNNING until its heartbeat goes stale.
    assert pod.returncode == 130, stderr
    study = optuna.load_study(
        study_name="stop", storage=optuna.storages.RDBStorage(f"sqlite:///{database}")
    )
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs[FAIL_REASON_ATTR] == INTERRUPTED
