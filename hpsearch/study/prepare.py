"""A study made ready for workers that join it later (`hpsearch create`): created from its spec, or
checked against the stored one, with its warm-start configurations queued first, and no trial run.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from hpsearch.spec import StudySpec
from hpsearch.study.budget import n_spent
from hpsearch.study.open import check_resumable, open_study
from hpsearch.study.warm_start import enqueue_warm_start, plan_warm_start


@dataclass(frozen=True)
class PreparedStudy:
    study: optuna.Study
    changes: list[str]  # what changed in the stored spec (open_study)
    warm_start: list[str]  # what was queued first (enqueue_warm_start), or nothing
    n_spent: int  # trials of the budget spent so far


def prepare_study(storage, name: str, spec: StudySpec) -> PreparedStudy:
    """Check, create or update, and queue: every refusal comes before the first write."""
    check_resumable(storage, name, spec)
    plans = plan_warm_start(storage, name, spec)
    study, changes = open_study(storage, name, spec)
    queued = enqueue_warm_start(study, plans, spec.budget.n_trials)
    return PreparedStudy(study, changes, queued, n_spent(study.get_trials(deepcopy=False)))
