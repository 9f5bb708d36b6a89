"""The `hpsearch` command group, the options its commands share, and the boundary where errors
become one `Error: ...` line: an HpsearchError with its exit code, a database's refusal with its
reason, a bug of hpsearch met in a trial (TrialBug) below its traceback with exit code 3; anything
else is unexpected, shown with its traceback and exit code 70 (hpsearch.errors.ExitCode, which
supervisors decide on)."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console

from hpsearch import __version__
from hpsearch.errors import ExitCode, HpsearchError, TrialBug

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
    command = click.option(
        "--gpus-per-trial",
        type=click.IntRange(min=1, max=64),
        metavar="N",
        help="Train each trial as N data-parallel processes (DDP), one per GPU; "
        "overrides resources.gpus_per_trial.",
    )(command)
    command = click.option(
        "--workers",
        type=click.IntRange(min=1),
        metavar="N",
        help="Run N worker processes on CPU, splitting the cores between them "
        "(1: this process, with the GPUs hidden).",
    )(command)
    return click.option(
        "--gpus",
        metavar="all|0,2,3",
        help="Run one worker process per GPU, each pinned with CUDA_VISIBLE_DEVICES "
        "[default: all, on a host with several GPUs].",
    )(command)


def storage_option(command):
    return click.option(
        "--storage",
        metavar="URL",
        help="Database URL [env HPSEARCH_STORAGE; default sqlite:///storage/hpsearch.db].",
    )(command)


def open_storage_flag(flag: str | None, *, must_exist: bool):
    """The storage a command works on, from --storage, HPSEARCH_STORAGE or the default: (URL,
    opened storage). `must_exist` for commands that read or join a study: they create no database.
    """
    from hpsearch.storage import open_storage, resolve_storage_url

    url = resolve_storage_url(flag)
    return url, open_storage(url, must_exist=must_exist)


def check_training_args(spec) -> None:
    """TrainingArguments takes every value of the spec, and each choice of a searched model loads
    and takes the task's head (imports transformers: training commands)."""
    from hpsearch.trial import check_model_choices
    from hpsearch.trial import check_training_args as check

    check(spec)
    check_model_choices(spec)


def main() -> None:
    debug = (
        os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes") or "--debug" in sys.argv[1:2]
    )
    try:
        cli.main(standalone_mode=False)
    except TrialBug as e:
        sys.stderr.write(e.traceback)  # a bug: the worker's log keeps where it is
        _fail(e.message, e.exit_code, debug=False)
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
