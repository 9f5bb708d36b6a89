"""Conditional parameters (`when:`) and per-condition alternatives: the syntax, its errors, and what
real Optuna studies sample from them."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import StudySpec, corner_values, parse_spec, suggest_params
from hpsearch.spec.condition import sampling_order
from hpsearch.study import make_sampler

BATCH = "per_device_train_batch_size"

# A batch size choice; a learning-rate range per batch size; freeze_layers only at batch 32, and
# weight_decay only where freeze_layers is 2 (a condition on a conditional parameter).
CONDITIONAL_SPACE = {
    "weight_decay": {"float": [0.0, 0.1], "when": {"freeze_layers": 2}},
    "learning_rate": [
        {"float": [1e-5, 1e-4], "log": True, "when": {BATCH: 16}},
        {"float": [1e-3, 1e-2], "log": True, "when": {BATCH: 32}},
    ],
    "freeze_layers": {"choice": [0, 2], "when": {BATCH: 32}},
    BATCH: {"choice": [16, 32]},
}


def parsed(tiny_spec, space: dict, **sections) -> StudySpec:
    tiny_spec["search_space"] = space
    tiny_spec["training"] = {}
    tiny_spec.update(sections)
    return parse_spec(tiny_spec, "t")


def test_when_takes_a_value_or_a_list_and_is_stored(tiny_spec):
    spec = parsed(tiny_spec, CONDITIONAL_SPACE)
    # One value is a list of one; the stored form reads back to the same spec.
    assert spec.search_space["freeze_layers"].when == {BATCH: [32]}
    assert StudySpec.model_validate(spec.to_dict()) == spec
    assert spec.to_dict()["search_space"]["learning_rate"][1]["when"] == {BATCH: [32]}
    # A parameter without when: is stored as it always was.
    assert "when" not in spec.to_dict()["search_space"][BATCH]


def test_conditions_are_sampled_before_what_depends_on_them(tiny_spec):
    spec = parsed(tiny_spec, CONDITIONAL_SPACE)
    order = sampling_order(spec.search_space)
    # The batch size first, then freeze_layers, then weight_decay; otherwise the spec's order.
    assert order.index(BATCH) < order.index("learning_rate")
    assert order.index(BATCH) < order.index("freeze_layers") < order.index("weight_decay")
    assert sampling_order({"b": spec.search_space[BATCH], "a": spec.search_space[BATCH]}) == [
        "b",
        "a",
    ]


@pytest.mark.parametrize(
    "sampler",
    [
        {"name": "random"},
        {"name": "tpe", "multivariate": True, "group": True, "n_startup_trials": 5},
        {"name": "tpe", "n_startup_trials": 5},
        {"name": "auto", "n_startup_trials": 5},
    ],
    ids=["random", "tpe-multivariate-group", "tpe", "auto"],
)
def test_a_conditional_parameter_is_sampled_only_when_its_condition_holds(tiny_spec, sampler):
    spec = parsed(tiny_spec, CONDITIONAL_SPACE, sampler={**sampler, "seed": 3})
    study = optuna.create_study(sampler=make_sampler(spec.sampler))
    for _ in range(40):
        trial = study.ask()
        params = suggest_params(trial, spec.searched_params, spec.fixed_values)
        batch = params[BATCH]
        # The learning rate comes from its batch size's range.
        low, high = (1e-5, 1e-4) if batch == 16 else (1e-3, 1e-2)
        assert low <= params["learning_rate"] <= high
        # freeze_layers only at batch 32, weight_decay only where freeze_layers is 2.
        assert ("freeze_layers" in params) == (batch == 32)
        assert ("weight_decay" in params) == (params.get("freeze_layers") == 2)
        # What the trial stored (and the dashboard shows) is what it sampled, by its plain name.
        assert trial.params == params
        study.tell(trial, params["learning_rate"] * (1 + params.get("weight_decay", 0)))
    # Both branches, and the nested one, were searched.
    trials = study.trials
    assert {t.params[BATCH] for t in trials} == {16, 32}
    assert any("weight_decay" in t.params for t in trials)
    assert any(t.params.get("freeze_layers") == 0 for t in trials)


def test_a_condition_on_a_fixed_value(tiny_spec):
    tiny_spec["search_space"] = {
        "learning_rate": [
            {"float": [1e-5, 1e-4], "when": {BATCH: 16}},
            {"float": [1e-3, 1e-2], "when": {BATCH: 32}},
        ],
        "warmup_ratio": {"float": [0.0, 0.1], "when": {"peft.method": "lora"}},
    }
    tiny_spec["training"] = {BATCH: 32}
    tiny_spec["peft"] = {"r": 4}
    spec = parse_spec(tiny_spec, "t")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = suggest_params(study.ask(), spec.searched_params, spec.fixed_values)
        # The fixed batch size picks the range; the fixed peft method lets warmup_ratio be searched.
        assert 1e-3 <= params["learning_rate"] <= 1e-2
        assert 0.0 <= params["warmup_ratio"] <= 0.1


def test_a_range_per_model(tiny_spec):
    # While the model is fixed, a condition on it picks that model's range (and names the
    # searched choice once the model is searched).
    spec = parsed(
        tiny_spec,
        {
            "learning_rate": [
                {"float": [1e-5, 1e-4], "when": {"model": tiny_spec["model"]}},
                {"float": [1e-3, 1e-2], "when": {"model": "distilbert-base-uncased"}},
            ]
        },
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest_params(study.ask(), spec.searched_params, spec.fixed_values)
    assert 1e-5 <= params["learning_rate"] <= 1e-4


def test_a_peft_value_can_be_conditional_and_keeps_its_default_when_left_out(tiny_spec):
    spec = parsed(
        tiny_spec,
        {BATCH: {"choice": [16, 32]}},
        peft={"r": {"int": [2, 4], "when": {BATCH: 16}}},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        params = suggest_params(study.ask(), spec.searched_params, spec.fixed_values)
        lora = spec.peft.resolve(params)
        # peft.r is searched at batch 16; at 32 it is left out and LoRA takes its default rank.
        assert ("peft.r" in params) == (params[BATCH] == 16)
        assert lora["r"] == params.get("peft.r", 8)
        seen.add(params[BATCH])
    assert seen == {16, 32}


def test_corners_respect_conditions(tiny_spec):
    spec = parsed(tiny_spec, CONDITIONAL_SPACE)
    corners = corner_values(spec.search_space)
    # Every corner is a set of values some trial samples: conditions hold, ranges are the
    # alternative's own.
    for corner in corners:
        assert ("freeze_layers" in corner) == (corner[BATCH] == 32)
        assert ("weight_decay" in corner) == (corner.get("freeze_layers") == 2)
        assert corner["learning_rate"] in ((1e-5, 1e-4) if corner[BATCH] == 16 else (1e-3, 1e-2))
    # Each end of each alternative is tried, the nested parameter's too.
    assert {c["learning_rate"] for c in corners} == {1e-5, 1e-4, 1e-3, 1e-2}
    assert {c["weight_decay"] for c in corners if "weight_decay" in c} == {0.0, 0.1}
    assert len(corners) == len({repr(c) for c in corners})


@pytest.mark.parametrize(
    "space, expected",
    [
        (
            {"learning_rate": {"float": [1e-5, 1e-4], "when": {"optimizer": "adamw"}}},
            "search_space.learning_rate.when: optimizer is neither searched nor fixed",
        ),
        (
            {
                BATCH: {"choice": [16, 32]},
                "warmup_ratio": {"float": [0.0, 0.1], "when": {"per_device_train_batch": 16}},
            },
            "neither searched nor fixed (did you mean per_device_train_batch_size?)",
        ),
        (
            {BATCH: {"choice": [16, 32]}, "warmup_ratio": {"float": [0, 0.1], "when": {BATCH: 64}}},
            (
                "search_space.warmup_ratio.when: 64 is not one of per_device_train_batch_size's "
                "choices [16, 32]"
            ),
        ),
        (
            {"a": {"float": [0, 1]}, "warmup_ratio": {"float": [0, 0.1], "when": {"a": 0.5}}},
            "search_space.warmup_ratio.when: a is a float range; a condition names a choice",
        ),
        (
            {
                "freeze_layers": {"choice": [0, 2], "when": {BATCH: 16}},
                BATCH: {"choice": [16, 32], "when": {"freeze_layers": 0}},
            },
            (
                "the conditions go round (freeze_layers -> per_device_train_batch_size -> "
                "freeze_layers)"
            ),
        ),
        (
            {BATCH: {"choice": [16, 32], "when": {BATCH: 16}}},
            f"search_space.{BATCH}.when: names {BATCH} itself",
        ),
        (
            {"warmup_ratio": {"float": [0, 0.1], "when": {}}},
            "search_space.warmup_ratio.when: names no parameter",
        ),
        (
            {
                BATCH: {"choice": [16, 32]},
                "learning_rate": [
                    {"float": [1e-5, 1e-4], "when": {BATCH: [16, 32]}},
                    {"float": [1e-3, 1e-2], "when": {BATCH: 32}},
                ],
            },
            "search_space.learning_rate: alternatives 1 and 2 can hold in the same trial",
        ),
        (
            {
                BATCH: {"choice": [16, 32]},
                "learning_rate": [
                    {"float": [1e-5, 1e-4], "when": {BATCH: 16}},
                    {"float": [1e-3, 1e-2]},
                ],
            },
            "search_space.learning_rate: alternative 2 has no when:",
        ),
        (
            {
                BATCH: {"choice": [16, 32]},
                "learning_rate": [
                    {"float": [1e-5, 1e-4], "log": True, "when": {BATCH: 16}},
                    {"float": [1e-3, 1e-2], "when": {BATCH: 32}},
                ],
            },
            (
                "search_space.learning_rate: alternatives must all be float: or all int:, with the "
                "same log:"
            ),
        ),
        (
            {
                BATCH: {"choice": [16, 32]},
                "freeze_layers": [
                    {"choice": [0, 1], "when": {BATCH: 16}},
                    {"choice": [2, 3], "when": {BATCH: 32}},
                ],
            },
            "search_space.freeze_layers: alternatives are ranges (float: or int:)",
        ),
        (
            {"learning_rate": [{"float": [1e-5, 1e-4], "when": {BATCH: 16}}]},
            "search_space.learning_rate: a list of alternatives needs two or more",
        ),
        (
            {"learning_rate": [{"float": [1e-4, 1e-5], "when": {BATCH: 16}}, {"float": [0, 1]}]},
            "search_space.learning_rate.0: range [0.0001, 1e-05] is inverted",
        ),
    ],
)
def test_mistakes_in_conditions_are_one_line(tiny_spec, space, expected):
    tiny_spec["search_space"] = space
    tiny_spec["training"] = {}
    with pytest.raises(SpecError) as error:
        parse_spec(tiny_spec, "t")
    # One line, naming the key and what to do.
    assert expected in str(error.value.message)
    assert "\n" not in error.value.message


def test_a_condition_a_fixed_value_never_meets_is_refused(tiny_spec):
    tiny_spec["search_space"] = {"warmup_ratio": {"float": [0, 0.1], "when": {BATCH: 16}}}
    tiny_spec["training"] = {BATCH: 32}
    with pytest.raises(SpecError) as error:
        parse_spec(tiny_spec, "t")
    assert "warmup_ratio would never be sampled" in error.value.message
