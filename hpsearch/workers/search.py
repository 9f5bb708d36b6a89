"""Where a search's trials run, once a command has its study and storage: in this process, in a
group of rank processes (one per device of a trial), or in supervised worker processes
(slots.place_workers decides which: on a host with several GPUs, one worker per GPU unless told
otherwise); how Ctrl-C and SIGTERM stop them; the summary at the end.

The command that starts a search (hpsearch.cli) parses its flags, hands over the console this
shows progress on, and turns an interrupt into its exit code."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hpsearch.workers.process_env import see_only, share_cores

if TYPE_CHECKING:
    import optuna


def run_search(
    console,
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
    trials_per_gpu: int = 1,
    warm_start=(),
) -> optuna.Study | None:
    """Run the study's missing trials here: in this process, in a group of rank processes (one per
    device of a trial), or in supervised worker processes. The study when its budget is spent and
    this is not a supervised worker (the command then scores its best model on the test set).
    Ctrl-C (or SIGTERM) ends it with KeyboardInterrupt, once the running trials are recorded.

    `worker_key` names this process among the study's workers (None: the only one). The process
    that samples here (this one, else each worker or rank 0 of each group) takes a start number
    from the storage and seeds its sampler with it (study/algorithms.py seed_sampler).
    `timeout`: this run's deadline in seconds (default: the spec's budget.timeout), after which no
    trial starts. `trials_per_gpu` K: K supervised workers share each GPU, checked at start against
    the largest peak GPU memory the study's trials recorded (hpsearch.trial.gpu_memory).
    `warm_start`: the configurations to queue first (study.plan_warm_start), once per study.
    """
    from hpsearch.spec import check_trial_group
    from hpsearch.storage import apply_heartbeat, redact
    from hpsearch.study import enqueue_warm_start, n_spent, open_study, seed_sampler

    if supervised:
        # The supervisor stops its workers with SIGINT. A process started with SIGINT ignored (under
        # nohup, as a background job) passes that on, and Python would then never raise
        # KeyboardInterrupt: the trial would not end as 'interrupted' and the worker would not stop.
        # One interrupt, once: a SIGTERM sent to every process of a job (SLURM's scancel signals the
        # whole step) and the supervisor's SIGINT that follows must not cut the recording short.
        interrupt_once(signal.SIGINT, signal.SIGTERM)
    else:
        # SIGTERM stops a search as Ctrl-C does; a second Ctrl-C still interrupts the first's
        # recording (a user's way out), a second SIGTERM does not.
        interrupt_once(signal.SIGTERM)
    budget = spec.budget.n_trials
    if not supervised:
        console.print(f"study [bold]{name}[/] in {redact(url)}: {spent}/{budget} trials spent")
    if spent >= budget:
        study, changes = open_study(rdb, name, spec)
        if not supervised:
            for change in changes:
                console.print(f"stored spec updated: {change}")
            _print_summary(console, study, spec)
            console.print(
                f"study {name!r} has spent its budget of {budget} trials; raise it with --n-trials "
                "to run more"
            )
        return None if supervised else study
    apply_heartbeat(rdb, spec.heartbeat)
    per_trial = gpus_per_trial or spec.resources.gpus_per_trial
    check_trial_group(spec, per_trial)
    # A bad --gpus or --gpus-per-trial fails before any write.
    placement, n_visible_gpus = _place(gpus, workers, per_trial, supervised, trials_per_gpu)
    if placement.notice and not supervised:
        console.print(placement.notice, markup=False)
    if trials_per_gpu > 1 and not supervised:
        unchecked = _check_gpu_fit(rdb, name, trials_per_gpu, n_visible_gpus)
        if unchecked:
            console.print(unchecked, markup=False)
    if placement.devices is not None:  # before CUDA starts: this process then sees only these
        see_only(placement.devices)
    in_process = placement.mode == "alone"
    in_group = placement.mode == "group"
    if in_group and (n_visible_gpus == 0 or placement.devices == ""):
        share_cores(per_trial)
    if in_process:
        from hpsearch.workers.startup import build_runner

        with console.status("loading model and data (tokenized once, then cached)"):
            runner = build_runner(spec, url, name)
    else:
        from hpsearch.workers.startup import warm_cache

        with console.status("tokenizing the data once for all workers"):
            warm_cache(spec, url)
    study, changes = open_study(rdb, name, spec)
    for change in changes:
        console.print(f"stored spec updated: {change}")
    for line in enqueue_warm_start(study, list(warm_start), budget):
        console.print(line, markup=False)
    timeout = spec.budget.timeout if timeout is None else timeout
    if in_process:
        runner.sampler_start = seed_sampler(study, spec.sampler)
    try:
        if in_group:
            _run_group(console, study, url, name, per_trial, worker_key, supervised, timeout)
        elif in_process:
            run_here(console, study, runner, url, name, spec, supervised, timeout)
        else:
            _run_supervised(console, study, url, name, spec, placement.slots, per_trial, timeout)
    except KeyboardInterrupt:
        if not supervised:
            console.print(
                "[yellow]interrupted[/]: running trials end FAIL (interrupted) and are re-run "
                "when the study resumes"
            )
            _print_summary(console, study, spec)
        raise
    if supervised:
        return None
    _print_summary(console, study, spec)
    left = budget - n_spent(study.get_trials(deepcopy=False))
    if left > 0:
        console.print(
            f"timeout reached with {left} trials of the budget left; run the same command to resume"
        )
    return study if left <= 0 else None


def name_worker(supervised: bool) -> str:
    """This worker's name among the study's workers: its supervisor names its slot, else its host
    and process do (the name of its trial group, if it runs one)."""
    from hpsearch.workers.supervisor import WORKER_KEY_ENV

    key = os.environ.get(WORKER_KEY_ENV) if supervised else None
    return key or f"{socket.gethostname()}:{os.getpid()}"


def run_here(
    console, study, runner, url, name: str, spec, supervised: bool, timeout: float | None
) -> None:
    """The worker loop in this process; after `timeout` seconds it starts no trial."""
    from hpsearch.storage import StudyLock
    from hpsearch.views import NoteWriter, RunProgress, register_worker
    from hpsearch.workers.loop import run_trials

    lock = StudyLock(url, name)
    budget = spec.budget.n_trials
    if timeout is not None and spec.budget.at_timeout == "stop":
        runner.stop_at = time.monotonic() + timeout
    register_worker(study, runner.device, [o.shown_name for o in spec.all_objectives])
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
        runner.best_model.close()  # no model left half-written by a thread that dies with us
        note(force=True)


def _place(
    gpus: str | None,
    workers: int | None,
    per_trial: int | None,
    supervised: bool,
    trials_per_gpu: int = 1,
):
    """Where this run's or worker's trials train (hpsearch.workers.place_workers), from the flags
    and the GPUs this process sees: (placement, GPUs seen)."""
    from hpsearch.trial import count_gpus
    from hpsearch.workers.slots import place_workers

    n_visible_gpus = count_gpus()
    placement = place_workers(
        gpus,
        workers,
        per_trial,
        n_visible_gpus,
        os.cpu_count() or 1,
        os.environ.get("CUDA_VISIBLE_DEVICES"),
        supervised=supervised,
        trials_per_gpu=trials_per_gpu,
    )
    return placement, n_visible_gpus


def _check_gpu_fit(rdb, name: str, k: int, n_visible_gpus: int) -> str | None:
    """Raise HpsearchError if K trials of the study's largest recorded peak GPU memory do not fit
    the smallest GPU here; the line to say when no trial has recorded one yet."""
    from hpsearch.trial import check_fit, gpu_total_mb, recorded_peaks

    try:
        trials = rdb.get_all_trials(rdb.get_study_id_from_name(name), deepcopy=False)
    except KeyError:  # a new study: nothing recorded yet
        trials = []
    total_mb, gpu = gpu_total_mb(n_visible_gpus)
    return check_fit(k, recorded_peaks(trials), total_mb, gpu)


def _run_group(
    console,
    study,
    url,
    name: str,
    per_trial: int,
    worker_key: str | None,
    supervised: bool,
    timeout: float | None,
) -> None:
    """This worker's trials, each on `per_trial` rank processes (hpsearch.workers.group)."""
    from hpsearch.workers.group import run_group

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


def interrupt_once(*signals: signal.Signals) -> None:
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
    console, study, url, name: str, spec, slots, per_trial: int | None, timeout: float | None
) -> None:
    """Supervised worker processes, each told what is left of this run's deadline when it starts."""
    from hpsearch.storage import STORAGE_ENV
    from hpsearch.views import RunProgress, write_note
    from hpsearch.workers.supervisor import Supervisor

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


def _print_summary(console, study, spec) -> None:
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
