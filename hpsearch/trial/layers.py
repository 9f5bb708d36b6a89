"""Which layers train, and how fast: layer-wise learning-rate decay and gradual unfreezing.

Depth counts down from the top: the head (and anything outside the layer stack) is depth 0, the
top transformer layer 1, ..., the bottom layer L, the embeddings L + 1. With `layer_lr_decay: d`
a parameter at depth k trains at learning_rate * d**k, so every layer trains at the rate of the
one above it times d and the embeddings slowest (ULMFiT's discriminative fine-tuning; ELECTRA and
DeBERTa tune it). With `gradual_unfreezing: N` only the head trains at first and one more group
(the top layer, then the next, ..., the embeddings last) starts training after every N evaluations.
"""

from __future__ import annotations

from transformers import Trainer, TrainerCallback

from hpsearch.trial.checkpoint import Resumable
from hpsearch.trial.model import find_layers


def unwrapped(model):
    """The transformers model inside a PEFT wrapper (the same parameters), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def embeddings_of(model):
    inner = unwrapped(model)
    return getattr(inner.base_model, "embeddings", None) or inner.get_input_embeddings()


def layer_stack(model, knob: str):
    layers = find_layers(unwrapped(model))
    if layers is None:
        raise ValueError(
            f"{knob}: cannot find the transformer layers of this {model.config.model_type} model"
        )
    return layers


def parameter_depths(model, knob: str = "layer_lr_decay") -> dict[str, int]:
    """Each parameter's depth from the top (see the module docstring), by name."""
    layers = layer_stack(model, knob)
    n_layers = len(layers)
    depth = {id(p): n_layers + 1 for p in embeddings_of(model).parameters()}
    for index, layer in enumerate(layers):
        depth.update({id(p): n_layers - index for p in layer.parameters()})
    return {name: depth.get(id(p), 0) for name, p in model.named_parameters()}


def layerwise_groups(
    model,
    learning_rate: float,
    decay: float,
    weight_decay: float,
    decay_names: set[str],
    trained: set[str],
) -> list[dict]:
    """The optimizer's parameter groups: one per (depth, weight decay or not), each at its rate.
    `trained` names every parameter that trains at some point (frozen ones gradual unfreezing will
    free included: an optimizer skips a parameter while it has no gradient)."""
    depths = parameter_depths(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if name not in trained:
            continue
        depth = depths[name]
        decays = name in decay_names
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "lr": learning_rate * decay**depth,
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


class GradualUnfreezing(TrainerCallback, Resumable):
    """Freezes the layer stack and the embeddings, then frees one group, top first, after every
    `every` evaluations. A parameter frozen by the spec (freeze_layers, freeze_embeddings) stays
    frozen."""

    def __init__(self, model, every: int):
        self.every = every
        layers = layer_stack(model, "gradual_unfreezing")
        candidates = [*reversed(list(layers)), embeddings_of(model)]
        # Only what trains today is frozen here, and freed later; the spec's frozen weights stay so.
        trained = ([p for p in group.parameters() if p.requires_grad] for group in candidates)
        self.groups = [group for group in trained if group]
        for group in self.groups:
            for parameter in group:
                parameter.requires_grad_(False)
        self.n_evals = 0
        self.n_unfrozen = 0
        self.unfrozen_at: list[int] = []  # the evaluation after which each group was freed

    @property
    def managed(self) -> set[int]:
        """The ids of the parameters it frees over the run."""
        return {id(p) for group in self.groups for p in group}

    def attributes(self) -> dict:
        return {
            "n_evals": self.n_evals,
            "n_unfrozen": self.n_unfrozen,
            "unfrozen_at": self.unfrozen_at,
        }

    def load_state(self, attributes: dict, directory) -> None:
        """Resuming: the groups freed before the checkpoint train again."""
        super().load_state(attributes, directory)
        for group in self.groups[: self.n_unfrozen]:
            for parameter in group:
                parameter.requires_grad_(True)

    def on_evaluate(self, args, state, control, **kwargs):
        self.n_evals += 1
        if self.n_evals % self.every == 0 and self.n_unfrozen < len(self.groups):
            for parameter in self.groups[self.n_unfrozen]:
                parameter.requires_grad_(True)
            self.n_unfrozen += 1
            self.unfrozen_at.append(self.n_evals)


def set_layerwise_optimizer(trainer: Trainer, decay: float, trained: set[str]) -> None:
    """Trainer's own optimizer (args.optim, its betas and epsilon), given parameter groups of
    per-layer learning rates, and the parameters gradual unfreezing frees later (Trainer's default
    groups hold only those that train from the start)."""
    args, model = trainer.args, trainer.model
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    groups = layerwise_groups(
        model,
        args.learning_rate,
        decay,
        args.weight_decay,
        set(trainer.get_decay_parameter_names(model)),
        trained,
    )
    trainer.optimizer_cls_and_kwargs = (optimizer_cls, {**kwargs, "params": groups})
