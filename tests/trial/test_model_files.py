"""The archived weights are what save_pretrained writes: from_pretrained reads them back exactly."""

from __future__ import annotations

import threading
import zipfile

import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore
from safetensors import safe_open
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    T5Config,
    T5ForConditionalGeneration,
)

from hpsearch.storage.model_upload import stream_into, write_archive
from hpsearch.trial.model_files import WEIGHTS_FILE, model_files


class Tokenizer:
    """Stands in for a tokenizer's save_pretrained: these tests are about the weights."""

    def save_pretrained(self, directory):
        (directory / "tokenizer.json").write_text("{}")


def bert(dtype=torch.float32):
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=99,
        num_labels=3,
    )
    return BertForSequenceClassification(config).to(dtype)


def t5():  # its decoder's embeddings are tied to the shared ones: save_pretrained drops them
    config = T5Config(d_model=32, d_ff=37, num_layers=1, num_heads=2, d_kv=8, vocab_size=99)
    return T5ForConditionalGeneration(config)


def archive(model, tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "small").mkdir()
    entries = model_files(model, Tokenizer())(tmp_path / "small")
    stream_into(
        FileSystemArtifactStore(str(tmp_path / "store")),
        "a",
        lambda out: write_archive(out, tmp_path / "small", entries, threading.Event()),
    )
    with zipfile.ZipFile(tmp_path / "store" / "a") as zf:
        zf.extractall(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize(
    "build, auto, dtype",
    [
        (bert, AutoModelForSequenceClassification, torch.float32),
        (lambda: bert(torch.bfloat16), AutoModelForSequenceClassification, torch.bfloat16),
        (t5, AutoModelForSeq2SeqLM, torch.float32),
    ],
    ids=["bert", "bert-bf16", "t5-tied"],
)
def test_the_streamed_weights_load_as_save_pretrained_s(tmp_path, build, auto, dtype):
    torch.manual_seed(0)
    model = build()
    directory = archive(model, tmp_path)
    model.save_pretrained(tmp_path / "reference")
    # The same tensors under the same names as save_pretrained's file, and its metadata.
    with (
        safe_open(directory / WEIGHTS_FILE, "pt") as ours,
        safe_open(tmp_path / "reference" / WEIGHTS_FILE, "pt") as theirs,
    ):
        assert ours.metadata() == theirs.metadata() == {"format": "pt"}
        names = sorted(theirs.keys())
        assert sorted(ours.keys()) == names
        for key in names:
            assert torch.equal(ours.get_tensor(key), theirs.get_tensor(key)), key
    # from_pretrained rebuilds the model exactly (tied weights included), in its dtype.
    loaded = auto.from_pretrained(directory, dtype=dtype)
    expected, got = model.state_dict(), loaded.state_dict()
    assert sorted(got) == sorted(expected)
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key
    assert (directory / "tokenizer.json").is_file() and (directory / "config.json").is_file()
