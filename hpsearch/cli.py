"""The `hpsearch` command: the only module that prints or exits.

Errors become one `Error: ...` line here, at the boundary: an HpsearchError with its exit code, a
database's refusal with its reason; anything else is a bug, shown with its traceback and exit code
70 (hpsearch.errors.ExitCode, which supervisors decide on). Heavy libraries (torch, transformers)
are imported only by the commands that train, so `--help` and the read-only commands start fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console

from hpsearch import __version__
from hpsearch.errors import ExitCode, HpsearchError

DEBUG_ENV = "HPSEARCH_DEBUG"
STUDIES_DIR = Path("studies")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpsearch")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV, help="Show tracebacks for errors too.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Hyperparameter search for fine-tuning Hugging Face transformers models."""
    ctx.obj = {"debug": debug}


def worker_options(command):
    command = click.option("--gpus-per-trial", type=click.IntRange(min=1, max=64), metavar="N",
                           help="Train each trial as N data-parallel processes (DDP), one per GPU; "
                                "overrides resources.gpus_per_trial.")(command)
    command = click.option("--workers", type=click.IntRange(min=1), metavar="N",
                           help="Run N worker processes on CPU, splitting the cores between them.")(command)
    return click.option("--gpus", metavar="all|0,2,3",
                        help="Run one worker process per GPU, each pinned with CUDA_VISIBLE_DEVICES.")(command)


def storage_option(command):
    return click.option("--storage", metavar="URL",
                        help="Database URL [env HPSEARCH_STORAGE; default sqlite:///storage/hpsearch.db].")(command)


def open_storage_flag(flag: str | None, *, must_exist: bool):
    """The storage a command works on, from --storage, HPSEARCH_STORAGE or the default: (URL,
    opened storage). `must_exist` for commands that read or join a study: they create no database."""
    from hpsearch.storage import open_storage, resolve_storage_url

    url = resolve_storage_url(flag)
    return url, open_storage(url, must_exist=must_exist)


@cli.command()
@click.option("--study", "study_ref", required=True, metavar="NAME|PATH",
              help="A spec name (studies/NAME.yaml) or the path of a spec file.")
@storage_option
@click.option("--study-name", metavar="NAME", help="Name of the study in the storage [default: the spec's file name].")
@click.option("--n-trials", type=click.IntRange(min=1), help="Study-wide trial budget; overrides budget.n_trials.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Start no new trial after this many seconds; overrides budget.timeout.")
@worker_options
def run(study_ref: str, storage: str | None, study_name: str | None, n_trials: int | None,
        timeout: float | None, gpus: str | None, workers: int | None, gpus_per_trial: int | None) -> None:
    """Create a study from its spec (or resume it) and run trials until its budget is spent."""
    from hpsearch.study import check_resumable

    spec, name = _load_run_spec(study_ref, study_name, n_trials, timeout)
    url, rdb = open_storage_flag(storage, must_exist=False)
    spent = check_resumable(rdb, name, spec)
    _search(url, rdb, name, spec, spent, gpus, workers, gpus_per_trial, supervised=False)


@cli.command()
@click.option("--study", "study_ref", required=True, metavar="NAME|PATH",
              help="A spec name (studies/NAME.yaml) or the path of a spec file.")
@storage_option
@click.option("--study-name", metavar="NAME", help="Name of the study in the storage [default: the spec's file name].")
@click.option("--n-trials", type=click.IntRange(min=1), help="Study-wide trial budget; overrides budget.n_trials.")
def create(study_ref: str, storage: str | None, study_name: str | None, n_trials: int | None) -> None:
    """Create a study from its spec (or check an existing one) and run no trial: for workers started
    elsewhere (SLURM, Kubernetes) to join with `hpsearch worker`."""
    from hpsearch.storage import redact
    from hpsearch.study import n_spent, open_study

    spec, name = _load_run_spec(study_ref, study_name, n_trials, None)
    url, rdb = open_storage_flag(storage, must_exist=False)
    study, changes = open_study(rdb, name, spec)
    for change in changes:
        console.print(f"stored spec updated: {change}")
    spent = n_spent(study.get_trials(deepcopy=False))
    console.print(f"study [bold]{name}[/] in {redact(url)}: {spent}/{spec.budget.n_trials} trials spent; "
                  f"workers join it with: hpsearch worker --study {name}")


def _load_run_spec(study_ref: str, study_name: str | None, n_trials: int | None, timeout: float | None):
    """The spec a `run` or `create` names, with the budget flags applied and checked before any write:
    (spec, the study's name in the storage)."""
    from hpsearch.spec import check_sources, find_spec_file, load_spec_file

    spec_path = find_spec_file(study_ref, STUDIES_DIR)
    spec = load_spec_file(spec_path)
    overrides = {k: v for k, v in (("n_trials", n_trials), ("timeout", timeout)) if v is not None}
    if overrides:
        spec = spec.model_copy(update={"budget": spec.budget.model_copy(update=overrides)})
    check_sources(spec)
    _check_training_args(spec)
    return spec, study_name or spec_path.stem


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME", help="The study's name in the storage.")
@storage_option
@worker_options
@click.option("--supervised", is_flag=True, hidden=True, help="Started by a supervisor: print no progress.")
def worker(name: str, storage: str | None, gpus: str | None, workers: int | None, gpus_per_trial: int | None,
           supervised: bool) -> None:
    """Join an existing study from any machine: its spec comes from the storage."""
    from hpsearch.spec import check_sources
    from hpsearch.study import n_spent, stored_spec
    from hpsearch.workers import WORKER_KEY_ENV

    url, rdb = open_storage_flag(storage, must_exist=True)
    spec = stored_spec(rdb, name)
    check_sources(spec)  # the model and data must be reachable from this machine too
    _check_training_args(spec)
    spent = n_spent(rdb.get_all_trials(rdb.get_study_id_from_name(name), deepcopy=False))
    if supervised:
        # The supervisor stops its workers with SIGINT. A process started with SIGINT ignored (under
        # nohup, as a background job) passes that on, and Python would then never raise
        # KeyboardInterrupt: the trial would not end as 'interrupted' and the worker would not stop.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # A worker joins others: its supervisor names its slot, else its host and process do.
    key = os.environ.get(WORKER_KEY_ENV) if supervised else None
    key = key or f"{socket.gethostname()}:{os.getpid()}"
    _search(url, rdb, name, spec, spent, gpus, workers, gpus_per_trial, supervised=supervised, worker_key=key)


def _check_training_args(spec) -> None:
    """TrainingArguments accepts every value of the spec (imports transformers: training commands only)."""
    from hpsearch.trial import check_training_args

    check_training_args(spec)


def _search(url, rdb, name: str, spec, spent: int, gpus: str | None, workers: int | None,
            gpus_per_trial: int | None, supervised: bool, worker_key: str | None = None) -> None:
    """Run the study's missing trials here: in this process, in a group of rank processes (one per
    device of a trial), or in supervised worker processes.

    `worker_key` names this process among the study's workers (None: the only one); its sampler
    seed is derived from it, so that workers do not all suggest the same parameters.
    """
    from hpsearch.spec import check_trial_group
    from hpsearch.storage import apply_heartbeat, redact
    from hpsearch.study import n_spent, open_study

    budget = spec.budget.n_trials
    if not supervised:
        console.print(f"study [bold]{name}[/] in {redact(url)}: {spent}/{budget} trials spent")
    if spent >= budget:
        study, _ = open_study(rdb, name, spec)
        if not supervised:
            _print_summary(study, spec)
            console.print(f"study {name!r} has spent its budget of {budget} trials; raise it with --n-trials to run more")
        return
    apply_heartbeat(rdb, spec.heartbeat)
    per_trial = gpus_per_trial or spec.resources.gpus_per_trial
    check_trial_group(spec, per_trial)
    in_process = gpus is None and (workers or 1) == 1
    # A bad --gpus or --gpus-per-trial fails before any write.
    slots = None if in_process else _plan_slots(gpus, workers, per_trial)
    in_group = in_process and per_trial is not None
    if in_group:
        _pin_group_devices(per_trial)
    if in_process and not in_group:
        from hpsearch.workers import build_runner

        with console.status("loading model and data (tokenized once, then cached)"):
            runner = build_runner(spec, url, name)
    else:
        from hpsearch.workers import warm_cache

        with console.status("tokenizing the data once for all workers"):
            warm_cache(spec)
    study, changes = open_study(rdb, name, spec, worker_key)
    for change in changes:
        console.print(f"stored spec updated: {change}")
    try:
        if in_group:
            _run_group(study, url, name, spec, per_trial, worker_key, supervised)
        elif in_process:
            _run_here(study, runner, url, name, spec, supervised)
        else:
            _run_supervised(study, url, name, spec, slots, per_trial)
    except KeyboardInterrupt:
        if not supervised:
            console.print("[yellow]interrupted[/]: running trials end FAIL (interrupted) and are re-run "
                          "when the study resumes")
            _print_summary(study, spec)
        sys.exit(ExitCode.INTERRUPTED)
    if supervised:
        return
    _print_summary(study, spec)
    left = budget - n_spent(study.get_trials(deepcopy=False))
    if left > 0:
        console.print(f"timeout reached with {left} trials of the budget left; run the same command to resume")


def _run_here(study, runner, url, name: str, spec, supervised: bool, timeout: float | None = None) -> None:
    """The worker loop in this process; `timeout` (default: the spec's) stops starting trials."""
    from hpsearch.storage import StudyLock
    from hpsearch.views import NoteWriter, RunProgress, register_worker
    from hpsearch.workers import run_trials

    lock = StudyLock(url, name)
    budget = spec.budget.n_trials
    timeout = spec.budget.timeout if timeout is None else timeout
    register_worker(study, runner.device, spec.objective.eval_key)
    note = NoteWriter(study, spec)
    note(force=True)
    try:
        if supervised:
            run_trials(study, runner, budget, timeout, lock, note)
            return
        with RunProgress(console, study, spec.objective.eval_key, budget) as progress:
            def after_trial(study, trial) -> None:
                progress.on_trial_end(study, trial)
                note(study, trial)

            run_trials(study, runner, budget, timeout, lock, after_trial)
    finally:
        note(force=True)


def _plan_slots(gpus: str | None, workers: int | None, per_trial: int | None):
    from hpsearch.workers import plan_slots

    n_gpus = 0
    if gpus:
        from hpsearch.trial import count_gpus

        n_gpus = count_gpus()
    return plan_slots(gpus, workers, n_gpus, os.cpu_count() or 1, os.environ.get("CUDA_VISIBLE_DEVICES"), per_trial)


def _pin_group_devices(per_trial: int) -> None:
    """The devices this process's trial group trains on: its first `per_trial` GPUs, or the CPU
    cores split between the ranks on a machine without GPUs."""
    from hpsearch.trial import count_gpus
    from hpsearch.workers import THREADS_ENV

    n_gpus = count_gpus()
    if n_gpus == 0:
        threads = os.environ.get(THREADS_ENV) or str(max(1, (os.cpu_count() or 1) // per_trial))
        os.environ.update({THREADS_ENV: threads, "OMP_NUM_THREADS": threads})
        return
    if n_gpus < per_trial:
        raise HpsearchError(f"--gpus-per-trial {per_trial}: this machine shows {n_gpus} GPU"
                            f"{'s' if n_gpus > 1 else ''}; ask for at most {n_gpus}")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = visible.split(",") if visible else [str(i) for i in range(n_gpus)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(physical[:per_trial])
    if n_gpus > per_trial:
        console.print(f"training on GPUs {','.join(physical[:per_trial])} of {n_gpus}; "
                      f"--gpus all --gpus-per-trial {per_trial} runs a group on each {per_trial}")


def _run_group(study, url, name: str, spec, per_trial: int, worker_key: str | None, supervised: bool) -> None:
    """This worker's trials, each on `per_trial` rank processes (hpsearch.workers.group)."""
    from hpsearch.workers import run_group

    rank_args = ["--study", name, *(["--supervised"] if supervised else []),
                 *(["--worker-key", worker_key] if worker_key else [])]
    key = worker_key or f"{socket.gethostname()}:{os.getpid()}"  # the group's name in its trials' records
    run_group(study, per_trial, key, rank_args, url.render_as_string(hide_password=False), spec.budget.timeout,
              report=console.print)


@cli.command("trial-rank", hidden=True)
@click.option("--study", "name", required=True, metavar="NAME")
@click.option("--timeout", type=float, help="Start no new trial after this many seconds (the group's deadline).")
@click.option("--supervised", is_flag=True, help="Print no progress.")
@click.option("--worker-key", help="The worker's name among the study's: its sampler seed.")
def trial_rank(name: str, timeout: float | None, supervised: bool, worker_key: str | None) -> None:
    """One process of a trial group, started by a worker with --gpus-per-trial (never by hand)."""
    from hpsearch.study import stored_spec
    from hpsearch.trial.distributed import GroupBroken
    from hpsearch.workers import run_rank, write_rank_reason

    # The agent forwards the worker's Ctrl-C, and a terminal sends its own: one interrupt, once.
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        url, rdb = open_storage_flag(None, must_exist=True)
        spec = stored_spec(rdb, name)

        def lead(study, runner) -> None:
            _run_here(study, runner, url, name, spec, supervised, timeout)

        run_rank(spec, url, rdb, name, worker_key, lead)
    except GroupBroken as e:
        err_console.print(f"Error: {e}")
        sys.exit(ExitCode.CRASH)
    except HpsearchError as e:
        write_rank_reason(e.message)  # the worker's own error line names it
        raise


def _interrupt_once(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _run_supervised(study, url, name: str, spec, slots, per_trial: int | None = None) -> None:
    from hpsearch.storage import STORAGE_ENV
    from hpsearch.views import RunProgress, write_note
    from hpsearch.workers import Supervisor

    console.print(f"starting {len(slots)} workers: {', '.join(s.label for s in slots)}")
    args = ["worker", "--study", name, "--supervised", *(["--gpus-per-trial", str(per_trial)] if per_trial else [])]
    # The URL travels in the environment: a command line (with its password) is visible to `ps`.
    env = {STORAGE_ENV: url.render_as_string(hide_password=False)}
    with RunProgress(console, study, spec.objective.eval_key, spec.budget.n_trials) as progress:
        Supervisor(slots, args, env, Path("storage/logs") / name, report=console.print, on_poll=progress.poll).run()
    write_note(study, spec)  # the workers' last notes may predate their last trials


@cli.command()
@click.option("--study", "name", metavar="NAME", help="Open this study's page (all studies are browsable).")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; anything but loopback is reachable by others.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--server", type=click.Choice(["threaded", "gunicorn"]), default="threaded", show_default=True,
              help="threaded: the standard library's server, a thread per request; gunicorn: a production server.")
def dashboard(name: str | None, storage: str | None, host: str, port: int, server: str) -> None:
    """Serve optuna-dashboard on the storage, with the best models and trial files browsable."""
    from hpsearch.storage import artifact_dir, open_artifact_store, redact
    from hpsearch.study import stored_spec
    from hpsearch.views import LOOPBACK, make_app, serve

    # With a study named, nothing is created; without, the dashboard may wait for a first run.
    url, rdb = open_storage_flag(storage, must_exist=name is not None)
    page = "dashboard/"
    if name:
        stored_spec(rdb, name)  # an unknown study is an error here, not an empty page later
        page += f"studies/{rdb.get_study_id_from_name(name)}"
    if host not in LOOPBACK:
        err_console.print(f"[yellow]warning[/]: binding {host}: anyone who reaches this machine on port "
                          f"{port} can read and change these studies (the dashboard has no login)")
    app = make_app(rdb, open_artifact_store(artifact_dir(url), create=name is None))
    shown_host = f"[{host}]" if ":" in host else host
    console.print(f"optuna-dashboard on {redact(url)}: http://{shown_host}:{port}/{page}  (Ctrl-C stops it)")
    try:
        serve(app, host, port, server)
    except OSError as e:
        raise HpsearchError(f"cannot listen on {host}:{port}: {e.strerror}; pick another --port") from None
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option("--study", "name", metavar="NAME", help="One study in detail; default: every study, one line each.")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(name: str | None, storage: str | None, as_json: bool) -> None:
    """Trials by state, best value, running trials with their heartbeats, compute spent and saved."""
    from hpsearch.study import Confidence, StudySummary
    from hpsearch.views import (
        all_studies,
        final_trainings_table,
        running_table,
        studies_table,
        study_status,
        summary_table,
    )

    _, rdb = open_storage_flag(storage, must_exist=True)
    data = study_status(rdb, name) if name else all_studies(rdb)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    if not name:
        console.print(studies_table(data) if data else "the storage holds no study")
        return
    summary = StudySummary(**{f.name: data[f.name] for f in dataclasses.fields(StudySummary)})
    if summary.best_confidence is not None:  # back from the dict the JSON view shows
        summary = dataclasses.replace(summary, best_confidence=Confidence(**summary.best_confidence))
    console.print(summary_table(summary))
    console.print(running_table(data["running"]) if data["running"] else "no trial is running")
    if data["final_trainings"]:
        console.print(final_trainings_table(data["final_trainings"]))


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def best(name: str, storage: str | None, as_json: bool) -> None:
    """The best trial: its value, parameters and metrics."""
    from hpsearch.views import best_table, best_trial

    _, rdb = open_storage_flag(storage, must_exist=True)
    data = best_trial(rdb, name)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(best_table(data))


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME")
@storage_option
@click.option("--adapter", "adapter_only", is_flag=True,
              help="Of a LoRA study: write the adapter and head alone (megabytes), not merged weights.")
@click.option("--quantize", type=click.Choice(["int8"]),
              help="Also write OUT_DIR/int8/: the linear layers dynamically quantized to int8 (classifiers).")
@click.option("--onnx", is_flag=True, help="Also write OUT_DIR/onnx/: the model as ONNX, for ONNX Runtime (classifiers).")
@click.argument("out_dir", type=click.Path(path_type=Path))
def export(name: str, storage: str | None, adapter_only: bool, quantize: str | None, onnx: bool, out_dir: Path) -> None:
    """Write the best model, tokenizer, label names and a model card to OUT_DIR, ready for pipeline().

    A LoRA study's adapter is merged into the weights (--adapter: written alone). With --quantize
    int8 and/or --onnx, also its deployable forms, each measured against the fp32 model (file size,
    CPU latency per example, the objective on the study's eval set) in the card.
    """
    from hpsearch.storage import artifact_dir, open_artifact_store
    from hpsearch.study import stored_spec
    from hpsearch.tasks import get_task
    from hpsearch.views import ADAPTER_CONFIG, export_best_model

    def finish(model_dir: Path, spec) -> None:
        # A LoRA adapter is merged into the pretrained weights (torch and peft: imported only here).
        if (model_dir / ADAPTER_CONFIG).is_file() or adapter_only:
            from hpsearch.trial.lora import make_deployable

            make_deployable(model_dir, spec, adapter_only)

    url, rdb = open_storage_flag(storage, must_exist=True)
    deployable = bool(quantize or onnx)
    if deployable and adapter_only:
        raise HpsearchError("--adapter writes the LoRA adapter alone; --quantize and --onnx convert the merged "
                            "model: export one or the other")
    if deployable:
        from hpsearch.deploy import check_deployable

        # An unknown study, a task without these forms or a missing package: one line, nothing written.
        spec = stored_spec(rdb, name)
        check_deployable(spec, name, onnx=onnx)
    store = open_artifact_store(artifact_dir(url), create=False)
    if deployable:
        from hpsearch.deploy import export_deployable
        from hpsearch.trial import cache_dir, quiet_libraries

        quiet_libraries()
        with console.status("exporting, then measuring each form on the study's eval set"):
            exported, result = export_deployable(rdb, name, store, out_dir, quantize=quantize, onnx=onnx,
                                                 cache_dir=cache_dir(), finish=finish)
    else:
        exported = export_best_model(rdb, name, store, out_dir, finish)
    console.print(f"exported trial {exported['number']} ({exported['metric']} {exported['value']:.4f}) to {out_dir}")
    task = get_task(exported["task"])
    console.print(f"load it with:\n{task.usage(out_dir)}", markup=False)
    if deployable:
        _print_deployment(task, out_dir, result)


def _print_deployment(task, out_dir: Path, result: dict) -> None:
    from hpsearch.deploy import (
        INT8_DIR,
        ONNX_DIR,
        Measurement,
        deployment_table,
        usage_int8,
        usage_onnx,
    )

    measurements = [Measurement(**m) for m in result["forms"]]
    console.print(deployment_table(measurements, result["conditions"]))
    forms = {m.form for m in measurements}
    if "int8" in forms:
        console.print(f"load the int8 form with:\n{usage_int8(task, out_dir / INT8_DIR)}", markup=False)
    if "onnx" in forms:
        console.print(f"run the ONNX form with:\n{usage_onnx(task, out_dir / ONNX_DIR)}", markup=False)


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME", help="The study's name in the storage.")
@storage_option
@click.option("--trial", "number", type=click.IntRange(min=0), metavar="N",
              help="Train trial N's configuration (a COMPLETE or PRUNED trial) [default: the best trial].")
@click.option("--full-data", is_flag=True,
              help="Train on all the training data, without dataset.max_train_samples (the eval set stays the search's).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), metavar="E",
              help="Train for E epochs instead of the trial's num_train_epochs.")
@click.argument("out_dir", type=click.Path(path_type=Path))
def train(name: str, storage: str | None, number: int | None, full_data: bool, epochs: float | None,
          out_dir: Path) -> None:
    """Train a trial's configuration and seed again (on all the data with --full-data), evaluate it and
    write the model, tokenizer, label names and a model card to OUT_DIR, ready for pipeline()."""
    import optuna

    from hpsearch.spec import check_sources
    from hpsearch.storage import StudyLock
    from hpsearch.study import (
        FINAL_LOCK_PURPOSE,
        plan_final_training,
        record_final_training,
        stored_spec,
    )
    from hpsearch.tasks import get_task
    from hpsearch.views import check_new_directory, describe_epochs, write_note

    url, rdb = open_storage_flag(storage, must_exist=True)
    spec = stored_spec(rdb, name)
    study = optuna.load_study(study_name=name, storage=rdb)
    plan = plan_final_training(study, spec, number, full_data=full_data, epochs=epochs)
    check_new_directory(out_dir)  # before minutes of training, not after
    check_sources(plan.spec)  # the model and data must be reachable from this machine
    _check_training_args(plan.spec)
    record = _train_final(study, spec, plan, out_dir)
    # Recorded once the directory is complete: a failed training leaves neither.
    record_final_training(study, StudyLock(url, name, FINAL_LOCK_PURPOSE), record)
    write_note(study, spec)
    recorded = "" if plan.trial_value is None else f" (the trial recorded {plan.trial_value:.4f})"
    console.print(f"trained trial {plan.trial} on {record['n_train_examples']} examples for "
                  f"{describe_epochs(record['epochs'])}: {record['metric']} {record['value']:.4f}{recorded}; "
                  f"wrote {out_dir}")
    console.print(f"load it with:\n{get_task(spec.task).usage(out_dir)}")


FINAL_RECORD_FILE = "hpsearch-final-training.json"


def _train_final(study, spec, plan, out_dir: Path) -> dict:
    """Train `plan` with a live display of its steps and evaluations; the model, its card and its
    record in OUT_DIR, all or nothing. Returns the record."""
    import datetime

    from hpsearch.trial import final_record, load_for_training, quiet_libraries, train_final
    from hpsearch.views import TrainingProgress, final_model_card, staged_directory

    quiet_libraries()
    with console.status("loading model and data (tokenized once, then cached)"):
        loaded = load_for_training(plan.spec)
    data = "all the training data" if plan.full_data else "the search's data"
    console.print(f"training trial {plan.trial}'s configuration (seed {plan.seed}) on {data}: "
                  f"{len(loaded.data.train)} training examples, {len(loaded.data.eval)} eval examples")
    with staged_directory(out_dir) as staging:
        with TrainingProgress(console, f"trial {plan.trial}", spec.objective.eval_key, plan.trial_value) as progress:
            result = train_final(plan, loaded, staging, progress)
        record = final_record(
            plan, result, out_dir=str(out_dir.resolve()), host=socket.gethostname(),
            finished_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        (staging / "README.md").write_text(final_model_card(study, spec, plan, record))
        (staging / FINAL_RECORD_FILE).write_text(json.dumps(record, indent=2))
    return record


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME")
@storage_option
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder for the PNGs and report.html.")
def report(name: str, storage: str | None, out_dir: Path) -> None:
    """Plots of the study as PNG files and one self-contained HTML page."""
    import optuna

    from hpsearch.study import stored_spec
    from hpsearch.views import write_report

    _, rdb = open_storage_flag(storage, must_exist=True)
    spec = stored_spec(rdb, name)
    outcome = write_report(optuna.load_study(study_name=name, storage=rdb), spec, out_dir)
    for plot, result in outcome.items():
        console.print(f"{plot}: {result}")
    console.print(f"open {out_dir / 'report.html'} (no network needed)")


def _print_summary(study, spec) -> None:
    from hpsearch.storage import best_model_pointer
    from hpsearch.study import summarize
    from hpsearch.views import summary_table

    console.print(summary_table(summarize(study, spec)))
    pointer = best_model_pointer(study)
    if pointer:
        console.print(f"best model: artifact {pointer['artifact_id']} of trial {pointer['trial']}")


def main() -> None:
    debug = os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes") or "--debug" in sys.argv[1:2]
    try:
        cli.main(standalone_mode=False)
    except HpsearchError as e:
        _fail(e.message, e.exit_code, debug)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as e:  # a usage error: click's own message, exit 2
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as e:  # noqa: BLE001 - the boundary: a database's refusal is one line, the rest a bug
        from hpsearch.storage import describe_storage_error

        refusal = describe_storage_error(e)
        if refusal is None:
            traceback.print_exc()
            sys.exit(ExitCode.CRASH)
        _fail(refusal, ExitCode.USER_ERROR, debug)


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
