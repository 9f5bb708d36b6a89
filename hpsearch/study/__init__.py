"""A study: created or resumed from its spec (a changed spec refused), its sampler and pruner, its
study-wide budget, its summary, the arithmetic of its effective batch, and its final trainings.
No torch or transformers here."""

from hpsearch.study.algorithms import make_pruner, make_sampler, worker_seed
from hpsearch.study.batch import WORLD_SIZE_ATTR, effective_batch, reproducing_accumulation
from hpsearch.study.budget import (
    FAIL_REASON_ATTR,
    FULL,
    INTERRUPTED,
    SPENT,
    START,
    budget_verdict,
    count_states,
    counts_toward_budget,
    n_spent,
)
from hpsearch.study.final import (
    FINAL_LOCK_PURPOSE,
    FINAL_TRAININGS_ATTR,
    FinalPlan,
    choose_trial,
    final_trainings,
    plan_final_training,
    record_final_training,
)
from hpsearch.study.open import (
    MUTABLE_KEYS,
    SPEC_ATTR,
    check_resumable,
    diff_specs,
    open_study,
    stored_spec,
    study_exists,
)
from hpsearch.study.summary import (
    EARLY_STEPS_SAVED_ATTR,
    EFFECTIVE_BATCH_ATTR,
    EVAL_EXAMPLES_ATTR,
    INTERVAL_ATTR,
    STOPPED_EARLY_ATTR,
    Confidence,
    StudySummary,
    confidence_of,
    describe_states,
    summarize,
)

__all__ = [
    "EARLY_STEPS_SAVED_ATTR",
    "EFFECTIVE_BATCH_ATTR",
    "EVAL_EXAMPLES_ATTR",
    "FAIL_REASON_ATTR",
    "FINAL_LOCK_PURPOSE",
    "FINAL_TRAININGS_ATTR",
    "FULL",
    "INTERRUPTED",
    "INTERVAL_ATTR",
    "MUTABLE_KEYS",
    "SPEC_ATTR",
    "SPENT",
    "START",
    "STOPPED_EARLY_ATTR",
    "WORLD_SIZE_ATTR",
    "Confidence",
    "FinalPlan",
    "StudySummary",
    "budget_verdict",
    "check_resumable",
    "choose_trial",
    "confidence_of",
    "count_states",
    "counts_toward_budget",
    "describe_states",
    "diff_specs",
    "effective_batch",
    "final_trainings",
    "make_pruner",
    "make_sampler",
    "n_spent",
    "open_study",
    "plan_final_training",
    "record_final_training",
    "reproducing_accumulation",
    "stored_spec",
    "study_exists",
    "summarize",
    "worker_seed",
]
