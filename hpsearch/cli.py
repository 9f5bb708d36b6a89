"""The `hpsearch` command: the only module that prints or exits.

Heavy libraries (torch, transformers) are imported only by the commands that train, so `--help`
and the read-only commands start fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console

from hpsearch import __version__
from hpsearch.errors import HpsearchError

DEBUG_ENV = "HPSEARCH_DEBUG"
STUDIES_DIR = Path("studies")

console = Console(highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpsearch")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV, help="Show tracebacks for errors too.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Hyperparameter search for fine-tuning Hugging Face transformers models."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.option("--study", "study_ref", required=True, metavar="NAME|PATH",
              help="A spec name (studies/NAME.yaml) or the path of a spec file.")
@click.option("--storage", metavar="URL", help="Database URL [env HPSEARCH_STORAGE; default sqlite:///storage/hpsearch.db].")
@click.option("--study-name", metavar="NAME", help="Name of the study in the storage [default: the spec's file name].")
@click.option("--n-trials", type=click.IntRange(min=1), help="Study-wide trial budget; overrides budget.n_trials.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Start no new trial after this many seconds; overrides budget.timeout.")
def run(study_ref: str, storage: str | None, study_name: str | None, n_trials: int | None,
        timeout: float | None) -> None:
    """Create a study from its spec (or resume it) and run trials until its budget is spent."""
    from hpsearch.budget import n_spent
    from hpsearch.check import check_spec
    from hpsearch.spec import find_spec_file, load_spec_file
    from hpsearch.storage import artifact_dir, open_storage, redact, resolve_storage_url
    from hpsearch.study import check_resumable, open_study

    spec_path = find_spec_file(study_ref, STUDIES_DIR)
    spec = load_spec_file(spec_path)
    overrides = {k: v for k, v in (("n_trials", n_trials), ("timeout", timeout)) if v is not None}
    if overrides:
        spec = spec.model_copy(update={"budget": spec.budget.model_copy(update=overrides)})
    name = study_name or spec_path.stem
    check_spec(spec)
    url = resolve_storage_url(storage)
    rdb = open_storage(url)
    spent = check_resumable(rdb, name, spec)
    console.print(f"study [bold]{name}[/] in {redact(url)}: {spent}/{spec.budget.n_trials} trials spent")
    if spent >= spec.budget.n_trials:
        study, _ = open_study(rdb, name, spec)
        _print_summary(study, spec)
        console.print(f"study {name!r} has spent its budget of {spec.budget.n_trials} trials; "
                      "raise it with --n-trials to run more")
        return

    from hpsearch.progress import RunProgress
    from hpsearch.worker import build_runner, run_trials

    with console.status("loading model and data (tokenized once, then cached)"):
        runner = build_runner(spec, artifact_dir(url))
    study, changes = open_study(rdb, name, spec)
    for change in changes:
        console.print(f"stored spec updated: {change}")
    try:
        with RunProgress(console, study, spec.objective.eval_key, spec.budget.n_trials) as progress:
            run_trials(study, runner, spec.budget.n_trials, spec.budget.timeout, progress.on_trial_end)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the running trial ends FAIL (interrupted) and is re-run "
                      "when the study resumes")
        _print_summary(study, spec)
        sys.exit(130)
    _print_summary(study, spec)
    left = spec.budget.n_trials - n_spent(study.get_trials(deepcopy=False))
    if left > 0:
        console.print(f"timeout reached with {left} trials of the budget left; run the same command to resume")


def _print_summary(study, spec) -> None:
    from hpsearch.artifact import best_model_pointer
    from hpsearch.progress import summary_table
    from hpsearch.summary import summarize

    console.print(summary_table(summarize(study, spec.objective.eval_key, spec.budget.n_trials)))
    pointer = best_model_pointer(study)
    if pointer:
        console.print(f"best model: artifact {pointer['artifact_id']} of trial {pointer['trial']}")


def main() -> None:
    debug = os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes") or "--debug" in sys.argv[1:2]
    try:
        cli.main(standalone_mode=False)
    except HpsearchError as e:
        if debug:
            traceback.print_exc()
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
