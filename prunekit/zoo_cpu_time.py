"""What a pruned zoo recipe costs on a CPU, from training steps timed on one, not guessed.

The shipped CIFAR checkpoints were fine-tuned on a GPU when one was lent; the recipes are meant to run on
an ordinary 2-core CPU in under two hours. :func:`cpu_training_estimate` times a few steps of the
recipe's own training (the pruned network, its teachers' forward passes, mixed precision as the recipe
says) and one pass over the validation images, and scales them to the recipe's epochs.

Example:
    >>> cpu_training_estimate("vgg_pruned")["minutes"]   # doctest: +SKIP
    61.2
"""
from __future__ import annotations

import os
import time

import torch

from .models import build_model
from .train import evaluate, fast_precision, make_optimizer, train
from .zoo_pruned import (PRUNED_RECIPES, _data, _distill_fn, _prepare, _steps_per_epoch, pruned_architecture,
                         pruned_path)


def cpu_training_estimate(name: str, widths: dict[str, int] | None = None, threads: int = 2,
                          steps: int = 8) -> dict:
    """Minutes the recipe of ``name`` needs on this CPU with ``threads`` threads (wall clock).

    Times ``steps`` training steps after one warm-up step, and one evaluation of the validation split;
    ``widths`` is the channel plan of a channel-pruned model (``None``: the dense architecture).
    Returns ``{"threads", "seconds_per_step", "validation_seconds", "epochs", "minutes", "load", "precision",
    "cpu", "bf16_hardware", "how"}``: the estimate holds only for CPUs like this one, so it says which
    instruction set torch used (``"cpu"``, e.g. ``"AVX2"``) and whether bfloat16 ran on hardware. Without
    that hardware a bf16 recipe is emulated and about 10x slower (see ``prunekit.train.fast_precision``).
    """
    pruned_path(name)  # checks the name
    recipe = PRUNED_RECIPES[name]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from .zoo import load_pretrained

        dataset, train_set, val_set = _data(recipe)
        teachers = [_prepare(load_pretrained(t), dataset).requires_grad_(False)
                    for t in recipe.teachers or (recipe.dense,)]
        model = pruned_architecture(recipe.dense, widths) if widths else build_model(recipe.dense)
        model = _prepare(model, dataset).train()
        optimizer = make_optimizer(model, "sgd", lr=recipe.lr, weight_decay=recipe.weight_decay)

        def run(n: int) -> float:
            t0 = time.perf_counter()
            train(model, train_set, epochs=1, optimizer=optimizer, lr_schedule=None, device="cpu", seed=0,
                  quiet=True, precision=recipe.precision, loss_fn=_distill_fn(recipe, teachers), max_steps=n,
                  batch_size=recipe.batch_size)
            return time.perf_counter() - t0

        run(1)  # warm-up: first-call kernel selection and allocations
        per_step = run(steps) / steps
        t0 = time.perf_counter()
        evaluate(model, val_set, device="cpu")
        validation = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous)
    epoch = _steps_per_epoch(recipe, train_set) * per_step + validation
    return {"threads": threads, "seconds_per_step": round(per_step, 4), "validation_seconds": round(validation, 1),
            "epochs": recipe.epochs, "minutes": round(recipe.epochs * epoch / 60, 1),
            "load": round(os.getloadavg()[0], 2), "precision": recipe.precision,
            "cpu": torch.backends.cpu.get_cpu_capability(), "bf16_hardware": fast_precision("cpu") == "bf16",
            "how": f"{steps} training steps of {recipe.batch_size} images (after one warm-up step) and one "
                   f"validation pass timed on this CPU with {threads} threads, scaled to {recipe.epochs} epochs "
                   "(an estimate from timed steps, not a whole CPU run; the channel choice adds a minute)"}
