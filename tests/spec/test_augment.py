"""The `augment:` section: each setting checked, searched ones named augment.<key>, refused where
a task's targets would not follow a changed input."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import parse_spec, split_params


def with_augment(tiny_spec: dict, augment, **more) -> dict:
    return {**tiny_spec, "augment": augment, **more}


def test_searched_and_fixed_settings_are_named_augment_keys(tiny_spec):
    spec = parse_spec(
        with_augment(
            tiny_spec,
            {
                "random_swap": {"float": [0.0, 0.3]},
                "synonym_replacement": 0.1,
                "copies": {"int": [1, 3]},
                "back_translation": {"model": "a/en-de", "pivot_model": "a/de-en"},
            },
        ),
        "t",
    )
    # Searched values join the search space; fixed ones are values a condition may name.
    assert {"augment.random_swap", "augment.copies"} <= set(spec.searched_params)
    assert spec.fixed_values["augment.synonym_replacement"] == 0.1
    assert spec.fixed_values["augment.back_translation.probability"] == 1.0
    # A trial's settings: its draws, the fixed values, and the translation models.
    settings = spec.augment.resolve({"augment.random_swap": 0.2, "augment.copies": 2})
    assert settings["random_swap"] == 0.2 and settings["copies"] == 2
    assert settings["synonym_replacement"] == 0.1 and settings["random_deletion"] == 0.0
    assert settings["back_translation"] == {"model": "a/en-de", "pivot_model": "a/de-en"}
    # They set the training rows, not TrainingArguments.
    assert split_params({"augment.copies": 2, "learning_rate": 1e-4}).arguments == {
        "learning_rate": 1e-4
    }
    # The stored form reads back as the same spec.
    assert parse_spec(spec.to_dict(), "stored").augment == spec.augment


@pytest.mark.parametrize(
    ("augment", "fragment"),
    [
        ({"random_swap": 1.5}, "augment.random_swap: 1.5 is not a probability in [0, 1]"),
        ({"random_swap": {"float": [0.0, 2.0]}}, "augment.random_swap: 2.0 is not a probability"),
        ({"random_swap": 0.1, "copies": 0}, "augment.copies: 0 is not an integer 1-16"),
        ({"random_swap": 0.1, "copies": {"int": [1, 40]}}, "augment.copies: 40 is not"),
        ({"random_deletion": 0}, "every operation is off"),
        ({"random_swop": 0.1}, "augment.random_swop: unknown key (did you mean random_swap?)"),
        ({"back_translation": {"model": "x"}}, "augment.back_translation.pivot_model: missing"),
    ],
)
def test_bad_settings_are_one_line_errors(tiny_spec, augment, fragment):
    with pytest.raises(SpecError) as raised:
        parse_spec(with_augment(tiny_spec, augment), "t")
    # One line that names the key and says what is wrong.
    assert fragment in raised.value.message
    assert "\n" not in raised.value.message


def test_tasks_whose_targets_follow_the_input_are_refused(tiny_spec):
    seq2seq = {
        **tiny_spec,
        "task": "seq2seq",
        "dataset": {"source": "x.csv", "text": "a", "target": "b"},
        "objective": {"metric": "loss"},
        "augment": {"random_swap": 0.1},
    }
    with pytest.raises(SpecError, match="augment: the seq2seq task's targets"):
        parse_spec(seq2seq, "t")
    tagging = {
        **tiny_spec,
        "task": "token-classification",
        "dataset": {"source": "x.txt"},
        "objective": {"metric": "f1"},
        "augment": {"back_translation": {"model": "a", "pivot_model": "b"}},
    }
    with pytest.raises(SpecError, match="a translation's words have no tags"):
        parse_spec(tagging, "t")
    # The EDA operations are fine for tagging: they change only words tagged O.
    tagging["augment"] = {"random_swap": 0.1}
    assert parse_spec(tagging, "t").augment.random_swap == 0.1


def test_a_missing_translation_model_is_refused_before_anything_runs(tiny_spec, tmp_path):
    from hpsearch.spec.check import check_sources

    missing = str(tmp_path / "no-such-model")
    spec = parse_spec(
        with_augment(tiny_spec, {"back_translation": {"model": missing, "pivot_model": missing}}),
        "t",
    )
    with pytest.raises(SpecError) as raised:
        check_sources(spec)
    assert raised.value.message == (
        f"augment.back_translation.model: directory {missing} does not exist"
    )


def test_augmenting_a_distilled_study_is_refused_in_one_line(tiny_spec):
    spec = with_augment(tiny_spec, {"random_swap": 0.1}, distill={"teacher": "best-of:teacher"})
    with pytest.raises(SpecError) as raised:
        parse_spec(spec, "t")
    assert "augment: cannot be combined with distill: yet" in raised.value.message
    assert "\n" not in raised.value.message
