"""The model a trial fine-tunes: built per trial from the checkpoint's files, memory-mapped.

Each trial gets a model of its task's Auto class loaded by transformers' own `from_pretrained`,
which (transformers 5) builds the skeleton on the meta device and takes every weight the checkpoint
holds straight from its safetensors files (or a zip-format pytorch_model.bin), memory-mapped
copy-on-write (MAP_PRIVATE): N worker processes on a host share one page-cache copy of the weights,
a weight that trains gets a private copy of its pages on its first update, and neither the file nor
the next trial ever sees that update. Only the new head (keys the checkpoint lacks or holds at
another shape) is materialised and initialised, from the trial's seed, so it is reproducible from
the trial's record. Then the trial's model knobs (dropout, frozen layers) apply and, for a task that
generates, its generation settings. The factory holds no weights of its own, so a large model's
trial is built without copying its weights, and workers on a host share them (how much time and
memory that saves: BENCHMARKS.md, "A 1B-parameter model per trial").
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hpsearch.errors import HpsearchError, SpecError, first_line
from hpsearch.spec import Location, ModelChoice, StudySpec, model_choices, resolve_model
from hpsearch.tasks import Task
from hpsearch.trial.classes import transformers_class

# Config attributes that hold a dropout probability, across the common encoder families.
DROPOUT_ATTRIBUTES = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",  # BERT, RoBERTa, ELECTRA, MiniLM
    "dropout",
    "attention_dropout",
    "seq_classif_dropout",  # DistilBERT, BART
    "hidden_dropout",
    "classifier_dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",  # GPT-2
    "dropout_rate",  # T5
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


def source_of(location: Location) -> str:
    """What from_pretrained is given: the local directory, or the hub id."""
    return str(location.path) if location.path is not None else location.hub_id


def _from_pretrained(auto_class, location: Location, **kwargs):
    try:
        return auto_class.from_pretrained(source_of(location), **kwargs)
    except OSError as e:
        raise HpsearchError(
            f"model: cannot load {location.reference!r}: {first_line(e)}; without a network, point "
            "model: at a local directory or package:PKG"
        ) from None


# The files that hold a checkpoint's weights (sharded ones included).
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")


def check_model_choices(spec: StudySpec) -> None:
    """Each choice of a searched model loads a tokenizer and takes the task's head, checked before
    any trial runs (no weight is read: the head is built on the meta device); a SpecError names the
    choice that does not. A fixed model is checked when the worker loads it."""
    import torch

    if not isinstance(spec.model, ModelChoice):
        return
    auto_class = transformers_class(spec.task_spec.model_class)
    for reference in model_choices(spec):
        location = resolve_model(reference)
        if location.path is not None and not any(
            any(location.path.glob(pattern)) for pattern in WEIGHT_FILES
        ):
            raise SpecError(
                f"model: choice {reference} holds no weights ({', '.join(WEIGHT_FILES)}); "
                "point it at a saved model (save_pretrained)"
            )
        try:
            tokenizer = load_tokenizer(location)
            config = load_config(location)
        except HpsearchError as e:
            raise SpecError(f"{e.message} (model choice {reference})") from None
        # transformers 5 makes a tokenizer of the special tokens alone for a directory that has
        # no tokenizer files: it would tokenize every word as unknown.
        if len(tokenizer) <= len(tokenizer.all_special_tokens):
            raise SpecError(
                f"model: choice {reference} has no tokenizer (no vocabulary beyond its special "
                "tokens); save the tokenizer beside the model (tokenizer.save_pretrained)"
            )
        try:
            with torch.device("meta"):
                auto_class.from_config(config)
        except (ValueError, KeyError) as e:
            raise SpecError(
                f"model: choice {reference} cannot take the {spec.task} task's head "
                f"({spec.task_spec.model_class}): {first_line(e)}; remove it from model: choice"
            ) from None


class ModelFactory:
    """Knows where the pretrained weights are and which modules are new; builds one fresh model
    per trial from the mapped checkpoint files."""

    def __init__(
        self, location: Location, task: Task, label_names: list[str] | None, tokenizer=None
    ):
        self.auto_class = transformers_class(task.model_class)
        self.location = location
        self.config = load_config(location, label_names)
        if tokenizer is not None and getattr(self.config, "pad_token_id", None) is None:
            # Batches are padded with the tokenizer's pad token (the causal-lm task may have set
            # it).
            self.config.pad_token_id = tokenizer.pad_token_id
        # One load (mapped: no weight is read but the new head's) says which keys are new; its
        # load report is shown once, here, and not again per trial.
        pretrained, info = _from_pretrained(
            self.auto_class,
            location,
            config=self.config,  # its dtype is resolved here ("auto"), for every trial
            output_loading_info=True,
            ignore_mismatched_sizes=True,
        )
        fresh = set(info["missing_keys"]) | {key for key, *_ in info["mismatched_keys"]}
        # The modules the checkpoint does not hold (the new head): under LoRA they train fully.
        self.fresh_modules = sorted({key.rsplit(".", 1)[0] for key in fresh})
        self.task = task
        self.generation_config = getattr(pretrained, "generation_config", None)

    def build(
        self,
        seed: int,
        knobs: dict[str, Any],
        generation: dict[str, Any] | None = None,
        lora: dict[str, Any] | None = None,
    ):
        """A fresh model for one trial: its seed, model knobs, generation settings and, with
        `lora` (PeftSpec.resolve), its PEFT method (LoRA, IA3, prompt or prefix tuning)."""
        from transformers import set_seed

        config = copy.deepcopy(self.config)
        if knobs.get("student_layers"):
            keep_bottom_layers(config, knobs["student_layers"])
        if "dropout" in knobs:
            set_dropout(config, knobs["dropout"])
        # The new head is the only thing initialised, so it draws the seed's first random numbers.
        set_seed(seed)
        with _loading_quietly():
            model = _from_pretrained(
                self.auto_class,
                self.location,
                config=config,
                ignore_mismatched_sizes=True,
                # A hub model is in the local cache since the factory's load: no request per trial.
                local_files_only=True,
            )
        if self.generation_config is not None:
            # The checkpoint's generation defaults (its generation_config.json), then the trial's.
            model.generation_config = copy.deepcopy(self.generation_config)
        for name, value in (generation or {}).items():
            setattr(model.generation_config, name, value)
        if knobs.get("freeze_embeddings"):
            # About half of a small encoder's weights: frozen, AdamW skips them (a faster trial:
            # BENCHMARKS.md, "Default study").
            model.base_model.get_input_embeddings().requires_grad_(False)
        if knobs.get("freeze_layers"):
            freeze_layers(model, knobs["freeze_layers"])
        if lora is not None:
            from hpsearch.trial.adapters import add_adapters

            model = add_adapters(model, lora, self.task, self.fresh_modules)
        return model


@contextmanager
def _loading_quietly() -> Iterator[None]:
    """Without the load report and progress bar the factory's first load showed: once per worker
    is information, once per trial is noise."""
    from transformers.utils import logging

    verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bar:
            logging.enable_progress_bar()


def set_dropout(config, probability: float) -> None:
    if not 0 <= probability < 1:
        raise ValueError(f"dropout must be in [0, 1), got {probability}")
    names = [n for n in DROPOUT_ATTRIBUTES if isinstance(getattr(config, n, None), float)]
    if not names:
        raise ValueError(
            f"dropout: {config.model_type} config has none of {', '.join(DROPOUT_ATTRIBUTES)}"
        )
    for name in names:
        setattr(config, name, probability)


def count_layers(config) -> int | None:
    return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)


def find_layers(model):
    """The model's transformer layers (a ModuleList of the config's layer count), or None."""
    import torch

    total = count_layers(model.config)
    return next(
        (
            m
            for m in model.base_model.modules()
            if isinstance(m, torch.nn.ModuleList) and len(m) == total
        ),
        None,
    )


def keep_bottom_layers(config, n_layers: int) -> None:
    """A student of the bottom `n_layers` transformer layers (distill.student_layers, the
    DistilBERT recipe): from_pretrained then loads those layers' weights and leaves the rest."""
    total = count_layers(config)
    if total is None or not 1 <= n_layers <= total:
        raise ValueError(
            f"student_layers: {n_layers} is not possible for a model of {total} layers"
        )
    setattr(config, "n_layers" if hasattr(config, "n_layers") else "num_hidden_layers", n_layers)


def freeze_layers(model, n_layers: int) -> None:
    """Freeze the embeddings and first `n_layers` transformer layers (no gradient, less compute)."""
    total = count_layers(model.config)
    layers = find_layers(model)
    if layers is None or not 0 <= n_layers <= total:
        raise ValueError(f"freeze_layers: {n_layers} is not possible for a model of {total} layers")
    embeddings = getattr(model.base_model, "embeddings", None)
    for module in ([embeddings] if embeddings is not None else []) + list(layers[:n_layers]):
        module.requires_grad_(False)
