"""The `distill:` section: fixed or searched values, checked when the spec loads, one line each."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import StudySpec, parse_spec, split_params


def reject(spec: dict) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec, "test.yaml")
    message = caught.value.message
    # A rejection is one line that says where it came from.
    assert "\n" not in message
    return message.removeprefix("test.yaml: ")


def test_searched_values_join_the_search_space_and_round_trip(tiny_spec):
    tiny_spec["distill"] = {
        "teacher": "best-of:sentiment",
        "temperature": {"float": [1.0, 8.0], "log": True},
        "alpha": 0.3,
        "student_layers": {"int": [2, 4]},
    }
    spec = parse_spec(tiny_spec, "t")
    # The searched values are parameters named distill.<key>; the fixed ones are fixed values.
    assert {"distill.temperature", "distill.student_layers"} <= set(spec.searched_params)
    assert "distill.alpha" not in spec.searched_params
    assert spec.fixed_values["distill.alpha"] == 0.3
    # A trial's values: its sampled ones and the fixed ones, apart from its training arguments.
    settings = split_params({"learning_rate": 1e-4, "distill.temperature": 2.0})
    assert settings.arguments == {"learning_rate": 1e-4}
    assert spec.distill.resolve(settings.distill) == {
        "temperature": 2.0,
        "alpha": 0.3,
        "student_layers": None,  # searched, but left out of these parameters: the default
    }
    assert spec.distill.teacher_study == ("sentiment", None)
    # What is stored with the study parses back to the same spec.
    assert StudySpec.model_validate(spec.to_dict()) == spec


def test_a_trial_teacher_names_its_study_and_number(tiny_spec):
    tiny_spec["distill"] = {"teacher": "trial:my/study/12"}
    spec = parse_spec(tiny_spec, "t")
    assert spec.distill.teacher_kind == "trial"
    assert spec.distill.teacher_study == ("my/study", 12)
    # Defaults: T = 2, alpha = 0.5, every layer.
    assert spec.distill.resolve({}) == {"temperature": 2.0, "alpha": 0.5, "student_layers": None}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.update(distill={}), "distill.teacher: missing; this key is required"),
        (lambda s: s.update(distill={"teacher": " "}), "distill.teacher: empty"),
        (
            lambda s: s.update(distill={"teacher": "trial:sentiment"}),
            "distill.teacher: 'trial:sentiment' is not trial:STUDY/N",
        ),
        (
            lambda s: s.update(distill={"teacher": "best-of:"}),
            "distill.teacher: best-of: names no study",
        ),
        (
            lambda s: s.update(distill={"teacher": "t", "temperature": 0}),
            "distill.temperature: 0 is not a number above 0",
        ),
        (
            lambda s: s.update(distill={"teacher": "t", "alpha": {"float": [0.5, 1.5]}}),
            "distill.alpha: 1.5 is not a weight in [0, 1]",
        ),
        (
            lambda s: s.update(distill={"teacher": "t", "student_layers": 0}),
            "distill.student_layers: 0 is not an integer of at least 1",
        ),
        (
            lambda s: s.update(distill={"teacher": "t", "temprature": 2}),
            "distill.temprature: unknown key (did you mean temperature?)",
        ),
        (
            lambda s: s.update(
                task="seq2seq",
                dataset={"source": "x.csv", "text": "a", "target": "b"},
                objective={"metric": "rougeL"},
                distill={"teacher": "t"},
            ),
            (
                "distill: the seq2seq task cannot be distilled (only text-classification and "
                "token-classification can); remove distill:"
            ),
        ),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tiny_spec, change, expected):
    change(tiny_spec)
    assert reject(tiny_spec).startswith(expected)
