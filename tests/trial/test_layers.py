"""Layer-wise learning rates on the right parameter groups; gradual unfreezing when it should."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from transformers import TrainerCallback

from hpsearch.errors import SpecError
from hpsearch.spec import check_sources, parse_spec, resolve_model
from hpsearch.trial.checkpoint import Checkpointing, restore_callbacks
from hpsearch.trial.fit import start_fit
from hpsearch.trial.layers import parameter_depths
from hpsearch.trial.load import load_data
from hpsearch.trial.model import ModelFactory
from tests.conftest import TINY_SPEC

N_LAYERS = 6  # MiniLM-L6


@pytest.fixture(scope="module")
def shipped(cache_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HPSEARCH_CACHE", str(cache_dir))
        spec = parse_spec(copy.deepcopy(TINY_SPEC), "t")
        location = resolve_model(spec.model)
        tokenizer, data = load_data(spec, location)
    return (
        spec,
        tokenizer,
        data,
        ModelFactory(location, spec.task_spec, data.label_names, tokenizer),
    )


def fit_with(shipped, tmp_path, training: dict, callbacks=()):
    spec, tokenizer, data, factory = shipped
    raw = copy.deepcopy(TINY_SPEC)
    raw["training"].update(training)
    spec = parse_spec(raw, "t")
    values = {
        **spec.training,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 16,
        "weight_decay": 0.01,
    }
    return start_fit(
        spec, data, factory, tokenizer, values, seed=0, scratch=tmp_path, callbacks=callbacks
    )


def test_each_layer_trains_at_the_rate_above_it_times_the_decay(shipped, tmp_path):
    fitting = fit_with(shipped, tmp_path, {"layer_lr_decay": 0.5})
    model = fitting.model
    optimizer = fitting.trainer.create_optimizer()
    rate_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {
        id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]
    }
    named = dict(model.named_parameters())
    # The head at the base rate, layer 5 (the top) at half of it, ..., layer 0 at 1/64, the
    # embeddings lowest at 1/128.
    assert rate_of[id(named["classifier.weight"])] == pytest.approx(1e-3)
    for index in range(N_LAYERS):
        weight = named[f"bert.encoder.layer.{index}.attention.self.query.weight"]
        assert rate_of[id(weight)] == pytest.approx(1e-3 * 0.5 ** (N_LAYERS - index))
    assert rate_of[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(
        1e-3 * 0.5**7
    )
    # Weight decay as Trainer splits it: not on biases and LayerNorm weights.
    assert decay_of[id(named["bert.encoder.layer.0.attention.self.query.weight"])] == 0.01
    assert decay_of[id(named["bert.encoder.layer.0.attention.self.query.bias"])] == 0.0
    assert decay_of[id(named["bert.embeddings.LayerNorm.weight"])] == 0.0
    # Every trained parameter is in exactly one group.
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(
        1 for p in model.parameters() if p.requires_grad
    )
    # Trainer's scheduler keeps the ratios: after a step, each group is at its share of the base.
    fitting.trainer.create_scheduler(num_training_steps=10, optimizer=optimizer)
    assert {round(g["lr"] / g["initial_lr"], 9) for g in optimizer.param_groups} == {1.0}


def test_depths_count_down_from_the_head(shipped, tmp_path):
    depths = parameter_depths(fit_with(shipped, tmp_path, {}).model)
    assert depths["classifier.weight"] == 0 and depths["bert.pooler.dense.weight"] == 0
    assert depths["bert.encoder.layer.5.output.dense.weight"] == 1
    assert depths["bert.encoder.layer.0.output.dense.weight"] == 6
    assert depths["bert.embeddings.position_embeddings.weight"] == 7


def trained_layers(model) -> list:
    """The indices of the layers that train, and "embeddings" if they do."""
    layers = model.bert.encoder.layer
    trained = [
        i for i, layer in enumerate(layers) if all(p.requires_grad for p in layer.parameters())
    ]
    embeddings = all(p.requires_grad for p in model.bert.embeddings.parameters())
    return trained + (["embeddings"] if embeddings else [])


class RequiresGradRecorder(TrainerCallback):
    """After each evaluation: which layers train, and the top and bottom layers' weights."""

    def __init__(self, model):
        self.model = model
        self.trained: list[list[int]] = []
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def on_evaluate(self, args, state, control, **kwargs):
        layers = self.model.bert.encoder.layer
        self.trained.append(trained_layers(self.model))
        self.snapshots.append(
            {f"layer{i}": layers[i].output.dense.weight.detach().clone() for i in (4, 5)}
        )


def test_gradual_unfreezing_frees_one_layer_from_the_top_every_n_evaluations(shipped, tmp_path):
    # 64 examples, batch 16: 4 steps an epoch, 2 evaluations an epoch; 5 epochs, 10 evaluations;
    # one more group trains after every 2nd evaluation.
    fitting = fit_with(shipped, tmp_path, {"gradual_unfreezing": 2, "num_train_epochs": 5})
    recorder = RequiresGradRecorder(fitting.model)
    fitting.trainer.add_callback(recorder)
    # At the start only the head (and the pooler) trains.
    assert not any(p.requires_grad for p in fitting.model.bert.encoder.parameters())
    assert fitting.model.classifier.weight.requires_grad
    fitting.train()
    assert recorder.trained == [
        [],
        [5],
        [5],
        [4, 5],
        [4, 5],
        [3, 4, 5],
        [3, 4, 5],
        [2, 3, 4, 5],
        [2, 3, 4, 5],
        [1, 2, 3, 4, 5],
    ]
    assert fitting.record["unfrozen_at_evaluations"] == [2, 4, 6, 8, 10]
    snapshots = recorder.snapshots
    # A frozen layer does not change; once freed (after evaluation 2 for layer 5, 4 for layer 4), it
    # trains: the optimizer held it from the start.
    assert torch.equal(snapshots[0]["layer5"], snapshots[1]["layer5"])
    assert not torch.equal(snapshots[1]["layer5"], snapshots[2]["layer5"])
    assert torch.equal(snapshots[2]["layer4"], snapshots[3]["layer4"])
    assert not torch.equal(snapshots[3]["layer4"], snapshots[4]["layer4"])


def test_gradual_unfreezing_leaves_the_specs_frozen_layers_frozen(shipped, tmp_path):
    fitting = fit_with(
        shipped, tmp_path, {"gradual_unfreezing": 1, "freeze_layers": 4, "num_train_epochs": 3}
    )
    recorder = RequiresGradRecorder(fitting.model)
    fitting.trainer.add_callback(recorder)
    fitting.train()
    # Layers 4 and 5 are freed after evaluations 1 and 2; layers 0-3 and the embeddings never.
    assert recorder.trained == [[5], [4, 5], [4, 5], [4, 5], [4, 5], [4, 5]]


class CopyingKeeper:
    """Keeps a copy of each checkpoint Checkpointing hands over, by evaluation (a search trial's
    TrialCheckpoint moves it into the artifact store; `start_fit` here has no trial)."""

    def __init__(self, directory):
        self.directory = directory

    def keep(self, directory, step: int, evaluation: int) -> int:
        shutil.copytree(directory, self.directory / f"evaluation-{evaluation}")
        return 0


def test_gradual_unfreezing_resumes_with_the_layers_it_had_freed(shipped, tmp_path):
    # 6 evaluations of 2 steps, one more group freed after each; a checkpoint after the 3rd.
    training = {"gradual_unfreezing": 1, "num_train_epochs": 3}
    keeper = CopyingKeeper(tmp_path / "kept")
    straight = fit_with(
        shipped, tmp_path / "straight", training, callbacks=(Checkpointing(keeper, every=3),)
    )
    recorder = RequiresGradRecorder(straight.model)
    straight.trainer.add_callback(recorder)
    straight.train()
    (checkpoint,) = (tmp_path / "kept").iterdir()
    assert checkpoint.name == "evaluation-3"

    # A fresh run of the same configuration, restored from the checkpoint: the three groups freed
    # by then (layers 5, 4 and 3) train again before its first step, the others stay frozen.
    resumed = fit_with(shipped, tmp_path / "resumed", training)
    assert trained_layers(resumed.model) == []
    restore_callbacks(resumed.trainer, checkpoint)
    assert trained_layers(resumed.model) == recorder.trained[2] == [3, 4, 5]
    resumed.resume_from = checkpoint
    resumed_recorder = RequiresGradRecorder(resumed.model)
    resumed.trainer.add_callback(resumed_recorder)
    resumed.train()
    # It goes on freeing one group per evaluation where the uninterrupted run did, and ends with
    # its weights (to within floating-point noise).
    assert resumed_recorder.trained == recorder.trained[3:]
    assert resumed.record["unfrozen_at_evaluations"] == [1, 2, 3, 4, 5, 6]
    assert resumed.trainer.state.global_step == straight.trainer.state.global_step == 12
    weights = dict(straight.model.named_parameters())
    for name, parameter in resumed.model.named_parameters():
        assert torch.allclose(parameter, weights[name], atol=1e-5), name


@pytest.mark.parametrize(
    "training, message",
    [
        ({"layer_lr_decay": 0.0}, "layer_lr_decay: 0.0 is not a factor in (0, 1]"),
        ({"layer_lr_decay": 1.5}, "layer_lr_decay: 1.5 is not a factor in (0, 1]"),
        (
            {"gradual_unfreezing": 0},
            "gradual_unfreezing: 0 is not a number of evaluations of at least 1",
        ),
        (
            {"gradual_unfreezing": 2, "freeze_layers": 6},
            "gradual_unfreezing: freeze_layers 6 freezes all 6 layers",
        ),
    ],
)
def test_layer_knobs_are_checked_against_the_model(training, message):
    raw = copy.deepcopy(TINY_SPEC)
    raw["training"].update(training)
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(raw, "t"))
    assert str(caught.value.message).startswith(message)


def test_a_searched_decay_is_checked_at_both_ends():
    raw = copy.deepcopy(TINY_SPEC)
    raw["search_space"]["layer_lr_decay"] = {"float": [0.5, 1.2]}
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(raw, "t"))
    assert "layer_lr_decay: 1.2 is not a factor" in caught.value.message


def test_knobs_under_peft_that_would_do_nothing_are_refused():
    raw = copy.deepcopy(TINY_SPEC)
    raw["peft"] = {"r": 4}
    raw["search_space"]["gradual_unfreezing"] = {"int": [1, 3]}
    with pytest.raises(SpecError) as caught:
        parse_spec(raw, "t")
    assert caught.value.message == (
        "t: search_space.gradual_unfreezing: with peft: every pretrained weight is frozen already "
        "and only the adapters and the head train; remove it (or the peft: section)"
    )
