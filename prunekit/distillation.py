"""Knowledge distillation (Hinton et al. 2015): train a small student on a teacher's soft outputs.

The teacher's probabilities at a temperature T > 1 say more than the labels do (which wrong
classes look alike); the student learns from both:

* :func:`distillation_loss`: ``alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE(student, labels)``;
* :func:`predict_logits`: the teacher's logits for a whole tensor of inputs, computed once;
* :func:`distill`: a short training loop on that loss that keeps a pruned student pruned.

Example:
    >>> s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    >>> round(distillation_loss(s, t, torch.tensor([0]), temperature=2.0, alpha=1.0).item(), 6)
    0.0
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .pruning import enforce_masks

__all__ = ["distillation_loss", "predict_logits", "distill"]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton et al. 2015: ``alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(s, labels)``.

    KL is summed over classes and averaged over the batch ("batchmean"); the teacher is a constant
    (no gradient flows into it). The T² factor keeps the soft term's gradients the same size as T changes.

    Args:
        student_logits, teacher_logits: ``(N, C)``; labels: ``(N,)`` int64.
        label_smoothing: passed to the hard (cross-entropy) term.

    Returns:
        a scalar tensor (differentiable w.r.t. the student's logits).

    Example:
        >>> s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]])
        >>> round(distillation_loss(s, t, torch.tensor([0]), 2.0, 1.0).item(), 6)   # same logits: KL = 0
        0.0
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (N, C); got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    if not temperature > 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"need temperature > 0 and alpha in [0, 1]; got T={temperature!r}, alpha={alpha!r}")
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * temperature ** 2 * soft + (1 - alpha) * hard


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's logits for a whole tensor of inputs ``(N, ...)`` -> ``(N, C)``, in eval mode, batched."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def distill(student: nn.Module, data, teacher_logits: torch.Tensor, epochs: int = 1, lr: float = 0.01,
            temperature: float = 4.0, alpha: float = 0.9, loss_fn: Callable = distillation_loss,
            batch_size: int = 128, weight_decay: float = 5e-4, seed: int = 0,
            after_step: Iterable[Callable] = (), max_steps: int | None = None, val_data=None) -> list[dict]:
    """Train ``student`` in place on ``loss_fn(student(x), teacher_logits[batch], y, temperature, alpha)``.

    SGD (momentum 0.9), cosine learning rate over the epochs; masks the student carries are re-applied
    after every step (a pruned student stays pruned), then ``after_step`` callbacks run.

    Args:
        data: an in-memory dataset with ``.x`` and ``.y`` (:func:`prunekit.notebook.preload`).
        teacher_logits: ``(len(data), C)``, precomputed once with :func:`predict_logits`.
        val_data: if given, validation accuracy is measured after each epoch (``"val_acc"``).

    Returns:
        ``[{"epoch", "loss", "train_acc", "val_acc"?}, ...]``.
    """
    from .train import evaluate

    x_all, y_all = data.x, data.y
    if len(teacher_logits) != len(y_all):
        raise ValueError(f"teacher_logits has {len(teacher_logits)} rows, the data {len(y_all)} examples")
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    generator, history, step = torch.Generator().manual_seed(seed), [], 0
    callbacks = list(after_step)
    for epoch in range(epochs):
        student.train()
        loss_sum = correct = seen = 0
        for batch in torch.randperm(len(y_all), generator=generator).split(batch_size):
            logits = student(x_all[batch])
            loss = loss_fn(logits, teacher_logits[batch], y_all[batch], temperature, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            enforce_masks(student)
            step += 1
            for callback in callbacks:
                callback(student, step)
            loss_sum += loss.item() * len(batch)
            correct += (logits.argmax(1) == y_all[batch]).sum().item()
            seen += len(batch)
            if max_steps is not None and step >= max_steps:
                break
        scheduler.step()
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)})
        if val_data is not None:
            history[-1]["val_acc"] = evaluate(student, val_data)
        if max_steps is not None and step >= max_steps:
            break
    student.eval()
    return history
