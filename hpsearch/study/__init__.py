"""A study: created or resumed from its spec (a changed spec refused), its sampler and pruner, its
study-wide budget and its summary. No torch or transformers here."""

from hpsearch.study.algorithms import make_pruner, make_sampler, worker_seed
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
    "FULL",
    "INTERRUPTED",
    "INTERVAL_ATTR",
    "MUTABLE_KEYS",
    "SPEC_ATTR",
    "SPENT",
    "START",
    "STOPPED_EARLY_ATTR",
    "Confidence",
    "StudySummary",
    "budget_verdict",
    "check_resumable",
    "confidence_of",
    "count_states",
    "counts_toward_budget",
    "describe_states",
    "diff_specs",
    "make_pruner",
    "make_sampler",
    "n_spent",
    "open_study",
    "stored_spec",
    "study_exists",
    "summarize",
    "worker_seed",
]
