"""A study that searches its data augmentation, end to end through `hpsearch run`."""

from __future__ import annotations

from hpsearch.study import final_trainings
from tests.conftest import run_hpsearch, run_study


def test_a_study_searches_its_augmentation(workdir, tiny_spec, cache_dir):
    spec = {
        **tiny_spec,
        # 48 rows (and up to 2 copies of each) at batch 32: a few steps a trial.
        "dataset": {**tiny_spec["dataset"], "max_train_samples": 48},
        "search_space": {"learning_rate": tiny_spec["search_space"]["learning_rate"]},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": 32},
        "augment": {
            "random_swap": {"float": [0.05, 0.3]},
            "random_deletion": 0.1,
            "synonym_replacement": {"float": [0.0, 0.2]},
            "copies": {"int": [1, 2]},
        },
        "sampler": {"name": "random", "seed": 3},
    }
    before = set(cache_dir.glob("augment-*"))
    _, study = run_study(workdir, "augmented", spec)
    trials = study.trials
    # Both trials trained to the end, each with its own draw of the augmentation settings.
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        assert {"augment.random_swap", "augment.synonym_replacement", "augment.copies"} <= set(
            trial.params
        )
        assert 0.05 <= trial.params["augment.random_swap"] <= 0.3
    # Each trial's augmented training set was cached once, by its settings and seed.
    assert len(set(cache_dir.glob("augment-*")) - before) == 2
    # The augmentation settings show with the trial's other parameters.
    shown = run_hpsearch("best", "--study", "augmented", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert "augment.copies" in shown.stdout
    # `train` trains the best trial's configuration on the rows its augmentation makes: the same
    # settings and seed, so the same cached rows, the 48 originals and their copies.
    best = study.best_trial
    trained = run_hpsearch("train", "--study", "augmented", str(workdir / "final"), cwd=workdir)
    assert trained.returncode == 0, trained.stderr
    record = final_trainings(study)[-1]
    assert record["trial"] == best.number
    assert record["n_train_examples"] == 48 * (1 + best.params["augment.copies"])
    assert len(set(cache_dir.glob("augment-*")) - before) == 2


def test_augmentation_of_a_seq2seq_study_is_refused_before_anything_runs(workdir, tiny_spec):
    from tests.conftest import write_spec

    spec = {
        **tiny_spec,
        "task": "seq2seq",
        "dataset": {"source": "pairs.csv", "text": "a", "target": "b"},
        "objective": {"metric": "loss"},
        "augment": {"random_swap": 0.1},
    }
    write_spec(workdir, "s2s", spec)
    result = run_hpsearch("run", "--study", "s2s", cwd=workdir)
    # One Error: line naming the key, exit 2, and no storage written.
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ") and "augment:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "storage" / "hpsearch.db").exists()
