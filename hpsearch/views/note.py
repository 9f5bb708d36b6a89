"""The study's note in optuna-dashboard: its spec, the workers that joined it, the search's summary,
the changes later runs made to its spec, and the final trainings made from it (hpsearch train).

Each worker records itself (host, device, package versions) in a study system attribute when it
starts, and rewrites the note as trials finish, at most every NOTE_INTERVAL_S, so the dashboard
shows a current picture without a write per trial.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import warnings
from importlib import metadata

import optuna
import yaml

from hpsearch.spec import describe_model
from hpsearch.storage import (
    BestModel,
    resolve_best_model,
    set_study_system_attr,
    study_system_attrs,
)
from hpsearch.study import (
    StudySummary,
    describe_states,
    final_trainings,
    spec_change_records,
    summarize,
)
from hpsearch.views.tables import describe_final_data

WORKER_ATTR_PREFIX = "hpsearch:worker:"
NOTE_INTERVAL_S = 10.0
PACKAGES = ("hpsearch", "torch", "transformers", "optuna", "datasets")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def register_worker(study: optuna.Study, device: str, metric: str | list[str]) -> None:
    # The dashboard says "eval_accuracy", not "Objective 0". optuna_dashboard's
    # set_objective_names is deprecated (a FutureWarning) for this call, "experimental" in Optuna.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric] if isinstance(metric, str) else metric)
    key = f"{WORKER_ATTR_PREFIX}{socket.gethostname()}:{os.getpid()}"
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": device,
        "joined": _now(),
        "versions": package_versions(),
    }
    set_study_system_attr(study, key, record)


def workers(study: optuna.Study) -> list[dict]:
    attrs = study_system_attrs(study)
    return sorted(
        (v for k, v in attrs.items() if k.startswith(WORKER_ATTR_PREFIX)), key=lambda w: w["joined"]
    )


class NoteWriter:
    """Rewrites the note after a trial ends, unless rewritten less than NOTE_INTERVAL_S ago."""

    def __init__(self, study: optuna.Study, spec, interval: float = NOTE_INTERVAL_S):
        self.study, self.spec, self.interval = study, spec, interval
        self.last = float("-inf")

    def __call__(self, study: optuna.Study | None = None, trial=None, force: bool = False) -> None:
        if force or time.monotonic() - self.last >= self.interval:
            write_note(self.study, self.spec)
            self.last = time.monotonic()


def write_note(study: optuna.Study, spec) -> None:
    from optuna_dashboard import save_note

    summary = summarize(study, spec)
    save_note(
        study,
        render_note(
            study.study_name,
            spec,
            summary,
            workers(study),
            resolve_best_model(study),
            final_trainings(study),
            spec_change_records(study),
        ),
    )


def _pareto_lines(front: list[dict]) -> list[str]:
    """A multi-objective study's front (study/pareto.py) as a Markdown table; none for one."""
    if not front:
        return []
    names = list(front[0]["values"])
    lines = [
        "",
        "## Pareto front",
        "| trial | " + " | ".join(names) + " | model |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for member in front:
        values = " | ".join(f"{member['values'][n]:.4g}" for n in names)
        kept = "kept" if member["model_kept"] else "not kept"
        lines.append(f"| {member['number']} | {values} | {kept} |")
    return lines


def render_note(
    name: str,
    spec,
    summary: StudySummary,
    joined: list[dict],
    kept: BestModel | None,
    trained: list[dict] = (),
    changes: list[dict] = (),
) -> str:
    """The note's Markdown; `kept`: the best trial's kept model (storage.resolve_best_model);
    `trained`: the study's final trainings (hpsearch train), oldest first; `changes`: the changes
    later runs made to its stored spec, oldest first."""
    states = describe_states(summary.states, none="none yet")
    best = "no trial has completed yet"
    if summary.best_number is not None:
        params = ", ".join(f"{k}={_short(v)}" for k, v in summary.best_params.items())
        best = f"{summary.best_value:.4f} (trial {summary.best_number}: {params})"
    model = "-"
    if kept is not None and kept.pointer is not None:
        model = f"best-model-trial-{kept.pointer['trial']}.zip (study artifact)"
    elif kept is not None and summary.best_number is not None:
        model = kept.problem
    lines = [
        f"# hpsearch study `{name}`",
        (
            f"task `{spec.task}` · {summary.direction} `{summary.metric}` · "
            f"model `{describe_model(spec)}` · updated {_now()}"
        ),
        "",
        "## Summary",
        "| | |",
        "| --- | --- |",
        f"| trials | {summary.n_spent}/{summary.n_trials_budget} spent ({states}) |",
        f"| best | {best} |",
        f"| best trial's metrics | {_metrics(summary.best_metrics)} |",
        (
            f"| compute spent | {summary.train_seconds:.0f} s training, {summary.n_steps} "
            "optimizer steps |"
        ),
        f"| saved by pruning | ~{summary.seconds_saved:.0f} s, {summary.steps_saved} steps |",
        *(
            [
                (
                    f"| stopped early | trials {', '.join(map(str, summary.stopped_early))}: "
                    f"~{summary.early_stopping_seconds_saved:.0f} s, "
                    f"{summary.early_stopping_steps_saved} steps saved |"
                )
            ]
            if summary.stopped_early
            else []
        ),
        *(
            [
                (
                    f"| effective batch | {summary.best_effective_batch_size} (best trial); "
                    f"{', '.join(map(str, summary.effective_batch_sizes))} across trials |"
                )
            ]
            if summary.best_effective_batch_size is not None
            else []
        ),
        f"| best model | {model} |",
        *_pareto_lines(summary.pareto),
        "",
        "## Workers",
        "| host | pid | device | joined | " + " | ".join(PACKAGES) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in PACKAGES) + " |",
    ]
    for w in joined:
        versions = " | ".join(w.get("versions", {}).get(p, "-") for p in PACKAGES)
        lines.append(f"| {w['host']} | {w['pid']} | {w['device']} | {w['joined']} | {versions} |")
    if trained:
        lines += [
            "",
            "## Final trainings (hpsearch train)",
            "| trial | data | epochs | "
            + f"{summary.metric} | trial's | directory | host | finished |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {t['trial']} | {describe_final_data(t)} | {t['epochs']:g} | {t['value']:.4f} "
            f"| {_value(t.get('trial_value'))} | `{t['out_dir']}` | {t['host']} "
            f"| {t['finished_at']} |"
            for t in trained
        ]
    if changes:
        lines += [
            "",
            "## Spec changes (taken by later runs)",
            "| key | old | new | at | host |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {c['key']} | {json.dumps(c['old'])} | {json.dumps(c['new'])} | {c['at']} | "
            f"{c['host']} |"
            for c in changes
        ]
    lines += [
        "",
        "## Spec",
        "```yaml",
        yaml.safe_dump(spec.to_dict(), sort_keys=False).rstrip(),
        "```",
    ]
    return "\n".join(lines)


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "-"


def _short(value) -> str:
    return (
        f"{value:.3g}"
        if isinstance(value, float)
        else json.dumps(value)
        if not isinstance(value, str)
        else value
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
