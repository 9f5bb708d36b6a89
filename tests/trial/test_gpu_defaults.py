"""The settings a trial gets from its device: chosen from the device's facts (faked here: no GPU on
this machine), and never over a value the spec sets."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import parse_spec
from hpsearch.trial import arguments, build_training_args, check_training_args
from hpsearch.trial.arguments import make_collator
from hpsearch.trial.gpu_defaults import DeviceFacts, collator_defaults, training_defaults
from hpsearch.trial.model import load_tokenizer

AMPERE = DeviceFacts("NVIDIA H100 80GB HBM3", (9, 0), n_cores=8)
VOLTA = DeviceFacts("Tesla V100-SXM2-16GB", (7, 0), n_cores=8)
CPU = DeviceFacts(None, None, n_cores=2)

AMPERE_DEFAULTS = {
    "ddp_find_unused_parameters": False,
    "dataloader_num_workers": 2,
    "dataloader_pin_memory": True,
    "dataloader_persistent_workers": True,
    "per_device_eval_batch_size": 64,  # 4 x the smallest train batch of tiny_spec's choice [16, 32]
    "tf32": True,
}


def test_an_ampere_gpu_gets_loader_workers_pinned_memory_tf32_and_a_larger_eval_batch(tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    assert training_defaults({"per_device_train_batch_size": 32}, AMPERE, spec) == AMPERE_DEFAULTS
    # Tensor cores take sizes in multiples of 8: the collator pads to them.
    assert collator_defaults({}, AMPERE) == {"pad_to_multiple_of": 8}


def test_an_older_gpu_gets_the_same_but_tf32(tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    # A V100 (compute capability 7.0) has no TF32 tensor cores.
    without_tf32 = {k: v for k, v in AMPERE_DEFAULTS.items() if k != "tf32"}
    assert training_defaults({}, VOLTA, spec) == without_tf32
    assert collator_defaults({}, VOLTA) == {"pad_to_multiple_of": 8}


def test_a_cpu_keeps_its_settings_and_only_ddp_skips_the_unused_weights_search(tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    assert training_defaults({}, CPU, spec) == {"ddp_find_unused_parameters": False}
    assert collator_defaults({}, CPU) == {}


@pytest.mark.parametrize("key", sorted(AMPERE_DEFAULTS))
def test_a_spec_value_overrides_each_default(tiny_spec, key):
    spec = parse_spec(tiny_spec, "t")
    # Whatever the spec sets, the default for that key is not added (the spec's value is used).
    value = {"per_device_eval_batch_size": 7, "dataloader_num_workers": 5}.get(key, False)
    chosen = training_defaults({key: value}, AMPERE, spec)
    assert key not in chosen
    # The others stay.
    assert set(chosen) == set(AMPERE_DEFAULTS) - {key}


def test_no_loader_workers_means_no_persistent_ones(tiny_spec):
    chosen = training_defaults({"dataloader_num_workers": 0}, AMPERE, parse_spec(tiny_spec, "t"))
    # DataLoader refuses persistent workers without workers.
    assert "dataloader_persistent_workers" not in chosen and "dataloader_num_workers" not in chosen
    # A worker with one core leaves it to training: no loader workers either.
    one_core = DeviceFacts("NVIDIA A100", (8, 0), n_cores=1)
    chosen = training_defaults({}, one_core, parse_spec(tiny_spec, "t"))
    assert chosen["dataloader_num_workers"] == 0 and "dataloader_persistent_workers" not in chosen


def test_the_spec_overrides_the_collators_padding():
    # 1 or null: no rounding; another multiple: that one, on any device.
    assert collator_defaults({"pad_to_multiple_of": 1}, AMPERE) == {"pad_to_multiple_of": None}
    assert collator_defaults({"pad_to_multiple_of": None}, AMPERE) == {"pad_to_multiple_of": None}
    assert collator_defaults({"pad_to_multiple_of": 64}, CPU) == {"pad_to_multiple_of": 64}


@pytest.mark.parametrize(
    "train_batch, eval_batch",
    [
        ({"training": {"per_device_train_batch_size": 4}}, 16),
        ({"search_space": {"per_device_train_batch_size": {"int": [2, 8]}}}, 8),
        ({"search_space": {"per_device_train_batch_size": {"choice": [32, 16]}}}, 64),
        ({}, 32),  # TrainingArguments' own 8
        # A trial that leaves a conditional batch size out takes TrainingArguments' 8.
        (
            {
                "search_space": {
                    "gradient_accumulation_steps": {"choice": [1, 2]},
                    "per_device_train_batch_size": {
                        "choice": [32, 16],
                        "when": {"gradient_accumulation_steps": 1},
                    },
                }
            },
            32,
        ),
    ],
)
def test_the_eval_batch_is_one_size_for_the_whole_study(tiny_spec, train_batch, eval_batch):
    tiny_spec["search_space"].pop("per_device_train_batch_size")
    for section, values in train_batch.items():
        tiny_spec[section].update(values)
    spec = parse_spec(tiny_spec, "t")
    # 4 x the smallest train batch any trial may take, whatever this trial's batch is.
    for trial_batch in (4, 32):
        chosen = training_defaults({"per_device_train_batch_size": trial_batch}, AMPERE, spec)
        assert chosen["per_device_eval_batch_size"] == eval_batch


def test_gradual_unfreezing_keeps_ddp_looking_for_unused_weights(tiny_spec):
    tiny_spec["training"]["gradual_unfreezing"] = 1
    assert training_defaults({}, CPU, parse_spec(tiny_spec, "t")) == {
        "ddp_find_unused_parameters": True
    }
    del tiny_spec["training"]["gradual_unfreezing"]
    tiny_spec["search_space"]["gradual_unfreezing"] = {"choice": [0, 2]}
    assert training_defaults({}, CPU, parse_spec(tiny_spec, "t"))["ddp_find_unused_parameters"]


def test_trainings_arguments_take_an_older_gpus_defaults(tiny_spec, tmp_path, monkeypatch):
    # The real TrainingArguments, built with a V100's facts (TF32 would need a real Ampere GPU).
    monkeypatch.setattr(arguments, "probe_device", lambda: VOLTA)
    spec = parse_spec(tiny_spec, "t")
    args = build_training_args({"per_device_train_batch_size": 32}, 0, tmp_path, spec=spec)
    assert (args.dataloader_num_workers, args.dataloader_persistent_workers) == (2, True)
    assert args.per_device_eval_batch_size == 64 and args.ddp_find_unused_parameters is False
    # The spec's value wins.
    args = build_training_args({"per_device_eval_batch_size": 8}, 0, tmp_path, spec=spec)
    assert args.per_device_eval_batch_size == 8


def test_on_this_cpu_the_eval_batch_stays_hpsearchs_default(tiny_spec, tmp_path):
    args = build_training_args({}, 0, tmp_path, spec=parse_spec(tiny_spec, "t"))
    assert args.per_device_eval_batch_size == 64 and args.dataloader_num_workers == 0


def test_pad_to_multiple_of_is_a_collator_setting_of_training(tiny_spec):
    tokenizer = load_tokenizer_of(tiny_spec)
    tiny_spec["training"]["pad_to_multiple_of"] = 8
    spec = parse_spec(tiny_spec, "t")
    # Accepted by the checks, kept out of TrainingArguments ...
    check_training_args(spec)
    # ... and given to the task's collator: 5 and 3 tokens pad to 8.
    collate = make_collator(spec.task_spec, tokenizer, None, dict(spec.training))
    batch = collate([{"input_ids": [101, 7, 8, 9, 102]}, {"input_ids": [101, 7, 102]}])
    assert tuple(batch["input_ids"].shape) == (2, 8)
    # A value the collator cannot take is one line naming it.
    tiny_spec["training"]["pad_to_multiple_of"] = 0
    with pytest.raises(SpecError) as caught:
        check_training_args(parse_spec(tiny_spec, "t"))
    assert caught.value.message == (
        "training: pad_to_multiple_of must be a whole number of at least 1 or null, got 0"
    )


def load_tokenizer_of(raw_spec: dict):
    from hpsearch.spec import resolve_model

    return load_tokenizer(resolve_model(parse_spec(raw_spec, "t").model))
