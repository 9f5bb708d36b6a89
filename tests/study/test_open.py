"""Studies in a real storage: created with the spec, resumed, changed specs refused, more budget."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import SpecError, StudyError
from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import check_resumable, open_study, stored_spec


@pytest.fixture
def storage(tmp_path):
    return open_storage(resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}"))


def test_create_stores_the_spec_and_resume_finds_it(storage, tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    study, changes = open_study(storage, "s", spec)
    assert changes == []
    # The spec lives in the storage, so a worker elsewhere needs nothing else.
    assert stored_spec(storage, "s") == spec
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    again, _ = open_study(storage, "s", spec)
    assert again._study_id == study._study_id
    assert len(storage.get_all_studies()) == 1


def test_changed_spec_is_refused_with_the_difference(storage, tiny_spec):
    open_study(storage, "s", parse_spec(tiny_spec, "t"))
    tiny_spec["search_space"]["learning_rate"]["float"] = [1e-5, 1e-3]
    changed = parse_spec(tiny_spec, "t")
    with pytest.raises(StudyError) as caught:
        check_resumable(storage, "s", changed)
    message = caught.value.message
    # It says what differs and how to start a new study instead.
    assert "search_space.learning_rate.float: [1e-05, 0.0003] -> [1e-05, 0.001]" in message
    assert "--study-name s-2" in message
    with pytest.raises(StudyError):
        open_study(storage, "s", changed)
    # The stored spec is untouched.
    assert stored_spec(storage, "s").search_space["learning_rate"].bounds == (1e-5, 3e-4)


def test_budget_may_change_and_is_recorded(storage, tiny_spec):
    open_study(storage, "s", parse_spec(tiny_spec, "t"))
    tiny_spec["budget"]["n_trials"] = 5
    _, changes = open_study(storage, "s", parse_spec(tiny_spec, "t"))
    assert changes == ["budget.n_trials: 2 -> 5"]
    assert stored_spec(storage, "s").budget.n_trials == 5


def test_heartbeat_settings_may_change(storage, tiny_spec):
    open_study(storage, "s", parse_spec(tiny_spec, "t"))
    tiny_spec["heartbeat"] = {"interval": 5, "grace_period": 30}
    _, changes = open_study(storage, "s", parse_spec(tiny_spec, "t"))
    # How lost trials are detected steers the run, not what the search means: it may change.
    assert changes == ["heartbeat.grace_period: 60 -> 30", "heartbeat.interval: 10 -> 5"]


def test_gpus_per_trial_may_change_and_a_stored_spec_without_it_reads_as_none(storage, tiny_spec):
    open_study(storage, "s", parse_spec(tiny_spec, "t"))
    assert stored_spec(storage, "s").resources.gpus_per_trial is None
    tiny_spec["resources"] = {"gpus_per_trial": 2}
    _, changes = open_study(storage, "s", parse_spec(tiny_spec, "t"))
    # Where trials train steers the run (each trial records its world size and effective batch).
    assert changes == ["resources.gpus_per_trial: null -> 2"]
    with pytest.raises(SpecError, match="gpus_per_trial"):
        parse_spec({**tiny_spec, "resources": {"gpus_per_trial": 0}}, "t")


def test_study_not_made_by_hpsearch_is_refused(storage, tiny_spec):
    optuna.create_study(study_name="foreign", storage=storage)
    with pytest.raises(StudyError, match="'foreign' was not created by hpsearch"):
        check_resumable(storage, "foreign", parse_spec(tiny_spec, "t"))


def test_unknown_study_lists_the_known_ones(storage, tiny_spec):
    open_study(storage, "alpha", parse_spec(tiny_spec, "t"))
    with pytest.raises(StudyError, match=r"no study 'beta' in the storage; studies there: alpha"):
        stored_spec(storage, "beta")


def test_failed_creation_leaves_no_study(storage):
    from hpsearch.storage import create_study

    # The study row is written, then its spec fails to serialize, in the same transaction.
    with pytest.raises(TypeError):
        create_study(storage, "s", "maximize", {"hpsearch_spec": object()})
    # Rolled back as one: no study without its spec, for anyone to find.
    assert storage.get_all_studies() == []
