"""What a person watches during `hpsearch run` (a live bar and one line per finished trial) and
during `hpsearch train` (a live bar of optimizer steps and one line per evaluation)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hpsearch.study import FAIL_REASON_ATTR, count_states, n_spent
from hpsearch.study.quality_pruning import REPORTS_ATTR
from hpsearch.views.tables import format_seconds, format_value

if TYPE_CHECKING:
    from typing import Self

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


class RunProgress:
    """A study-wide progress bar, fed by the optimize callback after every trial."""

    def __init__(self, console: Console, study: optuna.Study, metric: str, n_trials: int):
        self.console = console
        self.study = study
        self.metric = metric
        self.n_trials = n_trials
        self.started = time.monotonic()
        trials = study.get_trials(deepcopy=False)
        self.n_done_at_start = n_spent(trials)
        self.reported = {t.number for t in trials if t.state.is_finished()}
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[tally]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task(
            study.study_name, total=n_trials, completed=self.n_done_at_start, tally="", eta=""
        )

    def __enter__(self) -> Self:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def poll(self) -> None:
        """Report trials that other processes (supervised workers) finished since the last poll."""
        for trial in self.study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in self.reported:
                self.on_trial_end(self.study, trial)

    def on_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.reported.add(trial.number)
        trials = study.get_trials(deepcopy=False)
        done = n_spent(trials)
        tally, eta = self._tally(trials), self._eta(done)
        self.bar.update(self.task, completed=done, tally=tally, eta=eta)
        line = (
            f"{describe_trial(trial, self.metric)}  [dim]{done}/{self.n_trials}  {tally}  {eta}[/]"
        )
        self.console.print(line, soft_wrap=True)

    def _tally(self, trials: list[FrozenTrial]) -> str:
        states = count_states(trials)
        best = ""
        if states.get("COMPLETE") and len(self.study.directions) > 1:
            best = f", Pareto front of {len(self.study.best_trials)}"
        elif states.get("COMPLETE"):
            best = f", best {self.study.best_value:.4f}"
        complete, pruned, failed = (states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))
        return f"{complete} complete, {pruned} pruned, {failed} failed{best}"

    def _eta(self, done: int) -> str:
        finished_here = done - self.n_done_at_start
        if finished_here <= 0 or done >= self.n_trials:
            return ""
        per_trial = (time.monotonic() - self.started) / finished_here
        return f"~{format_seconds(per_trial * (self.n_trials - done))} left"


class TrainingProgress:
    """A bar of optimizer steps done and planned, with elapsed time and time left, and one line per
    evaluation; called with (step, steps planned, an evaluation's metrics or None) by the final
    training's progress callback. `trial_value`: what the trial recorded, shown at the last
    evaluation."""

    def __init__(
        self, console: Console, description: str, metric: str, trial_value: float | None = None
    ):
        self.console = console
        self.metric = metric
        self.trial_value = trial_value
        self.started: float | None = None
        self.n_evals = 0
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[latest]}"),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task(description, total=None, latest="")

    def __enter__(self) -> Self:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def __call__(self, step: int, n_steps: int, metrics: dict[str, float] | None) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.bar.update(self.task, completed=step, total=n_steps)
        if metrics is None:
            return
        self.n_evals += 1
        value = metrics.get(self.metric)
        shown = f"{self.metric}={value:.4f}" if value is not None else f"no {self.metric}"
        self.bar.update(self.task, latest=shown)
        elapsed = time.monotonic() - self.started
        left = (
            f", ~{format_seconds(elapsed * (n_steps - step) / step)} left"
            if 0 < step < n_steps
            else ""
        )
        recorded = ""
        if step >= n_steps and self.trial_value is not None and value is not None:
            recorded = (
                f"  (the trial recorded {self.trial_value:.4f}: {value - self.trial_value:+.4f})"
            )
        self.console.print(
            f"evaluation {self.n_evals} at step {step}/{n_steps}: {shown}{recorded}  "
            f"[dim]{format_seconds(elapsed)} elapsed{left}[/]"
        )


def describe_trial(trial: FrozenTrial, metric: str) -> str:
    state = trial.state.name
    style = STATE_STYLE.get(state, "white")
    seconds = trial.user_attrs.get("train_seconds")
    took = f" {format_seconds(seconds)}" if seconds is not None else ""
    # Reasons and values are text, not markup: a gloo error names its source file in brackets.
    params = escape(" ".join(f"{k}={format_value(v)}" for k, v in trial.params.items()))
    if trial.state == TrialState.COMPLETE:
        outcome = f"{metric}={trial.values[0]:.4f}"  # a multi-objective trial: its first
    elif trial.state == TrialState.PRUNED:
        # A multi-objective trial's reports are a user attribute (study/quality_pruning.py).
        reported = trial.intermediate_values or {
            int(k): v for k, v in trial.user_attrs.get(REPORTS_ATTR, {}).items()
        }
        last = reported.get(max(reported, default=0))
        at = f" at eval {trial.user_attrs.get('n_evals', '?')}"
        outcome = f"{metric}={last:.4f}{at}" if last is not None else at.strip()
    else:
        outcome = escape(trial.user_attrs.get(FAIL_REASON_ATTR, "lost (worker died)"))
    return f"trial {trial.number:>3} [{style}]{state:<8}[/] {outcome}{took}  [dim]{params}[/]"
