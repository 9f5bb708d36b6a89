"""The distillation loss against a hand computation, and the collator of teacher logits."""

from __future__ import annotations

import math

import pytest
import torch

from hpsearch.trial.distill import TEACHER_COLUMN, TeacherLogitsCollator, distillation_loss


def softmax(xs: list[float], t: float) -> list[float]:
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def test_the_loss_is_alpha_task_plus_t_squared_kl_of_teacher_from_student():
    student = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    teacher = [[0.0, 3.0, 1.0], [1.0, -1.0, 2.0]]
    task_loss, alpha, t = 0.7, 0.25, 3.0
    # By hand: the mean over examples of KL(teacher at T || student at T), times T^2.
    soft = (
        sum(kl(softmax(te, t), softmax(st, t)) for st, te in zip(student, teacher, strict=True)) / 2
    )
    expected = alpha * task_loss + (1 - alpha) * t**2 * soft
    loss = distillation_loss(
        torch.tensor(task_loss),
        torch.tensor(student),
        torch.tensor(teacher),
        torch.tensor([0, 2]),
        alpha=alpha,
        temperature=t,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_alpha_one_is_the_task_loss_and_a_matching_teacher_adds_nothing():
    logits = torch.tensor([[1.0, -2.0]])
    other = torch.tensor([[-1.0, 2.0]])
    # alpha 1: the teacher does not count.
    one = distillation_loss(torch.tensor(0.4), logits, other, None, alpha=1.0, temperature=2.0)
    assert one.item() == pytest.approx(0.4)
    # A student that matches the teacher has no divergence left.
    same = distillation_loss(torch.tensor(0.4), logits, logits, None, alpha=0.0, temperature=2.0)
    assert same.item() == pytest.approx(0.0, abs=1e-7)


def test_token_logits_count_only_labelled_tokens():
    student = torch.tensor([[[1.0, 0.0], [0.0, 5.0], [3.0, 3.0]]])
    teacher = torch.tensor([[[0.0, 1.0], [9.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, -100, 0]])
    t = 2.0
    # Token 1 (label -100) is left out, however far apart its logits are.
    pairs = [(teacher[0, i].tolist(), student[0, i].tolist()) for i in (0, 2)]
    soft = sum(kl(softmax(te, t), softmax(st, t)) for te, st in pairs) / 2
    loss = distillation_loss(torch.tensor(0.0), student, teacher, labels, alpha=0.0, temperature=t)
    assert loss.item() == pytest.approx(t**2 * soft, rel=1e-6)


def test_the_collator_pads_token_logits_to_the_batch_on_the_tokenizer_side():
    def pad_inputs(features):
        length = max(len(f["input_ids"]) for f in features)
        return {
            "input_ids": torch.tensor(
                [f["input_ids"] + [0] * (length - len(f["input_ids"])) for f in features]
            )
        }

    features = [
        {"input_ids": [5, 6, 7], TEACHER_COLUMN: [[1.0, 2.0]] * 3},
        {"input_ids": [5], TEACHER_COLUMN: [[3.0, 4.0]]},
    ]
    batch = TeacherLogitsCollator(pad_inputs, "right")(features)
    # The logits follow the inputs' padding: (batch, tokens, classes), zeros where padded.
    assert batch[TEACHER_COLUMN].shape == (2, 3, 2)
    assert batch[TEACHER_COLUMN][1].tolist() == [[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]]
    left = TeacherLogitsCollator(pad_inputs, "left")(features)
    assert left[TEACHER_COLUMN][1].tolist() == [[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]]
    # An eval batch has no teacher logits and goes to the task's collator as it is.
    assert TEACHER_COLUMN not in TeacherLogitsCollator(pad_inputs)([{"input_ids": [1]}])
