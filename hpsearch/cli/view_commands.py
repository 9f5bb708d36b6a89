"""The commands that show a study without changing it: `dashboard`, `status`, `best`, `report`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from hpsearch.cli.app import cli, console, err_console, open_storage_flag, storage_option
from hpsearch.errors import HpsearchError


@cli.command()
@click.option(
    "--study", "name", metavar="NAME", help="Open this study's page (all studies are browsable)."
)
@storage_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback is reachable by others.",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--server",
    type=click.Choice(["threaded", "gunicorn"]),
    default="threaded",
    show_default=True,
    help=(
        "threaded: the standard library's server, a thread per request; "
        "gunicorn: a production server."
    ),
)
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
        err_console.print(
            f"[yellow]warning[/]: binding {host}: anyone who reaches this machine on port "
            f"{port} can read and change these studies (the dashboard has no login)"
        )
    app = make_app(rdb, open_artifact_store(artifact_dir(url), create=name is None))
    shown_host = f"[{host}]" if ":" in host else host
    console.print(
        f"optuna-dashboard on {redact(url)}: http://{shown_host}:{port}/{page}  (Ctrl-C stops it)"
    )
    try:
        serve(app, host, port, server)
    except OSError as e:
        raise HpsearchError(
            f"cannot listen on {host}:{port}: {e.strerror}; pick another --port"
        ) from None
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option(
    "--study",
    "name",
    metavar="NAME",
    help="One study in detail; default: every study, one line each.",
)
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(name: str | None, storage: str | None, as_json: bool) -> None:
    """Trials by state, best value, running trials with their heartbeats, compute spent and
    saved."""
    from hpsearch.study import Confidence, StudySummary
    from hpsearch.views import (
        all_studies,
        describe_test_scores,
        final_trainings_table,
        pareto_table,
        running_table,
        spec_changes_table,
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
        summary = dataclasses.replace(
            summary, best_confidence=Confidence(**summary.best_confidence)
        )
    console.print(summary_table(summary))
    if summary.pareto:
        console.print(pareto_table(summary.pareto))
    console.print(running_table(data["running"]) if data["running"] else "no trial is running")
    if data["final_trainings"]:
        console.print(final_trainings_table(data["final_trainings"]))
    if data["spec_changes"]:
        console.print(spec_changes_table(data["spec_changes"]))
    for number, scores in data["test_scores"].items():
        console.print(describe_test_scores(number, scores), markup=False)
    if data["warm_started"]:
        shown = ", ".join(f"{t['number']} (from {t['from']})" for t in data["warm_started"])
        console.print(f"warm-started trials: {shown}", markup=False)


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def best(name: str, storage: str | None, as_json: bool) -> None:
    """The best trial: its value, parameters and metrics, or with several objectives the Pareto
    front (and the scores on the held-out test set, scored now if no run has)."""
    from hpsearch.cli.search import score_on_test
    from hpsearch.views import best_table, best_trial, pareto_table

    url, rdb = open_storage_flag(storage, must_exist=True)
    data = best_trial(rdb, name)
    unscored = [
        member["number"]
        for member in data.get("pareto", [data])
        if member["test_scores"] is None and member.get("model_kept", True)
    ]
    if unscored and score_on_test(url, rdb, name, unscored):
        data = best_trial(rdb, name)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif "pareto" in data:  # several objectives: no one best trial, a front
        console.print(pareto_table(data["pareto"]))
    else:
        console.print(best_table(data))
        if data["best_model_problem"]:
            console.print(data["best_model_problem"], markup=False)


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME")
@storage_option
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the PNGs and report.html.",
)
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
