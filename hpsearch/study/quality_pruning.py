"""Pruning a multi-objective study: on its first (quality) objective, with the study's own pruner.

Optuna refuses `trial.report` and `should_prune` in a multi-objective study (a long-standing
request in its issues) and its pruners read `study.direction`, which such a study does not have.
hpsearch's rule: a trial reports its first objective, a metric of the evaluation, at each
evaluation, and the spec's pruner decides on a single-objective view of the study: the same
trials, the first direction, the first value of each complete trial, each trial's reports as its
intermediate values. A trial is thus stopped exactly when a single-objective study of that metric
would stop it; its costs (latency, size, ...) are measured at the end and play no part. A cheap
model that learns slowly can be pruned: a quality rule, said so in docs/search.md.

The reports are kept in the trial user attribute REPORTS_ATTR ({evaluation: value}), not as
Optuna's intermediate values: Optuna's TPE sampler reads a pruned trial's intermediate values with
`study.direction`, and fails on a multi-objective study that has them.
"""

from __future__ import annotations

import copy

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpsearch.storage.optuna_private import storage_of, trial_id_of
from hpsearch.study.algorithms import make_pruner, max_evaluations

REPORTS_ATTR = "first_objective_reports"


def _first_objective(trial: FrozenTrial) -> FrozenTrial:
    reports = trial.user_attrs.get(REPORTS_ATTR)
    several = trial.values is not None and len(trial.values) > 1
    if not several and reports is None:
        return trial
    seen = copy.copy(trial)
    if several:
        seen.values = trial.values[:1]
    if reports is not None:
        seen.intermediate_values = {int(step): value for step, value in reports.items()}
    return seen


class FirstObjectiveStorage(BaseStorage):
    """A storage seen through its studies' first objective: its direction, each trial's first
    value. Everything else, writes included, goes to the storage itself."""

    def __init__(self, storage: BaseStorage):
        self.inner = storage

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def get_study_directions(self, study_id):
        return self.inner.get_study_directions(study_id)[:1]

    def get_trial(self, trial_id):
        return _first_objective(self.inner.get_trial(trial_id))

    def get_all_trials(self, study_id, deepcopy=True, states=None):
        return [_first_objective(t) for t in self.inner.get_all_trials(study_id, deepcopy, states)]

    # The rest as the storage does it (BaseStorage declares them abstract).
    def create_new_study(self, directions, study_name=None):
        return self.inner.create_new_study(directions, study_name)

    def delete_study(self, study_id):
        return self.inner.delete_study(study_id)

    def set_study_user_attr(self, study_id, key, value):
        return self.inner.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id, key, value):
        return self.inner.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name):
        return self.inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id):
        return self.inner.get_study_name_from_id(study_id)

    def get_study_user_attrs(self, study_id):
        return self.inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id):
        return self.inner.get_study_system_attrs(study_id)

    def get_all_studies(self):
        return self.inner.get_all_studies()

    def create_new_trial(self, study_id, template_trial=None):
        return self.inner.create_new_trial(study_id, template_trial)

    def set_trial_param(self, trial_id, param_name, param_value_internal, distribution):
        return self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def set_trial_state_values(self, trial_id, state, values=None):
        return self.inner.set_trial_state_values(trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id, step, intermediate_value):
        return self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id, key, value):
        return self.inner.set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id, key, value):
        return self.inner.set_trial_system_attr(trial_id, key, value)


class QualityPruning:
    """A multi-objective trial as the pruning callback sees it (`report`, `should_prune`, as an
    optuna.Trial): reports its first objective and asks the spec's pruner about it."""

    def __init__(self, trial: optuna.Trial, pruner: optuna.pruners.BasePruner):
        self.storage = storage_of(trial.study)
        self.trial_id = trial_id_of(trial)
        self.reports = dict(trial.user_attrs.get(REPORTS_ATTR, {}))  # a resumed trial's so far
        self.view = FirstObjectiveStorage(self.storage)
        self.study = optuna.load_study(
            study_name=trial.study.study_name,
            storage=self.view,
            sampler=optuna.samplers.RandomSampler(),  # never asked: the view only prunes
            pruner=pruner,
        )

    def report(self, value: float, step: int) -> None:
        self.reports[str(step)] = float(value)
        self.storage.set_trial_user_attr(self.trial_id, REPORTS_ATTR, self.reports)

    def should_prune(self) -> bool:
        return self.study.pruner.prune(self.study, self.view.get_trial(self.trial_id))


def reporter_for(trial: optuna.Trial, spec) -> optuna.Trial | QualityPruning:
    """What the pruning callback reports to: the trial itself, or, in a multi-objective study, its
    first objective with the spec's pruner."""
    if not spec.is_multi_objective:
        return trial
    return QualityPruning(trial, make_pruner(spec.pruner, max_evaluations(spec)))
