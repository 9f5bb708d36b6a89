"""peft.method: each method's own keys, the method searched as a choice with its keys conditional
on it, and the combinations PEFT cannot do, refused in one line naming the key."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import parse_spec, suggest_params


def reject(raw: dict) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw, "test.yaml")
    return str(caught.value.message)


def test_each_method_resolves_to_its_own_keys_with_their_defaults(tiny_spec):
    expected = {
        "lora": {
            "method": "lora",
            "r": 8,
            "alpha": 16,
            "dropout": 0.1,
            "target_modules": None,
            "bias": "none",
            "use_dora": False,
        },
        "ia3": {"method": "ia3", "target_modules": None},
        "prompt_tuning": {"method": "prompt_tuning", "num_virtual_tokens": 20},
        "prefix_tuning": {"method": "prefix_tuning", "num_virtual_tokens": 20},
    }
    for method, settings in expected.items():
        spec = parse_spec({**tiny_spec, "peft": {"method": method}}, "t")
        # Each method takes its own keys, and only those, with PEFT's usual defaults.
        assert spec.peft.resolve({}) == settings
    dora = parse_spec({**tiny_spec, "peft": {"use_dora": True, "r": 4}}, "t")
    assert dora.peft.resolve({}) | {"use_dora": True, "r": 4} == dora.peft.resolve({})


def test_a_lora_spec_stores_as_it_did_before_methods_existed(tiny_spec):
    spec = parse_spec({**tiny_spec, "peft": {"r": 4}}, "t")
    # LoRA's defaults are stored (a study stored before this resumes unchanged); new keys are not.
    assert spec.to_dict()["peft"] == {
        "method": "lora",
        "r": 4,
        "alpha": 16,
        "dropout": 0.1,
        "bias": "none",
    }
    ia3 = parse_spec({**tiny_spec, "peft": {"method": "ia3"}}, "t")
    assert ia3.to_dict()["peft"] == {"method": "ia3"}
    assert parse_spec(ia3.to_dict(), "t") == ia3


def test_the_method_is_searched_as_a_choice_with_its_keys_conditional_on_it(tiny_spec):
    import optuna

    raw = {
        **tiny_spec,
        "peft": {
            "method": {"choice": ["lora", "ia3", "prompt_tuning"]},
            "r": {"int": [2, 8], "when": {"peft.method": "lora"}},
            "num_virtual_tokens": {"int": [4, 16], "when": {"peft.method": "prompt_tuning"}},
            "target_modules": "all-linear",
        },
    }
    spec = parse_spec(raw, "t")
    assert parse_spec(spec.to_dict(), "t") == spec
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    methods = set()
    for _ in range(12):
        params = suggest_params(study.ask(), spec.searched_params, spec.fixed_values)
        settings = spec.peft.resolve(params)
        methods.add(settings["method"])
        # A method's keys are sampled only in the trials that draw it.
        assert ("peft.r" in params) == (params["peft.method"] == "lora")
        assert ("peft.num_virtual_tokens" in params) == (params["peft.method"] == "prompt_tuning")
        assert settings["method"] == params["peft.method"]
        # The fixed target_modules applies to the methods that take it (lora and ia3) alone.
        assert ("target_modules" in settings) == (settings["method"] != "prompt_tuning")
    assert methods == {"lora", "ia3", "prompt_tuning"}


@pytest.mark.parametrize(
    "peft, expected",
    [
        (
            {"method": "ia3", "r": 4},
            (
                "peft.r: the ia3 method takes no r (only lora takes it); remove it, or use "
                "method: lora"
            ),
        ),
        (
            {"method": "lora", "num_virtual_tokens": 10},
            (
                "peft.num_virtual_tokens: the lora method takes no num_virtual_tokens (only "
                "prompt_tuning and prefix_tuning take it); remove it, or use method: prompt_tuning"
            ),
        ),
        (
            {"method": "prompt_tuning", "use_dora": True},
            "peft.use_dora: the prompt_tuning method takes no use_dora (only lora takes it)",
        ),
        (
            {"method": "prefix_tuning", "target_modules": "all-linear"},
            (
                "peft.target_modules: the prefix_tuning method takes no target_modules (only lora "
                "and ia3 take it)"
            ),
        ),
        (
            {"method": {"choice": ["ia3", "prompt_tuning"]}, "dropout": 0.1},
            "peft.dropout: no searched method takes dropout (only lora takes it)",
        ),
        (
            {"method": {"choice": ["lora", "ia3"]}, "r": {"int": [2, 8]}},
            (
                "peft.r: only lora takes it, and peft.method also draws ia3; add when: "
                "{peft.method: [lora]}"
            ),
        ),
        (
            {
                "method": {"choice": ["lora", "ia3"]},
                "r": {"int": [2, 8], "when": {"peft.method": ["lora", "ia3"]}},
            },
            "peft.r: only lora takes it, and peft.method also draws ia3",
        ),
        (
            {"method": {"choice": ["lora", "ia3"]}, "r": {"int": [2, 8], "when": {"peft.m": 1}}},
            "peft.r: only lora takes it",
        ),
        ({"method": "adapter"}, "peft.method: 'adapter' is not one of lora, ia3"),
        (
            {"method": {"float": [0, 1]}},
            "peft.method: searched as a range; search it as a choice",
        ),
        (
            {"method": "prompt_tuning", "num_virtual_tokens": 0},
            "peft.num_virtual_tokens: 0 is not an integer of at least 1",
        ),
        (
            {"method": "lora", "use_dora": "yes"},
            "peft.use_dora: 'yes' is not true or false",
        ),
    ],
)
def test_keys_are_checked_against_the_method(tiny_spec, peft, expected):
    message = reject({**tiny_spec, "peft": peft})
    assert message.startswith(f"test.yaml: {expected}"), message
    assert "\n" not in message


def test_combinations_peft_cannot_do_are_refused(tiny_spec):
    from tests.views.conftest import NER_SPEC

    ner = {**NER_SPEC, "peft": {"method": {"choice": ["lora", "prompt_tuning"]}}}
    # PEFT prepends virtual tokens to a tagger's input but not to its tags.
    assert reject(ner).startswith(
        "test.yaml: peft.method: prompt_tuning cannot tag tokens: PEFT prepends its virtual "
        "tokens to the input but not to the tags"
    )
    decayed = {
        **tiny_spec,
        "peft": {"method": "prefix_tuning"},
        "training": {"num_train_epochs": 1, "layer_lr_decay": 0.9},
    }
    assert reject(decayed).startswith(
        "test.yaml: training.layer_lr_decay: prefix_tuning trains virtual tokens outside the "
        "layer stack"
    )
    # Gradual unfreezing is refused under every method, as under LoRA.
    unfrozen = {
        **tiny_spec,
        "peft": {"method": "ia3"},
        "training": {"num_train_epochs": 1, "gradual_unfreezing": 1},
    }
    assert "training.gradual_unfreezing: with peft:" in reject(unfrozen)
    # Layer-wise decay with lora or ia3 stays: their parameters sit in the layers.
    parse_spec({**decayed, "peft": {"method": "ia3"}}, "t")
