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
from hpsearch.storage import cached, create_study, study_user_attr_list, update_study_user_attrs
from hpsearch.study.algorithms import make_pruner, make_sampler, max_evaluations
from hpsearch.study.budget import n_spent
from hpsearch.study.changes import SpecChange, meaning_changes, spec_changes

SPEC_ATTR = "hpsearch_spec"
# The study's record of the changes taken by later runs: a list of {key, old, new, at, host}.
SPEC_CHANGES_ATTR = "hpsearch_spec_changes"


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
            directions = [objective.direction for objective in spec.all_objectives]
            create_study(storage, name, directions, {SPEC_ATTR: spec.to_dict()})
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
    """Store `spec` and record how it differs from the stored one, in one transaction that reads
    the stored spec afresh (storage/record.py): two runs started with the same new spec at once
    record it once (the second finds it stored), and the stored spec never changes without its
    record."""
    taken: list[SpecChange] = []
    at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    host = socket.gethostname()

    def store(attrs: dict[str, Any]) -> dict[str, Any]:
        stored = parse_spec(attrs[SPEC_ATTR], f"stored spec of study {study.study_name!r}")
        _refuse_changes(study.study_name, stored, spec)  # raises: nothing is written
        taken[:] = spec_changes(stored, spec)
        if not taken:
            return {}
        records = [
            {"key": c.key, "old": c.old, "new": c.new, "at": at, "host": host} for c in taken
        ]
        return {
            SPEC_CHANGES_ATTR: list(attrs.get(SPEC_CHANGES_ATTR) or []) + records,
            SPEC_ATTR: spec.to_dict(),
        }

    update_study_user_attrs(study, store)
    return taken


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
