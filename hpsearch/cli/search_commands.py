"""The commands that run a study's trials: `run`, `create`, `worker`, and `trial-rank` (one process
of a trial group, started by a worker): each parses its flags, calls the library and shows what it
did. Where the trials then run is hpsearch.workers.run_search's (through hpsearch.cli.search)."""

from __future__ import annotations

import signal
import sys

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
from hpsearch.cli.search import search
from hpsearch.errors import ExitCode, HpsearchError, TrialBug


def trials_per_gpu_option(command):
    """--trials-per-gpu K of run and worker (checked with the other placement flags, in one line,
    by hpsearch.workers.place_workers)."""
    return click.option(
        "--trials-per-gpu",
        type=int,
        default=1,
        show_default=True,
        metavar="K",
        help="Run K worker processes on each GPU, pinned alike: for models too small to keep a "
        "GPU busy. Checked at start against the largest peak GPU memory a trial recorded.",
    )(command)


def spec_file_options(command):
    """The options of a command that brings a spec file: run and create."""
    command = click.option(
        "--warm-start-from",
        multiple=True,
        metavar="STUDY",
        help="Queue the best configurations of this earlier study (repeatable) first; overrides "
        "warm_start.from.",
    )(command)
    command = click.option(
        "--n-trials",
        type=click.IntRange(min=1),
        help="Study-wide trial budget; overrides budget.n_trials.",
    )(command)
    command = click.option(
        "--study-name",
        metavar="NAME",
        help="Name of the study in the storage [default: the spec's file name].",
    )(command)
    command = storage_option(command)
    return click.option(
        "--study",
        "study_ref",
        required=True,
        metavar="NAME|PATH",
        help="A spec name (studies/NAME.yaml) or the path of a spec file.",
    )(command)


@cli.command()
@spec_file_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Start no new trial after this many seconds: this run's deadline, never stored "
    "(overrides budget.timeout for this run only).",
)
@worker_options
@trials_per_gpu_option
def run(
    study_ref: str,
    storage: str | None,
    study_name: str | None,
    n_trials: int | None,
    timeout: float | None,
    gpus: str | None,
    workers: int | None,
    gpus_per_trial: int | None,
    trials_per_gpu: int,
    warm_start_from: tuple[str, ...],
) -> None:
    """Create a study from its spec (or resume it) and run trials until its budget is spent."""
    from hpsearch.study import check_resumable, plan_warm_start

    spec, name = _load_run_spec(study_ref, study_name, n_trials, warm_start_from)
    url, rdb = open_storage_flag(storage, must_exist=False)
    spent = check_resumable(rdb, name, spec)
    warm_start = plan_warm_start(rdb, name, spec)
    search(
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
        trials_per_gpu=trials_per_gpu,
        warm_start=warm_start,
    )


@cli.command()
@spec_file_options
def create(
    study_ref: str,
    storage: str | None,
    study_name: str | None,
    n_trials: int | None,
    warm_start_from: tuple[str, ...],
) -> None:
    """Create a study from its spec (or check an existing one) and run no trial: for workers started
    elsewhere (SLURM, Kubernetes) to join with `hpsearch worker`."""
    from hpsearch.storage import redact
    from hpsearch.study import prepare_study

    spec, name = _load_run_spec(study_ref, study_name, n_trials, warm_start_from)
    url, rdb = open_storage_flag(storage, must_exist=False)
    prepared = prepare_study(rdb, name, spec)
    for change in prepared.changes:
        console.print(f"stored spec updated: {change}")
    for line in prepared.warm_start:
        console.print(line, markup=False)
    console.print(
        f"study [bold]{name}[/] in {redact(url)}: {prepared.n_spent}/{spec.budget.n_trials} trials "
        f"spent; workers join it with: hpsearch worker --study {name}"
    )


def _load_run_spec(
    study_ref: str,
    study_name: str | None,
    n_trials: int | None,
    warm_start_from: tuple[str, ...] = (),
):
    """The spec a `run` or `create` names, with --n-trials and --warm-start-from applied and
    checked before any write:
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
    if warm_start_from:
        spec = _warm_start_from(spec, warm_start_from)
    check_sources(spec)
    check_training_args(spec)
    return spec, study_name or spec_path.stem


def _warm_start_from(spec, studies: tuple[str, ...]):
    """The spec with warm_start.from replaced by --warm-start-from (its top kept)."""
    from hpsearch.spec import WarmStartSpec

    top = {"top": spec.warm_start.top} if spec.warm_start else {}
    try:
        warm_start = WarmStartSpec.model_validate({"from": list(studies), **top})
    except ValueError as e:
        raise click.BadParameter(str(e).splitlines()[-1], param_hint="--warm-start-from") from None
    return spec.model_copy(update={"warm_start": warm_start})


@cli.command()
@click.option(
    "--study", "name", required=True, metavar="NAME", help="The study's name in the storage."
)
@storage_option
@worker_options
@trials_per_gpu_option
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
    trials_per_gpu: int,
    timeout: float | None,
    supervised: bool,
) -> None:
    """Join an existing study from any machine: its spec comes from the storage."""
    from hpsearch.spec import check_sources
    from hpsearch.study import n_spent, stored_spec
    from hpsearch.workers import name_worker

    url, rdb = open_storage_flag(storage, must_exist=True)
    spec = stored_spec(rdb, name)
    check_sources(spec)  # the model and data must be reachable from this machine too
    check_training_args(spec)
    spent = n_spent(rdb.get_all_trials(rdb.get_study_id_from_name(name), deepcopy=False))
    search(
        url,
        rdb,
        name,
        spec,
        spent,
        gpus,
        workers,
        gpus_per_trial,
        supervised=supervised,
        worker_key=name_worker(supervised),
        timeout=timeout,
        trials_per_gpu=trials_per_gpu,
    )


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
    from hpsearch.workers import interrupt_once, run_here, run_rank, write_rank_reason

    # The agent forwards the worker's Ctrl-C, and a terminal sends its own: one interrupt, once.
    # SIGTERM keeps its default: the agent stops the surviving ranks of a broken group with it, and
    # their trial is failed with the culprit's reason, not recorded as interrupted and queued again.
    interrupt_once(signal.SIGINT)
    try:
        url, rdb = open_storage_flag(None, must_exist=True)
        spec = stored_spec(rdb, name)

        def lead(study, runner) -> None:
            run_here(console, study, runner, url, name, spec, supervised, timeout)

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
