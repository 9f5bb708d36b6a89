"""A study in the storage: created with its spec stored beside it, resumed, or refused if changed.

The spec is stored as a study user attribute, written in the transaction that creates the study
(no process ever sees the study without it), so a worker anywhere rebuilds it from the storage
alone. The budget is the one part a later run may change (to extend a study); any other difference
is refused, since trials of two different searches would be mixed in one study.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from hpsearch.errors import StudyError
from hpsearch.spec import StudySpec, parse_spec
from hpsearch.storage import cached, create_study
from hpsearch.study.algorithms import make_pruner, make_sampler, max_evaluations
from hpsearch.study.budget import n_spent

SPEC_ATTR = "hpsearch_spec"
# Parts of a spec a later run may change: they steer the run, not what the search means.
MUTABLE_KEYS = ("budget", "heartbeat", "resources")


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
    """Trials the study already spent (0 for a new one); refuses a changed spec before any work."""
    if not study_exists(storage, name):
        return 0
    _refuse_changes(name, stored_spec(storage, name), spec)
    return n_spent(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))


def open_study(storage, name: str, spec: StudySpec) -> tuple[optuna.Study, list[str]]:
    """Create the study or resume it; returns it and the changes made to its stored budget.

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
    old, new = existing.to_dict(), spec.to_dict()
    changes = [
        line for key in MUTABLE_KEYS for line in diff_specs(old[key], new[key], prefix=f"{key}.")
    ]
    if changes:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study, changes


def _refuse_changes(name: str, existing: StudySpec, spec: StudySpec) -> None:
    differences = diff_specs(existing.to_dict(), spec.to_dict(), ignore=MUTABLE_KEYS)
    if differences:
        shown = "; ".join(differences[:3])
        if len(differences) > 3:
            shown += f"; and {len(differences) - 3} more"
        raise StudyError(
            f"study {name!r} in the storage was created from a different spec ({shown}); "
            f"to search with the new spec, start a new study with --study-name {name}-2, "
            "or restore the old values to resume"
        )


def _load(storage, name: str, spec: StudySpec) -> optuna.Study:
    return optuna.load_study(
        study_name=name,
        storage=cached(storage),
        sampler=make_sampler(spec.sampler),
        pruner=make_pruner(spec.pruner, max_evaluations(spec)),
    )


def diff_specs(old: Any, new: Any, *, prefix: str = "", ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted paths whose values differ, as 'path: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            if key in ignore:
                continue
            lines += diff_specs(old.get(key), new.get(key), prefix=f"{prefix}{key}.")
        return lines
    if old != new:
        return [f"{prefix.rstrip('.')}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []
