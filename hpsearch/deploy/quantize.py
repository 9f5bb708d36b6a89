"""The int8 form: the fine-tuned model with its linear layers dynamically quantized, as torch does
it (`quantize_dynamic`: int8 weights with a scale per output channel, activations quantized on the
fly per batch), saved as a state dict beside its config and tokenizer.

Why a state dict and a loader rather than one self-contained file: a quantized model cannot be
`save_pretrained` as safetensors (its packed int8 weights are not tensors); `torch.export` refuses
its packed parameters; a `torch.jit.trace` works but freezes the attention mask's shape checks
of the example it traced (transformers' own TracerWarnings), so it may mispredict on other batch
shapes, and it loses `pipeline()`. Building the model from its config, quantizing it the same way
and loading the state dict gives back the very model, which `pipeline()` serves.
"""

from __future__ import annotations

import warnings
from pathlib import Path

INT8_DIR = "int8"
WEIGHTS_FILE = "model_int8.pt"


def quantize_int8(model):
    """`model` (fp32, in eval mode) with every torch.nn.Linear made a dynamically quantized int8
    one. The embeddings stay fp32: in MiniLM they are half of the weights, and int8 ones cost
    accuracy. Weights get a scale per output channel, not one per matrix: on the default study's
    model int8 then loses less accuracy, also on CPUs whose kernels round differently
    (BENCHMARKS.md, "Deployable exports")."""
    import torch

    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.ao.quantization and quantized tensors in favour of torchao,
        # which is not installed here; the eager API still works and is what a user has at hand.
        warnings.filterwarnings(
            "ignore",
            message=r".*torch\.ao\.quantization is deprecated",
            category=DeprecationWarning,
        )
        warnings.filterwarnings(
            "ignore",
            message=r".*quantized tensor creation functions.*deprecated",
            category=UserWarning,
        )
        quantization = torch.ao.quantization
        return quantization.quantize_dynamic(
            model, {torch.nn.Linear: quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def save_int8(model, tokenizer, target: Path) -> Path:
    """Quantize `model` and write it to `target` (a new directory): its state dict, config and
    tokenizer; returns the weights file."""
    import torch

    quantized = quantize_int8(model)
    target.mkdir(parents=True)
    weights = target / WEIGHTS_FILE
    torch.save(quantized.state_dict(), weights)
    model.config.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return weights


def load_int8(directory: Path | str):
    """The int8 model saved by `hpsearch export --quantize int8`, in eval mode, ready for
    `pipeline(task, model=model, tokenizer=AutoTokenizer.from_pretrained(directory))`."""
    import torch
    import transformers

    directory = Path(directory)
    config = transformers.AutoConfig.from_pretrained(directory)
    # save_pretrained recorded the class it was trained as (BertForSequenceClassification, ...).
    model_class = getattr(transformers, config.architectures[0])
    model = quantize_int8(model_class(config).eval())
    with warnings.catch_warnings():
        # Loading packed int8 weights goes through torch's deprecated TypedStorage; harmless here.
        warnings.filterwarnings(
            "ignore", message=r".*TypedStorage is deprecated", category=UserWarning
        )
        state = torch.load(directory / WEIGHTS_FILE, weights_only=True)
    model.load_state_dict(state)
    return model
