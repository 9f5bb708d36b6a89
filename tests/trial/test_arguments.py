"""TrainingArguments checked before any trial: unknown fields, fields hpsearch sets, bad values."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import parse_spec
from hpsearch.trial import check_training_args


def rejection(spec: dict) -> str:
    with pytest.raises(SpecError) as caught:
        check_training_args(parse_spec(spec, "t"))
    assert "\n" not in caught.value.message
    return caught.value.message


def test_tiny_spec_passes(tiny_spec):
    check_training_args(parse_spec(tiny_spec, "t"))


def test_training_arguments_are_checked(tiny_spec):
    tiny_spec["training"]["learning_rat"] = 0.1
    assert (
        "training.learning_rat: not a TrainingArguments field nor a model knob (dropout, "
        "freeze_embeddings, freeze_layers, layer_lr_decay, gradual_unfreezing) (did you mean "
        "learning_rate?)" in rejection(tiny_spec)
    )
    del tiny_spec["training"]["learning_rat"]
    tiny_spec["training"]["output_dir"] = "/tmp/x"
    assert (
        rejection(tiny_spec)
        == "training.output_dir: hpsearch sets this training argument itself; remove it"
    )
    del tiny_spec["training"]["output_dir"]
    # A value TrainingArguments refuses, at one end of a searched range, is named with that value.
    tiny_spec["search_space"]["lr_scheduler_type"] = {"choice": ["linear", "wobbly"]}
    message = rejection(tiny_spec)
    assert message.startswith("search_space (at ")
    assert "lr_scheduler_type=wobbly" in message
