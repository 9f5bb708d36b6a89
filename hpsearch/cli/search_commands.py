"""The commands that run a study's trials: `run`, `create`, `worker`, and `trial-rank` (one process
of a trial group, started by a worker); here a worker runs in this process, in a group of rank
processes, or as supervised worker processes (hpsearch.workers.place_workers decides which: on a
host with several GPUs, one worker per GPU unless told otherwise)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import click

from hpsearch.cli.app import (
    STUDIES_DIR,
    check_training_args,
    cli,
    console,
    open_storage_flag,
    storage_option,
    worker_options,
)
from hpsearch.errors import ExitCode, HpsearchError, TrialBug


@cli.command()
@click.option(
    "--study",
    "study_ref",
    required=True,
    metavar="NAME|PATH",
    help="A spec name (studies/NAME.yaml) or the path of a spec file.",
)
@storage_option
@click.option(
    "--study-name",
    metavar="NAME",
    help="Name of the study in the storage [default: the spec's file name].",
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    help="Study-wide trial budget; overrides budget.n_trials.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Start no new trial after this many seconds: this run's deadline, never stored "
    "(overrides budget.timeout for this run only).",
)
@worker_options
def run(
    study_ref: str,
    storage: str | None,
    study_name: str | None,
    n_trials: int | None,
    timeout: float | None,
    gpus: str | None,
    workers: int | None,
    gpus_per_trial: int | None,
) -> None:
    """Create a study from its spec (or resume it) and run trials until its budget is spent."""
    from hpsearch.study import check_resumable

    spec, name = _load_run_spec(study_ref, study_name, n_trials)
    url, rdb = open_storage_flag(storage, must_exist=False)
    spent = check_resumable(rdb, name, spec)
    _search(
        url,
        rdb,
        name,
        spec,
        spent,
        gpus,
        workers,
        gpus_per_trial,
        supervised=False,
        timeout=timeout,
    )


@cli.command()
@click.option(
    "--study",
    "study_ref",
    required=True,
    metavar="NAME|PATH",
    help="A spec name (studies/NAME.yaml) or the path of a spec file.",
)
@storage_option
@click.option(
    "--study-name",
    metavar="NAME",
    help="Name of the study in the storage [default: the spec's file name].",
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    help="Study-wide trial budget; overrides budget.n_trials.",
)
def create(
    study_ref: str, storage: str | None, study_name: str | None, n_trials: int | None
) -> None:
    """Create a study from its spec (or check an existing one) and run no trial: for workers started
    elsewhere (SLURM, Kubernetes) to join with `hpsearch worker`."""
    from hpsearch.storage import redact
    from hpsearch.study import n_spent, open_study

    spec, name = _load_run_spec(study_ref, study_name, n_trials)
    url, rdb = open_storage_flag(storage, must_exist=False)
    study, changes = open_study(rdb, name, spec)
    for change in changes:
        console.print(f"stored spec updated: {change}")
    spent = n_spent(study.get_trials(deepcopy=False))
    console.print(
        f"study [bold]{name}[/] in {redact(url)}: {spent}/{spec.budget.n_trials} trials spent; "
        f"workers join it with: hpsearch worker --study {name}"
    )


def _load_run_spec(study_ref: str, study_name: str | None, n_trials: int | None):
    """The spec a `run` or `create` names, with --n-trials applied and checked before any write:
    (spec, the study's name in the storage). --n-trials is the study's budget and is stored with
    it; --timeout is one run's deadline and stays out of the spec (a worker that joins later must
    not inherit it)."""
    from hpsearch.spec import check_sources, find_spec_file, load_spec_file

    spec_path = find_spec_file(study_ref, STUDIES_DIR)
    spec = load_spec_file(spec_path)
    if n_trials is not None:
        spec = spec.model_copy(
            update={"budget": spec.budget.model_copy(update={"n_trials": n_trials})}
        )
    check_sources(spec)
    check_training_args(spec)
    return spec, study_name or spec_path.stem


@cli.command()
@click.option(
    "--study", "name", required=True, metavar="NAME", help="The study's name in the storage."
)
@storage_option
@worker_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Start no new trial after this many seconds [default: the stored budget.timeout].",
)
@click.option(
    "--supervised", is_flag=True, hidden=True, help="Started by a supervisor: print no progress."
)
def worker(
    name: str,
    storage: str | None,
    gpus: str | None,
    workers: int | None,
    gpus_per_trial: int | None,
    timeout: float | None,
    supervised: bool,
) -> None:
    """Join an existing study from any machine: its spec comes from the storage."""
    from hpsearch.spec import check_sources
    from hpsearch.study import n_spent, stored_spec
    from hpsearch.workers import WORKER_KEY_ENV

    url, rdb = open_storage_flag(storage, must_exist=True)
    spec = stored_spec(rdb, name)
    check_sources(spec)  # the model and data must be reachable from this machine too
    check_training_args(spec)
    spent = n_spent(rdb.get_all_trials(rdb.get_study_id_from_name(name), deepcopy=False))
    # A worker joins others: its supervisor names its slot, else its host and process do (the name
    # of its trial group, if it runs one).
    key = os.environ.get(WORKER_KEY_ENV) if supervised else None
    key = key or f"{socket.gethostname()}:{os.getpid()}"
    _search(
        url,
        rdb,
        name,
        spec,
        spent,
        gpus,
        workers,
        gpus_per_trial,
        supervised=supervised,
        worker_key=key,
        timeout=timeout,
    )


def _search(
    url,
    rdb,
    name: str,
    spec,
    spent: int,
    gpus: str | None,
    workers: int | None,
    gpus_per_trial: int | None,
    supervised: bool,
    worker_key: str | None = None,
    timeout: float | None = None,
) -> None:
    """Run the study's missing trials here: in this process, in a group of rank processes (one per
    device of a trial), or in supervised worker processes.

    `worker_key` names this process among the study's workers (None: the only one). The process
    that samples here (this one, else each worker or rank 0 of each group) takes a start number
    from the storage and seeds its sampler with it (study/algorithms.py seed_sampler).
    `timeout`: this run's deadline in seconds (default: the spec's budget.timeout), after which no
    trial starts.
    """
    from hpsearch.spec import check_trial_group
    from hpsearch.storage import apply_heartbeat, redact
    from hpsearch.study import n_spent, open_study, seed_sampler

    if supervised:
        # The supervisor stops its workers with SIGINT. A process started with SIGINT ignored (under
        # nohup, as a background job) passes that on, and Python would then never raise
        # KeyboardInterrupt: the trial would not end as 'interrupted' and the worker would not stop.
        # One interrupt, once: a SIGTERM sent to every process of a job (SLURM's scancel signals the
        # whole step) and the supervisor's SIGINT that follows must not cut the recording short.
        _interrupt_once(signal.SIGINT, signal.SIGTERM)
    else:
        # SIGTERM stops a search as Ctrl-C does; a second Ctrl-C still interrupts the first's
        # recording (a user's way out), a second SIGTERM does not.
        _interrupt_once(signal.SIGTERM)
    budget = spec.budget.n_trials
    if not supervised:
        console.print(f"study [bold]{name}[/] in {redact(url)}: {spent}/{budget} trials spent")
    if spent >= budget:
        study, changes = open_study(rdb, name, spec)
        if not supervised:
            for change in changes:
                console.print(f"stored spec updated: {change}")
            _print_summary(study, spec)
            console.print(
                f"study {name!r} has spent its budget of {budget} trials; raise it with --n-trials "
                "to run more"
            )
        return
    apply_heartbeat(rdb, spec.heartbeat)
    per_trial = gpus_per_trial or spec.resources.gpus_per_trial
    check_trial_group(spec, per_trial)
    # A bad --gpus or --gpus-per-trial fails before any write.
    placement, n_visible_gpus = _place(gpus, workers, per_trial, supervised)
    if placement.notice and not supervised:
        console.print(placement.notice, markup=False)
    if placement.devices is not None:  # before CUDA starts: this process then sees only these
        os.environ["CUDA_VISIBLE_DEVICES"] = placement.devices
    in_process = placement.mode == "alone"
    in_group = placement.mode == "group"
    if in_group and (n_visible_gpus == 0 or placement.devices == ""):
        _share_cores(per_trial)
    if in_process:
        from hpsearch.workers import build_runner

        with console.status("loading model and data (tokenized once, then cached)"):
            runner = build_runner(spec, url, name)
    else:
        from hpsearch.workers import warm_cache

        with console.status("tokenizing the data once for all workers"):
            warm_cache(spec)
    study, changes = open_study(rdb, name, spec)
    for change in changes:
        console.print(f"stored spec updated: {change}")
    timeout = spec.budget.timeout if timeout is None else timeout
    if in_process:
        runner.sampler_start = seed_sampler(study, spec.sampler)
    try:
        if in_group:
            _run_group(study, url, name, per_trial, worker_key, supervised, timeout)
        elif in_process:
            _run_here(study, runner, url, name, spec, supervised, timeout)
        else:
            _run_supervised(study, url, name, spec, placement.slots, per_trial, timeout)
    except KeyboardInterrupt:
        if not supervised:
            console.print(
                "[yellow]interrupted[/]: running trials end FAIL (interrupted) and are re-run "
                "when the study resumes"
            )
            _print_summary(study, spec)
        sys.exit(ExitCode.INTERRUPTED)
    if supervised:
        return
    _print_summary(study, spec)
    left = budget - n_spent(study.get_trials(deepcopy=False))
    if left > 0:
        console.print(
            f"timeout reached with {left} trials of the budget left; run the same command to resume"
        )


def _run_here(study, runner, url, name: str, spec, supervised: bool, timeout: float | None) -> None:
    """The worker loop in this process; after `timeout` seconds it starts no trial."""
    from hpsearch.storage import StudyLock
    from hpsearch.views import NoteWriter, RunProgress, register_worker
    from hpsearch.workers import run_trials

    lock = StudyLock(url, name)
    budget = spec.budget.n_trials
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


def _place(gpus: str | None, workers: int | None, per_trial: int | None, supervised: bool):
    """Where this run's or worker's trials train (hpsearch.workers.place_workers), from the flags
    and the GPUs this process sees: (placement, GPUs seen)."""
    from hpsearch.trial import count_gpus
    from hpsearch.workers import place_workers

    n_visible_gpus = count_gpus()
    placement = place_workers(
        gpus,
        workers,
        per_trial,
        n_visible_gpus,
        os.cpu_count() or 1,
        os.environ.get("CUDA_VISIBLE_DEVICES"),
        supervised=supervised,
    )
    return placement, n_visible_gpus


def _share_cores(per_trial: int) -> None:
    """On a machine without GPUs, a trial group's ranks split the CPU cores between them."""
    from hpsearch.workers import THREADS_ENV

    threads = os.environ.get(THREADS_ENV) or str(max(1, (os.cpu_count() or 1) // per_trial))
    os.environ.update({THREADS_ENV: threads, "OMP_NUM_THREADS": threads})


def _run_group(
    study,
    url,
    name: str,
    per_trial: int,
    worker_key: str | None,
    supervised: bool,
    timeout: float | None,
) -> None:
    """This worker's trials, each on `per_trial` rank processes (hpsearch.workers.group)."""
    from hpsearch.workers import run_group

    rank_args = ["--study", name, *(["--supervised"] if supervised else [])]
    key = (
        worker_key or f"{socket.gethostname()}:{os.getpid()}"
    )  # the group's name in its trials' records
    run_group(
        study,
        per_trial,
        key,
        rank_args,
        url.render_as_string(hide_password=False),
        timeout,
        report=lambda line: console.print(line, markup=False),
    )  # a rank's reason is not markup


@cli.command("trial-rank", hidden=True)
@click.option("--study", "name", required=True, metavar="NAME")
@click.option(
    "--timeout",
    type=float,
    help="Start no new trial after this many seconds (the group's deadline).",
)
@click.option("--supervised", is_flag=True, help="Print no progress.")
def trial_rank(name: str, timeout: float | None, supervised: bool) -> None:
    """One process of a trial group, started by a worker with --gpus-per-trial (never by hand)."""
    from hpsearch.study import stored_spec
    from hpsearch.trial.distributed import GroupBroken
    from hpsearch.workers import run_rank, write_rank_reason

    # The agent forwards the worker's Ctrl-C, and a terminal sends its own: one interrupt, once.
    # SIGTERM keeps its default: the agent stops the surviving ranks of a broken group with it, and
    # their trial is failed with the culprit's reason, not recorded as interrupted and queued again.
    _interrupt_once(signal.SIGINT)
    try:
        url, rdb = open_storage_flag(None, must_exist=True)
        spec = stored_spec(rdb, name)

        def lead(study, runner) -> None:
            _run_here(study, runner, url, name, spec, supervised, timeout)

        run_rank(spec, url, rdb, name, lead)
    except GroupBroken as e:
        # The error boundary's plain line (app._fail), not rich markup: gloo's messages hold
        # "[/path/pair.cc:537]".
        click.echo(f"Error: {e}", err=True)
        sys.exit(ExitCode.CRASH)
    except TrialBug as e:
        # The worker's one Error line names it; the traceback goes to the trial's record and, here,
        # to the worker's log (a rank's stderr is its worker's).
        write_rank_reason(e.message, e.traceback)
        sys.stderr.write(e.traceback)
        sys.exit(ExitCode.BUG)
    except HpsearchError as e:
        write_rank_reason(e.message)  # the worker's own error line names it
        raise


def _interrupt_once(*signals: signal.Signals) -> None:
    """Make the first of `signals` this process gets raise KeyboardInterrupt, as Ctrl-C does, and
    every later one be ignored: the running trial is then recorded as interrupted and queued again
    (SIGTERM is how `kill`, systemd, Docker, Kubernetes and SLURM's scancel stop a process)."""

    def interrupt(signum, frame) -> None:
        for ignored in signals:
            signal.signal(ignored, signal.SIG_IGN)
        raise KeyboardInterrupt

    for each in signals:
        signal.signal(each, interrupt)


def _run_supervised(
    study, url, name: str, spec, slots, per_trial: int | None, timeout: float | None
) -> None:
    """Supervised worker processes, each told what is left of this run's deadline when it starts."""
    from hpsearch.storage import STORAGE_ENV
    from hpsearch.views import RunProgress, write_note
    from hpsearch.workers import Supervisor

    console.print(f"starting {len(slots)} workers: {', '.join(s.label for s in slots)}")
    args = [
        "worker",
        "--study",
        name,
        "--supervised",
        *(["--gpus-per-trial", str(per_trial)] if per_trial else []),
    ]
    # The URL travels in the environment: a command line (with its password) is visible to `ps`.
    env = {STORAGE_ENV: url.render_as_string(hide_password=False)}
    with RunProgress(console, study, spec.objective.eval_key, spec.budget.n_trials) as progress:
        Supervisor(
            slots,
            args,
            env,
            Path("storage/logs") / name,
            report=console.print,
            on_poll=progress.poll,
            deadline=None if timeout is None else time.monotonic() + timeout,
        ).run()
    write_note(study, spec)  # the workers' last notes may predate their last trials


def _print_summary(study, spec) -> None:
    from hpsearch.storage import resolve_best_model
    from hpsearch.study import summarize
    from hpsearch.views import summary_table

    summary = summarize(study, spec)
    console.print(summary_table(summary))
    kept = resolve_best_model(study)
    if kept.pointer is not None:
        pointer = kept.pointer
        console.print(f"best model: artifact {pointer['artifact_id']} of trial {pointer['trial']}")
    elif summary.best_number is not None:
        console.print(kept.problem, markup=False)
