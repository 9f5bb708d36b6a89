"""Training a student on a teacher's logits (`distill:`): the loss, the Trainer that computes it and
the collator that batches the cached teacher logits with the inputs.

The loss is alpha x task loss + (1 - alpha) x T^2 x KL(teacher at T || student at T) (Hinton et
al., 2015, as `torch.nn.functional.kl_div(log_softmax(student / T), log_softmax(teacher / T))`):
the task's own loss (whatever the task's model computes from the labels) plus the divergence of
the student's softened distribution from the teacher's, per example or, for token classification,
per labelled token (a label of -100, padding or a word's later sub-tokens, is not matched). T^2
keeps the soft term's gradients at the scale of the hard one's as T grows.

Evaluation batches carry no teacher logits (only the training set has them): the eval loss stays
the task loss, comparable with a study that does not distill.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# The training set's column of teacher logits (hpsearch.trial.teacher), one row per example.
TEACHER_COLUMN = "teacher_logits"
IGNORED_LABEL = -100


def distillation_loss(
    task_loss: torch.Tensor,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha x task_loss + (1 - alpha) x T^2 x KL(teacher || student), both softened by T; logits
    are (batch, classes) or (batch, tokens, classes), the KL averaged over examples or over the
    tokens whose label is not -100."""
    teacher_logits = teacher_logits.to(student_logits.dtype)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    divergence = F.kl_div(student, teacher, reduction="none", log_target=True).sum(-1)
    if divergence.dim() == 2:  # per token: only the labelled ones
        mask = labels != IGNORED_LABEL if labels is not None else torch.ones_like(divergence).bool()
        divergence = divergence[mask]
    soft = divergence.mean() if divergence.numel() else divergence.sum()
    return alpha * task_loss + (1 - alpha) * temperature**2 * soft


def distilling_trainer(base: type, *, alpha: float, temperature: float) -> type:
    """`base` (the task's Trainer class) training on the distillation loss wherever a batch carries
    teacher logits."""

    class DistillingTrainer(base):
        def _set_signature_columns_if_needed(self) -> None:
            # The teacher's column is no argument of the model's forward: keep it anyway.
            super()._set_signature_columns_if_needed()
            if TEACHER_COLUMN not in self._signature_columns:
                self._signature_columns.append(TEACHER_COLUMN)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            teacher = inputs.pop(TEACHER_COLUMN, None)
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            if teacher is not None:
                logits = outputs["logits"]
                loss = distillation_loss(
                    loss,
                    logits,
                    teacher.to(logits.device),
                    inputs.get("labels"),
                    alpha=alpha,
                    temperature=temperature,
                )
            return (loss, outputs) if return_outputs else loss

    DistillingTrainer.__name__ = f"Distilling{base.__name__}"
    return DistillingTrainer


class TeacherLogitsCollator:
    """The task's collator for the inputs; the teacher's logits stacked beside them, a token
    task's padded to the batch's sequence length on the side the tokenizer pads."""

    def __init__(self, collator, padding_side: str = "right"):
        self.collator = collator
        self.padding_side = padding_side

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features or TEACHER_COLUMN not in features[0]:
            return self.collator(features)
        logits = [torch.as_tensor(f[TEACHER_COLUMN], dtype=torch.float32) for f in features]
        batch = self.collator(
            [{k: v for k, v in f.items() if k != TEACHER_COLUMN} for f in features]
        )
        if logits[0].dim() == 2:  # (tokens, classes): pad to the batch's length
            length = batch["input_ids"].shape[1]
            logits = [self._pad(x, length) for x in logits]
        batch[TEACHER_COLUMN] = torch.stack(logits)
        return batch

    def _pad(self, logits: torch.Tensor, length: int) -> torch.Tensor:
        missing = length - logits.shape[0]
        if missing <= 0:
            return logits[:length]
        padding = logits.new_zeros(missing, logits.shape[1])
        parts = [logits, padding] if self.padding_side == "right" else [padding, logits]
        return torch.cat(parts)


def distilling(settings: dict[str, Any] | None, trainer_class: type, collator, tokenizer):
    """The Trainer class and collator of a distilled trial (`settings`: DistillSpec.resolve), or
    the task's own (`settings` None: no `distill:`)."""
    if settings is None:
        return trainer_class, collator
    trainer_class = distilling_trainer(
        trainer_class, alpha=settings["alpha"], temperature=settings["temperature"]
    )
    return trainer_class, TeacherLogitsCollator(collator, tokenizer.padding_side)


def student_knobs(settings: dict[str, Any] | None, knobs: dict[str, Any]) -> dict[str, Any]:
    """The model knobs with the student's layer count (ModelFactory.build keeps those layers)."""
    if settings is None or not settings.get("student_layers"):
        return knobs
    return {**knobs, "student_layers": settings["student_layers"]}
