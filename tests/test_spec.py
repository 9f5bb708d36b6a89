"""Spec parsing: every shape or value mistake is rejected with one line naming the key."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import FloatParam, StudySpec, find_spec_file, load_spec_file, parse_spec
from tests.conftest import REPO


def reject(spec: dict) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec, "test.yaml")
    message = caught.value.message
    # A rejection is one line that says where it came from.
    assert "\n" not in message
    assert message.startswith("test.yaml: ")
    return message


def test_default_study_spec_is_valid():
    spec = load_spec_file(REPO / "studies" / "sentiment.yaml")
    # The shipped default searches the learning rate on a log scale, for accuracy.
    assert spec.objective.eval_key == "eval_accuracy"
    assert spec.objective.direction == "maximize"
    assert isinstance(spec.search_space["learning_rate"], FloatParam)
    assert spec.search_space["learning_rate"].log


def test_stored_form_round_trips(tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    # What is stored with the study parses back to the same spec.
    assert StudySpec.model_validate(spec.to_dict()) == spec
    assert spec.to_dict()["search_space"]["learning_rate"] == {"float": [1e-5, 3e-4], "log": True, "step": None}


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s.update(modle="x"), "modle: unknown key"),
        (lambda s: s["dataset"].update(max_train_sample=10), "dataset.max_train_sample: unknown key (did you mean max_train_samples?)"),
        (lambda s: s.pop("model"), "model: missing"),
        (lambda s: s.pop("budget"), "budget: missing"),
        (lambda s: s["budget"].update(n_trials=0), "budget.n_trials: Input should be greater than or equal to 1"),
        (lambda s: s["budget"].update(n_trials="many"), "budget.n_trials: Input should be a valid integer"),
        (lambda s: s["dataset"].update(max_length="long"), "dataset.max_length"),
        (lambda s: s["dataset"].update(eval_fraction=1.5), "dataset.eval_fraction: Input should be less than 1"),
        (lambda s: s["dataset"].update(eval_split="validation", eval_fraction=0.2), "give one of eval_split, eval_source, eval_fraction"),
        (lambda s: s["search_space"].update(learning_rate={"float": [1e-3, 1e-5]}), "search_space.learning_rate: range [0.001, 1e-05] is inverted"),
        (lambda s: s["search_space"].update(learning_rate={"float": [1e-3, 1e-3]}), "search_space.learning_rate: range [0.001, 0.001] is empty"),
        (lambda s: s["search_space"].update(weight_decay={"float": [0.0, 0.1], "log": True}), "search_space.weight_decay: log: true needs low > 0"),
        (lambda s: s["search_space"].update(num_train_epochs={"int": [1, 3], "step": 0}), "search_space.num_train_epochs.step: Input should be greater than 0"),
        (lambda s: s["search_space"].update(num_train_epochs={"int": [1.5, 3]}), "search_space.num_train_epochs"),
        (lambda s: s["search_space"].update(per_device_train_batch_size={"choice": []}), "search_space.per_device_train_batch_size.choice: List should have at least 1 item"),
        (lambda s: s["search_space"].update(per_device_train_batch_size={"choice": [8, 8]}), "choices must be distinct"),
        (lambda s: s["search_space"].update(seed={"range": [1, 2]}), "search_space.seed: a parameter needs exactly one of float"),
        (lambda s: s["search_space"].update(x={"float": [0, 1], "int": [0, 1]}), "search_space.x: a parameter needs exactly one of"),
        (lambda s: s["search_space"].update(learning_rate={"float": [1e-5, 1e-3], "bins": 3}), "search_space.learning_rate.bins: unknown key"),
        (lambda s: s.update(search_space={}), "search_space: Dictionary should have at least 1 item"),
        (lambda s: s["training"].update(learning_rate=1e-4), "learning_rate is both searched and fixed"),
        (lambda s: s["objective"].update(metric="bleu"), "objective.metric: unknown metric 'bleu'; the evaluation returns accuracy, f1_macro"),
        (lambda s: s["objective"].update(metric="loss", direction="maximize"), "direction maximize for loss would search for the worst model; use direction: minimize"),
        (lambda s: s["objective"].update(direction="up"), "objective.direction: Input should be 'maximize' or 'minimize'"),
        (lambda s: s.update(sampler={"name": "grid"}), "sampler.name: Input should be 'tpe', 'random', 'gp', 'cmaes' or 'qmc'"),
        (lambda s: s.update(pruner={"name": "hyperband", "evals_per_epoch": 0}), "pruner.evals_per_epoch: Input should be greater than or equal to 1"),
        (lambda s: s.update(heartbeat={"interval": 10, "grace_period": 5}), "heartbeat: grace_period (5s) must exceed interval (10s)"),
        (lambda s: s.update(heartbeat={"max_retries": -1}), "heartbeat.max_retries: Input should be greater than or equal to 0"),
        (lambda s: s.update(pruner={"name": "patient"}), "pruner.name: Input should be 'hyperband', 'successive_halving', 'median' or 'none'"),
    ],
)
def test_rejects_mistakes_naming_the_key(tiny_spec, mutate, expected):
    mutate(tiny_spec)
    assert expected in reject(tiny_spec)


def test_metric_accepts_eval_prefix_and_infers_direction(tiny_spec):
    tiny_spec["objective"] = {"metric": "eval_loss"}
    spec = parse_spec(tiny_spec, "t")
    # eval_loss and loss are the same metric; a loss is minimized unless told otherwise.
    assert spec.objective.metric == "loss"
    assert spec.objective.direction == "minimize"


def test_scientific_notation_without_dot_is_a_number(tiny_spec):
    # YAML 1.1 reads 1e-5 as a string; a user writes it anyway and means a number.
    tiny_spec["search_space"]["learning_rate"] = {"float": ["1e-5", "3e-4"], "log": True}
    assert parse_spec(tiny_spec, "t").search_space["learning_rate"].bounds == (1e-5, 3e-4)


def test_non_mapping_and_empty_and_bad_yaml(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- model\n- dataset\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    # Each file is rejected with its name and what is wrong with it.
    with pytest.raises(SpecError, match=r"list.yaml: expected a mapping of keys"):
        load_spec_file(listed)
    with pytest.raises(SpecError, match=r"empty.yaml: the spec is empty"):
        load_spec_file(empty)
    with pytest.raises(SpecError, match=r"broken.yaml: line \d+: invalid YAML"):
        load_spec_file(broken)


def test_find_spec_by_name_or_path(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "sentiment.yaml").write_text("x: 1\n")
    # A name is looked up in studies/; a path is used as it is.
    assert find_spec_file("sentiment", studies) == studies / "sentiment.yaml"
    assert find_spec_file(str(studies / "sentiment.yaml"), studies) == studies / "sentiment.yaml"
    with pytest.raises(SpecError, match=r"no spec for study 'other'.*specs there: sentiment"):
        find_spec_file("other", studies)
    with pytest.raises(SpecError, match=r"spec file missing.yaml does not exist"):
        find_spec_file("missing.yaml", studies)
