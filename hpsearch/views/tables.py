"""The tables and numbers a person reads: a study's summary, its running trials, every study, the
best trial; seconds and values formatted as every view shows them."""

from __future__ import annotations

import json

from rich.table import Table

from hpsearch.study import Confidence, StudySummary, describe_states
from hpsearch.tasks import get_task


def summary_table(summary: StudySummary) -> Table:
    table = Table(title=f"study {summary.name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    states = describe_states(summary.states)
    table.add_row("task", summary.task)
    table.add_row("trials", f"{summary.n_spent}/{summary.n_trials_budget} spent ({states})")
    if summary.best_number is not None:
        table.add_row(
            f"best {summary.metric}",
            f"{summary.best_value:.4f} (trial {summary.best_number}, {summary.direction})",
        )
        if summary.best_confidence is not None:
            table.add_row("  how sure", summary.best_confidence.describe())
        for name, value in summary.best_params.items():
            table.add_row(f"  {name}", format_value(value))
        others = {k: v for k, v in summary.best_metrics.items() if k != summary.metric}
        if others:
            table.add_row(
                "  its metrics",
                ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in others.items()),
            )
        if summary.best_effective_batch_size is not None:
            table.add_row(
                "  effective batch",
                f"{summary.best_effective_batch_size} examples per optimizer step "
                "(batch size x accumulation x devices)",
            )
    else:
        table.add_row("best", "no trial has completed yet")
    if len(summary.effective_batch_sizes) > 1:
        table.add_row(
            "effective batches",
            ", ".join(map(str, summary.effective_batch_sizes)) + " across trials "
            "(every rung at the same share of an epoch)",
        )
    table.add_row(
        "compute spent",
        f"{format_seconds(summary.train_seconds)} training, {summary.n_steps} optimizer steps",
    )
    saved_share = summary.steps_saved / max(summary.steps_saved + summary.n_steps, 1)
    table.add_row(
        "saved by pruning",
        f"~{format_seconds(summary.seconds_saved)}, {summary.steps_saved} steps ({saved_share:.0%} "
        "of the unpruned total)",
    )
    if summary.stopped_early:
        numbers = ", ".join(map(str, summary.stopped_early))
        table.add_row(
            "stopped early",
            f"trial{'s' if len(summary.stopped_early) > 1 else ''} {numbers}: "
            f"~{format_seconds(summary.early_stopping_seconds_saved)}, "
            f"{summary.early_stopping_steps_saved} steps saved",
        )
    if summary.stopped_at_timeout:
        numbers = ", ".join(map(str, summary.stopped_at_timeout))
        several = len(summary.stopped_at_timeout) > 1
        table.add_row(
            "stopped at the timeout",
            f"trial{'s' if several else ''} {numbers} (completed with what "
            f"{'they' if several else 'it'} reached; budget.at_timeout: stop)",
        )
    return table


def pareto_table(front: list[dict]) -> Table:
    """A multi-objective study's Pareto front (study/pareto.py), best first on the first
    objective: each member's values, costs not among them, parameters, and its kept model."""
    table = Table(title="Pareto front", title_justify="left")
    table.add_column("trial", justify="right")
    objectives = list(front[0]["values"])
    for name in objectives:
        table.add_column(name, justify="right")
    costs = [c for c in ("latency_ms", "model_size_mb", "params") if c not in objectives]
    for name in costs:
        table.add_column(name, justify="right")
    # The held-out test set's score of the first objective, once a run has scored the front.
    test_key = "test_" + objectives[0].removeprefix("eval_")
    tested = any(member.get("test_scores") for member in front)
    if tested:
        table.add_column(test_key, justify="right")
    table.add_column("params searched")
    table.add_column("model")
    for member in front:
        measured = member["costs"]
        scores = member.get("test_scores") or {}
        table.add_row(
            str(member["number"]),
            *(f"{member['values'][n]:.4g}" for n in objectives),
            *(format_value(measured[c]) if c in measured else "-" for c in costs),
            *([f"{scores[test_key]:.4g}" if test_key in scores else "-"] if tested else []),
            " ".join(f"{k}={format_value(v)}" for k, v in member["params"].items()),
            "kept" if member["model_kept"] else "not kept",
        )
    return table


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def running_table(running: list[dict]) -> Table:
    table = Table(title="running trials", title_justify="left")
    for column in ("trial", "host", "pid", "device", "heartbeat", "params"):
        table.add_column(column)
    for r in running:
        age = "-" if r["heartbeat_age_s"] is None else f"{r['heartbeat_age_s']:.0f}s ago"
        params = " ".join(f"{k}={format_value(v)}" for k, v in r["params"].items())
        table.add_row(
            str(r["number"]), str(r["host"]), str(r["pid"]), str(r["device"]), age, params
        )
    return table


def studies_table(rows: list[dict]) -> Table:
    table = Table(title="studies", title_justify="left")
    for column in ("study", "task", "trials", "budget", "metric", "best"):
        table.add_column(column)
    for r in rows:
        states = describe_states(r["states"])
        best = "-" if r["best_value"] is None else f"{r['best_value']:.4f}"
        table.add_row(
            r["name"],
            r["task"] or "-",
            states,
            str(r["n_trials_budget"] or "-"),
            r["metric"] or "-",
            best,
        )
    return table


def describe_final_data(record: dict) -> str:
    """'270 rows (full data)' or '64 rows (as searched)': what a final training trained on."""
    data = "full data" if record["full_data"] else "as searched"
    return f"{record['n_train_examples']} rows ({data})"


def final_trainings_table(trained: list[dict]) -> Table:
    """The study's final trainings (hpsearch train): what each trained on, reached and wrote."""
    table = Table(title="final trainings", title_justify="left")
    for column in ("trial", "data", "epochs", "metric", "trial's", "directory", "host", "finished"):
        table.add_column(column)
    for t in trained:
        recorded = "-" if t.get("trial_value") is None else f"{t['trial_value']:.4f}"
        table.add_row(
            str(t["trial"]),
            describe_final_data(t),
            f"{t['epochs']:g}",
            f"{t['metric']} {t['value']:.4f}",
            recorded,
            str(t["out_dir"]),
            str(t["host"]),
            str(t["finished_at"]),
        )
    return table


def spec_changes_table(changes: list[dict]) -> Table:
    """The changes later runs made to the study's stored spec (budget, heartbeat, eval batch...).
    The key is never cut: the other columns wrap first."""
    table = Table(title="spec changes", title_justify="left")
    table.add_column("key", no_wrap=True, min_width=max(len(c["key"]) for c in changes))
    for column in ("old", "new", "when, by"):
        table.add_column(column)
    for c in changes:
        table.add_row(
            c["key"], json.dumps(c["old"]), json.dumps(c["new"]), f"{c['at']}, {c['host']}"
        )
    return table


def best_table(best: dict) -> Table:
    table = Table(title=f"best trial of {best['study']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("task", best["task"])
    table.add_row(
        best["metric"], f"{best['value']:.4f} (trial {best['number']}, seed {best['seed']})"
    )
    if best.get("confidence"):
        table.add_row("  how sure", Confidence(**best["confidence"]).describe())
    for name, value in best["params"].items():
        table.add_row(f"  {name}", format_value(value))
    if best.get("effective_batch_size"):
        table.add_row("  effective batch", str(best["effective_batch_size"]))
    if best.get("stopped_early"):
        table.add_row("  stopped early", "yes (early_stopping ended it; it completed)")
    if best.get("stopped_at_timeout"):
        stop = best["stopped_at_timeout"]
        table.add_row(
            "  stopped at the timeout",
            f"yes, at evaluation {stop['evaluation']} with {stop['steps_left']} steps left",
        )
    for name in get_task(best["task"]).metrics:  # what evaluation measured; runtimes are noise here
        if f"eval_{name}" in best["metrics"]:
            table.add_row(f"eval_{name}", f"{best['metrics'][f'eval_{name}']:.4f}")
    for name, value in (best.get("test_scores") or {}).items():  # the held-out test set
        table.add_row(name, f"{value:.4f}")
    return table


def describe_test_scores(number: int, scores: dict[str, float]) -> str:
    """One line: a trial's scores on the held-out test set."""
    shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
    return f"test set (held out, never searched on), trial {number}: {shown}"
