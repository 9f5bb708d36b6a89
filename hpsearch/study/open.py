"""A study in the storage: created with its spec stored beside it, resumed, or refused if changed.

The spec is stored as a study user attribute, written in the transaction that creates the study
(no process ever sees the study without it), so a worker anywhere rebuilds it from the storage
alone. A later run may change only what steers a run (hpsearch.study.changes decides which keys);
a change of what a trial's value means is refused before anything is written, since the values of
two different searches would be mixed in one study. A change that is taken updates the stored spec
and is appended to the study's record of changes (key, old and new value, when, which host).
"""

from __future__ import annotations

import datetime
import socket
from typing import Any

import optuna

from hpsearch.errors import StudyError
from hpsearch.spec import StudySpec, parse_spec
from hpsearch.storage import cached, create_study, study_lock, study_user_attr_list
from hpsearch.study.algorithms import make_pruner, make_sampler, max_evaluations
from hpsearch.study.budget import n_spent
from hpsearch.study.changes import SpecChange, meaning_changes, spec_changes

SPEC_ATTR = "hpsearch_spec"
# The study's record of the changes taken by later runs: a list of {key, old, new, at, host}.
SPEC_CHANGES_ATTR = "hpsearch_spec_changes"
SPEC_LOCK_PURPOSE = "spec"


def study_exists(storage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def stored_spec(storage, name: str) -> StudySpec:
    """The spec of an existing hpsearch study, or a StudyError naming the studies there are."""
    if not study_exists(storage, name):
        names = sorted(s.study_name for s in storage.get_all_studies())
        known = f"; studies there: {', '.join(names)}" if names else "; the storage holds no study"
        raise StudyError(f"no study {name!r} in the storage{known}")
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    if SPEC_ATTR not in attrs:
        raise StudyError(
            f"study {name!r} was not created by hpsearch (it has no stored spec); "
            "pick another study name"
        )
    return parse_spec(attrs[SPEC_ATTR], f"stored spec of study {name!r}")


def check_resumable(storage, name: str, spec: StudySpec) -> int:
    """Trials already spent by the study (0 for a new one); refuses a change of meaning before any
    work."""
    if not study_exists(storage, name):
        return 0
    _refuse_changes(name, stored_spec(storage, name), spec)
    return n_spent(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))


def open_study(storage, name: str, spec: StudySpec) -> tuple[optuna.Study, list[str]]:
    """Create the study or resume it; returns it and the changes this call made to its stored spec.

    Its sampler keeps the spec's seed: a process that samples calls seed_sampler (algorithms.py)
    first, for a seed of its own.
    """
    if not study_exists(storage, name):
        try:
            create_study(storage, name, spec.objective.direction, {SPEC_ATTR: spec.to_dict()})
            return _load(storage, name, spec), []
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another process created it a moment ago: resume it like any existing study
    existing = stored_spec(storage, name)
    _refuse_changes(name, existing, spec)
    study = _load(storage, name, spec)
    if not spec_changes(existing, spec):
        return study, []  # the common case: the same spec, no lock taken
    return study, [str(change) for change in _take_changes(storage, study, spec)]


def _take_changes(storage, study: optuna.Study, spec: StudySpec) -> list[SpecChange]:
    """Store `spec` and record how it differs from the stored one, under the study's spec lock: two
    runs started with the same new spec at once record it once (the second finds it stored)."""
    with study_lock(storage, study.study_name, SPEC_LOCK_PURPOSE):
        stored = stored_spec(storage, study.study_name)  # afresh, under the lock
        _refuse_changes(study.study_name, stored, spec)
        changes = spec_changes(stored, spec)
        if not changes:
            return []
        at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        host = socket.gethostname()
        records = [
            {"key": c.key, "old": c.old, "new": c.new, "at": at, "host": host} for c in changes
        ]
        # The record first: a crash between the two writes leaves a change recorded twice (the
        # next run records it again), never a stored spec changed without its record.
        study.set_user_attr(
            SPEC_CHANGES_ATTR, study_user_attr_list(study, SPEC_CHANGES_ATTR) + records
        )
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return changes


def spec_change_records(study: optuna.Study) -> list[dict[str, Any]]:
    """The changes later runs made to the study's stored spec, oldest first."""
    return study_user_attr_list(study, SPEC_CHANGES_ATTR)


def _refuse_changes(name: str, existing: StudySpec, spec: StudySpec) -> None:
    refused = meaning_changes(existing, spec)
    if refused:
        shown = "; ".join(map(str, refused[:3]))
        if len(refused) > 3:
            shown += f"; and {len(refused) - 3} more"
        raise StudyError(
            f"study {name!r} in the storage was created from a different spec ({shown}), which "
            f"changes what its trials' values mean; to search with the new spec, start a new study "
            f"with --study-name {name}-2, or restore the old values to resume"
        )


def _load(storage, name: str, spec: StudySpec) -> optuna.Study:
    return optuna.load_study(
        study_name=name,
        storage=cached(storage),
        sampler=make_sampler(spec.sampler),
        pruner=make_pruner(spec.pruner, max_evaluations(spec)),
    )
