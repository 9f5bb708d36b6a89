"""Each part of Optuna's private API that hpsearch uses (hpsearch/storage/optuna_private.py),
checked against the installed Optuna: a release that renames one, removes it, or stops calling it
where hpsearch hooks in fails the test named after it."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.storage import optuna_private as private


@pytest.fixture
def storage(tmp_path):
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'private.db'}")


@pytest.fixture
def hooked(tmp_path):
    """An RDB storage built on the hooks class, recording what Optuna calls on it."""

    class Recording(private.rdb_storage_with_hooks()):
        def __init__(self, *args, **kwargs):
            self.calls: list[str] = []
            super().__init__(*args, **kwargs)

        def create_trial_row(self, study_id, template_trial=None):
            self.calls.append("create_trial_row")
            return super().create_trial_row(study_id, template_trial)

        def stale_trial_ids(self, study_id):
            self.calls.append("stale_trial_ids")
            return super().stale_trial_ids(study_id)

    return Recording(f"sqlite:///{tmp_path / 'hooked.db'}", heartbeat_interval=1, grace_period=2)


def test_study_storage_and_ids(storage):
    study = optuna.create_study(storage=storage, study_name="ids")
    trial = study.ask()
    # Study._storage is the storage (behind Optuna's cache), _study_id and _trial_id its row ids.
    assert private.backend_of(study) is storage
    assert private.storage_of(study) is study._storage
    assert private.study_id_of(study) == storage.get_study_id_from_name("ids")
    expected = storage.get_trial_id_from_study_id_trial_number(private.study_id_of(study), 0)
    assert private.trial_id_of(trial) == expected
    # A FrozenTrial carries the same id, and a hand-built one can be given it.
    frozen = study.trials[0]
    assert private.trial_id_of(frozen) == expected
    private.set_trial_id(frozen, 12345)
    assert frozen._trial_id == 12345


def test_optuna_wraps_an_rdb_storage_in_its_cache(storage):
    optuna.create_study(storage=storage, study_name="cached")
    study = optuna.load_study(study_name="cached", storage=storage)
    # load_study puts Optuna's _CachedStorage in front of an RDB storage: what the hooks extend.
    assert isinstance(study._storage, optuna.storages._CachedStorage)
    assert issubclass(private.cache_with_hooks(), optuna.storages._CachedStorage)


def test_the_cache_remembers_unfinished_trials(storage):
    study = optuna.create_study(storage=storage, study_name="waiting")
    study.enqueue_trial({"x": 1.0})
    cache = private.cache_with_hooks()(storage)
    study_id = private.study_id_of(study)
    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    # The cache's backend is the storage; a remembered trial is served from the cache as
    # unfinished, so a state another process writes is read again.
    assert cache.backend is storage
    cache.remember_unfinished(study_id, waiting)
    assert cache._studies[study_id].unfinished_trial_ids == {private.trial_id_of(waiting[0])}
    storage.set_trial_state_values(private.trial_id_of(waiting[0]), TrialState.RUNNING)
    assert cache.get_trial(private.trial_id_of(waiting[0])).state == TrialState.RUNNING


def test_a_session_commits_and_reads_the_models(storage):
    study = optuna.create_study(storage=storage, study_name="models")
    models = private.rdb_models()
    study_id = private.study_id_of(study)
    # A session of the storage commits at the end of its block; the ORM models name the tables
    # and the columns hpsearch reads and writes (key, value_json, state, number).
    with private.session_scope(storage) as session:
        row = models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        session.add(
            models.StudySystemAttributeModel(study_id=row.study_id, key="k", value_json='"v"')
        )
    assert storage.get_study_system_attrs(study_id)["k"] == "v"
    assert models.StudyModel.find_by_name is not None
    for model, columns in (
        (models.TrialModel, ("trial_id", "number", "study_id", "state", "datetime_start")),
        (models.TrialUserAttributeModel, ("trial_id", "key", "value_json")),
        (models.TrialSystemAttributeModel, ("trial_id", "key", "value_json")),
        (models.StudyUserAttributeModel, ("study_id", "key", "value_json")),
        (models.StudySystemAttributeModel, ("study_id", "key", "value_json")),
        (models.TrialParamModel, ("trial_id", "param_name", "param_value", "distribution_json")),
        (models.TrialHeartbeatModel, ("trial_id", "heartbeat")),
    ):
        assert set(columns) <= set(model.__table__.columns.keys()), model.__name__


def test_a_session_rolls_back_what_raised(storage):
    study = optuna.create_study(storage=storage, study_name="rollback")
    models = private.rdb_models()
    study_id = private.study_id_of(study)
    # A block that raises commits nothing, and the error comes out.
    with pytest.raises(RuntimeError), private.session_scope(storage) as session:
        session.add(models.StudySystemAttributeModel(study_id=study_id, key="k", value_json="1"))
        session.flush()
        raise RuntimeError("stop")
    assert "k" not in storage.get_study_system_attrs(study_id)


def test_every_trial_creation_goes_through_create_trial_row(hooked):
    study = optuna.create_study(storage=hooked, study_name="create")
    study.ask()
    study.enqueue_trial({"x": 1.0})
    study.add_trial(optuna.create_trial(state=TrialState.COMPLETE, value=1.0))
    # ask (through Optuna's cache), enqueue and add_trial each create their row through the hook.
    assert hooked.calls.count("create_trial_row") == 3


def test_the_stale_trial_sweep_asks_stale_trial_ids(hooked):
    study = optuna.create_study(storage=hooked, study_name="stale")
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    # Optuna's sweep asks the storage for its stale trials through the hook.
    assert "stale_trial_ids" in hooked.calls


def test_the_row_steps_of_a_trial(hooked):
    study = optuna.create_study(storage=hooked, study_name="rows")
    study_id = private.study_id_of(study)
    models = private.rdb_models()
    template = optuna.create_trial(state=TrialState.WAITING, params={}, distributions={})
    with private.session_scope(hooked) as session:
        row = hooked.prepare_trial_row(study_id, template, session)
        session.flush()
        # A prepared row is numbered and WAITING; attributes and values are set in the session.
        assert row.number == 0 and row.state == TrialState.WAITING
        hooked.set_trial_attr_in(session, models.TrialUserAttributeModel, row.trial_id, "a", 1)
        row.state = TrialState.RUNNING
        hooked.set_trial_value_in(session, row, 0, 0.5)
    trial = study.trials[0]
    assert trial.user_attrs == {"a": 1} and trial.values == [0.5]


def test_a_finished_trial_is_not_updatable(storage):
    study = optuna.create_study(storage=storage, study_name="finished")
    trial = study.ask()
    study.tell(trial, 1.0)
    # check_trial_is_updatable refuses a finished trial with Optuna's own error.
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.check_trial_is_updatable(private.trial_id_of(trial), TrialState.COMPLETE)


@pytest.mark.parametrize("name", private.CALLED_BY_OPTUNAS_CACHE)
def test_optunas_cache_calls_these_private_methods(tmp_path, name):
    calls = []

    class Recording(optuna.storages.RDBStorage):
        pass

    def recording(method):
        def call(self, *args, **kwargs):
            calls.append(method)
            return getattr(optuna.storages.RDBStorage, method)(self, *args, **kwargs)

        return call

    setattr(Recording, name, recording(name))
    storage = Recording(f"sqlite:///{tmp_path / 'cache.db'}")
    optuna.create_study(storage=storage, study_name="calls")
    study = optuna.load_study(study_name="calls", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study.best_trial  # noqa: B018 - read for the call it makes
    # Optuna's cache reaches the RDB storage through this private method.
    assert name in calls
