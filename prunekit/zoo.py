"""Pretrained models shipped with the course, and the command that trains them.

Each checkpoint ``prunekit/checkpoints/<name>.pt`` holds a plain state dict plus its recipe, the
data it was trained and measured on, and the measured test accuracy; ``<name>.json`` beside it
holds the same metadata for people to read.

Train one (fixed seed; the CIFAR models hold out the 5,000 validation images of
``train_val_split``; measured once on the test set at the end)::

    python -m prunekit.zoo train lenet300
    python -m prunekit.zoo train vgg --resume      # continue after an interruption
    python -m prunekit.zoo list
    python -m prunekit.zoo table                   # the README's table, from the checkpoints
    python -m prunekit.zoo train vgg --epochs 160 --cutout 0   # try a variation of the recipe

A recipe may continue an earlier one (``Recipe.start_from``): ResNet-20 is trained for 180 epochs,
then for a second cosine cycle with Cutout and the VGG as teacher, then at a constant learning rate
whose visited weights are averaged (``Recipe.swa``), then once more with the VGG and that average
teaching together (``Recipe.born_again``). Each earlier stage's result is kept in
``<cache>/zoo-stages/``, so it is trained once.

Example:
    >>> model = load_pretrained("lenet300")       # doctest: +SKIP
    >>> checkpoint_info("lenet300")["test_accuracy"]  # doctest: +SKIP
    0.98...
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch import nn

from .data import cache_dir, cifar_archive_md5, load_dataset, make_loader, train_val_split
from .models import DATASET_OF, LANGUAGE_MODEL_NAMES, MODEL_NAMES, build_model
from .train import (evaluate, get_device, make_optimizer, make_scheduler, recompute_batchnorm, seed_everything,
                    train, update_weight_average)
from .zoo_pruned import PRUNED_NAMES, load_pruned, pruned_info, train_pruned
from .zoo_pruned import markdown_table as pruned_table

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
TARGETS = {"lenet300": 0.98, "lenet5": 0.99, "vgg": 0.90, "resnet20": 0.90}


@dataclass(frozen=True)
class Recipe:
    """How a zoo model is trained: SGD with momentum, a cosine schedule stepped per epoch."""

    model: str
    dataset: str
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int = 128
    optimizer: str = "sgd"
    lr_schedule: str = "cosine"
    label_smoothing: float = 0.0
    seed: int = 0
    # Training images held out as a validation set (prunekit.data.train_val_split, seed 0), so
    # labs can tune on them without the model having seen them; 0 trains on all of them.
    val_size: int = 0
    precision: str = "fp32"  # "bf16": mixed precision, 2-3x faster on CPUs with AMX (see train())
    cutout: int = 0  # side of the square prunekit.data.random_cutout hides in each training image; 0 = off
    # Another zoo model (same dataset) whose softened predictions this one also learns from
    # (knowledge distillation, Hinton et al. 2015; prunekit.compression.distillation_loss); "" = none.
    teacher: str = ""
    temperature: float = 4.0
    distill_alpha: float = 0.9  # weight of the teacher's term; 1 - distill_alpha goes to the labels
    # An earlier stage: train that recipe first (or reuse its result) and start from its weights
    # instead of a random initialisation, e.g. a second cosine cycle with a teacher; None = from scratch.
    start_from: "Recipe | None" = None
    # Stochastic weight averaging (Izmailov et al. 2018): ship the mean of the weights at the end of every
    # epoch, with BatchNorm statistics re-estimated for it; meant for a constant lr_schedule.
    swa: bool = False
    # The frozen weights this stage starts from (start_from's result) teach too: their logits are averaged
    # with the teacher's, a two-model ensemble teacher better than either ("born-again" networks,
    # Furlanello et al. 2018, use an earlier generation of the same architecture as the teacher).
    born_again: bool = False


def _recipe_defaults() -> dict:
    """``{field: default}`` for every Recipe field that has one."""
    return {f.name: f.default for f in fields(Recipe) if f.default is not MISSING}


def recipe_with_defaults(recorded: dict) -> dict:
    """A recipe as recorded in a checkpoint or progress file, with fields added to Recipe since set
    to the defaults they had then (e.g. ``cutout=0``), so old and new records compare equal."""
    merged = {**_recipe_defaults(), **recorded}
    if merged["start_from"] is not None:  # an earlier stage was recorded the same way
        merged["start_from"] = recipe_with_defaults(merged["start_from"])
    return merged


# He et al.'s 180-epoch schedule for ResNet-20: the first of its three stages (88.58 % alone).
_RESNET20_FIRST_STAGE = Recipe("resnet20", "cifar10", epochs=180, lr=0.1, weight_decay=5e-4, label_smoothing=0.1,
                               val_size=5000, precision="bf16")
# Then a second, gentler cosine cycle from that result, adding Cutout and distillation from the VGG (89.71 %).
_RESNET20_SECOND_STAGE = replace(_RESNET20_FIRST_STAGE, epochs=90, lr=0.05, cutout=16, teacher="vgg",
                                 start_from=_RESNET20_FIRST_STAGE)

# Then at a constant small learning rate, shipping the average of the weights it visits (89.78 %).
_RESNET20_THIRD_STAGE = replace(_RESNET20_SECOND_STAGE, epochs=50, lr=0.01, lr_schedule="constant", swa=True,
                                start_from=_RESNET20_SECOND_STAGE)

RECIPES = {
    "lenet300": Recipe("lenet300", "mnist", epochs=20, lr=0.05, weight_decay=1e-4),
    "lenet5": Recipe("lenet5", "mnist", epochs=12, lr=0.05, weight_decay=5e-4),
    "vgg": Recipe("vgg", "cifar10", epochs=110, lr=0.1, weight_decay=5e-4, label_smoothing=0.1,
                  val_size=5000, precision="bf16", cutout=16),
    # Last, the third stage again, taught by the VGG and the third stage's own result together (90.07 %;
    # on validation 90.42 %, no better than the third stage: see the README).
    "resnet20": replace(_RESNET20_THIRD_STAGE, epochs=60, born_again=True, start_from=_RESNET20_THIRD_STAGE),
}


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES + LANGUAGE_MODEL_NAMES:
        raise ValueError(f"unknown zoo model {name!r}: expected one of {', '.join(MODEL_NAMES + LANGUAGE_MODEL_NAMES)}")


def checkpoint_path(name: str) -> Path:
    """Where the checkpoint of ``name`` is shipped inside the package."""
    _check_name(name)
    return CHECKPOINT_DIR / f"{name}.pt"


def load_pretrained(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model ``"lenet300"``, ``"lenet5"``, ``"vgg"`` or ``"resnet20"``, in eval mode.

    Raises FileNotFoundError (saying how to train it) when the checkpoint is not shipped.

    Example:
        >>> model = load_pretrained("lenet5")     # doctest: +SKIP
        >>> model.training                         # doctest: +SKIP
        False
    """
    if name in PRUNED_NAMES:  # a pruned model (prunekit.zoo_pruned): its own, smaller architecture
        return load_pruned(name, device)
    path = checkpoint_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for {name!r} at {path}. "
                                f"Train it with: python -m prunekit.zoo train {name}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(name)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def checkpoint_info(name: str) -> dict:
    """The metadata recorded with a checkpoint: recipe, data, test accuracy, training time..."""
    if name in PRUNED_NAMES:
        return pruned_info(name)
    path = checkpoint_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for {name!r}; train it with python -m prunekit.zoo train {name}")
    return torch.load(path, map_location="cpu", weights_only=True)["info"]


def _data_record(dataset: str) -> dict:
    if dataset == "mnist":
        return {"dataset": "mnist", "files": "official MNIST IDX files (MD5-verified)"}
    md5 = cifar_archive_md5()
    official = md5 == "c58f30108f718f92721af3b95e74349a"
    return {"dataset": "cifar10", "archive_md5": md5,
            "files": "official CIFAR-10 archive" if official else
            "CIFAR-10 rebuild (official labels/order, ~90% of images JPEG-decoded; see the data README)"}


def _teachers(recipe: Recipe, start_weights: dict | None, device) -> list[nn.Module]:
    """The frozen models a recipe distils from: its shipped ``teacher``, plus with ``born_again`` a copy of
    the weights it starts from."""
    teachers = []
    if recipe.teacher:
        if recipe.teacher not in MODEL_NAMES or recipe.teacher == recipe.model:
            raise ValueError(f"teacher must be another zoo model, one of {', '.join(MODEL_NAMES)}; "
                             f"got {recipe.teacher!r} (to learn from {recipe.model}'s own earlier stage, "
                             f"set born_again=True)")
        if DATASET_OF[recipe.teacher] != recipe.dataset:
            raise ValueError(f"teacher {recipe.teacher!r} was trained on {DATASET_OF[recipe.teacher]}, "
                             f"not on {recipe.dataset}")
        teachers.append(load_pretrained(recipe.teacher, device=device))
    if recipe.born_again:
        if start_weights is None:
            raise ValueError("born_again=True needs start_from: the earlier stage whose weights teach")
        earlier = build_model(recipe.model)
        earlier.load_state_dict(start_weights)
        teachers.append(earlier.to(device).eval())
    for teacher in teachers:  # eval mode: their BatchNorm statistics stay fixed
        teacher.requires_grad_(False)
    return teachers


def _distillation_loss_fn(recipe: Recipe, device, start_weights: dict | None = None):
    """``f(logits, x, y)``: the recipe's distillation loss against its frozen teachers; with two, against
    the mean of their logits (an ensemble)."""
    from .compression import distillation_loss  # local import: compression builds on train, not on zoo

    teachers = _teachers(recipe, start_weights, device)
    if recipe.dataset == "cifar10":  # the same NHWC speed-up as the student's (see train_zoo_model)
        teachers = [teacher.to(memory_format=torch.channels_last) for teacher in teachers]

    def loss_fn(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = torch.stack([teacher(x).float() for teacher in teachers]).mean(0)
        return distillation_loss(logits.float(), teacher_logits, y, recipe.temperature,
                                 recipe.distill_alpha, label_smoothing=recipe.label_smoothing)
    return loss_fn


def _changed_fields(recipe: dict) -> dict:
    """The fields of a recorded recipe that differ from Recipe's defaults (earlier stages likewise)."""
    defaults = _recipe_defaults()
    changed = {k: v for k, v in recipe.items() if k not in defaults or v != defaults[k]}
    if changed.get("start_from") is not None:
        changed["start_from"] = _changed_fields(changed["start_from"])
    return changed


def _recipe_key(recipe: Recipe) -> str:
    """A short fingerprint of a recipe: earlier stages are cached under it. Only fields that differ from
    their defaults count, so adding a field to Recipe later does not orphan the stages already trained."""
    text = json.dumps(_changed_fields(asdict(recipe)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def stage_weights(recipe: Recipe, device=None, resume: bool = False, quiet: bool = False) -> dict:
    """The result ``{"state_dict", "info"}`` of an earlier stage ``recipe``: from the stage cache
    (``<cache>/zoo-stages/``), else from the shipped checkpoint when exactly this recipe made it,
    else by training it. Cached either way, because the next stage replaces the shipped file."""
    cached = cache_dir() / "zoo-stages" / f"{recipe.model}-{_recipe_key(recipe)}.pt"
    if not cached.is_file():
        shipped = checkpoint_path(recipe.model)
        checkpoint = torch.load(shipped, map_location="cpu", weights_only=True) if shipped.is_file() else None
        if checkpoint is None or recipe_with_defaults(checkpoint["info"]["recipe"]) != asdict(recipe):
            print(f"training the earlier stage of {recipe.model} first ({recipe.epochs} epochs)", flush=True)
            model, info = _fit(recipe, device, resume, quiet, progress_name=cached.stem)
            checkpoint = {"state_dict": model.state_dict(), "info": info}
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, cached)
    return torch.load(cached, map_location="cpu", weights_only=True)


def train_zoo_model(name: str, epochs: int | None = None, device=None, resume: bool = False,
                    quiet: bool = False, cutout: int | None = None, teacher: str | None = None,
                    lr: float | None = None) -> dict:
    """Train ``name`` with its recipe from a fixed seed, evaluate on the test set, save the checkpoint.

    Progress is saved after each epoch in the per-user cache, so ``resume=True`` continues an
    interrupted run. A recipe with ``start_from`` first gets that stage's weights (see
    ``stage_weights``). ``epochs``, ``cutout``, ``teacher`` and ``lr`` override the last stage's recipe.
    Returns the recorded metadata.
    """
    _check_name(name)
    overrides = {"epochs": epochs, "cutout": cutout, "teacher": teacher, "lr": lr}
    recipe = replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
    model, info = _fit(recipe, device, resume, quiet, progress_name=name)
    save_checkpoint(name, model.state_dict(), info)
    print(f"saved {checkpoint_path(name)}: test accuracy {info['test_accuracy']:.4f} (target {TARGETS[name]})")
    return info


def save_checkpoint(name: str, state_dict: dict, info: dict) -> None:
    """Write ``<name>.pt`` (weights and record) and ``<name>.json`` (the record without per-epoch history)."""
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "info": info}, checkpoint_path(name))
    summary = {k: v for k, v in info.items() if k not in ("history", "stages")}
    if "stages" in info:
        summary["stages"] = [{k: v for k, v in stage.items() if k != "history"} for stage in info["stages"]]
    (CHECKPOINT_DIR / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")


def _fit(recipe: Recipe, device, resume: bool, quiet: bool, progress_name: str) -> tuple[nn.Module, dict]:
    """Train one recipe (after its earlier stages) and measure it on the test set: (model, record)."""
    name = recipe.model
    device = get_device(device)
    progress = cache_dir() / "zoo-progress" / f"{progress_name}.pt"
    state = torch.load(progress, map_location=device, weights_only=False) if resume and progress.is_file() else None
    if state is not None and recipe_with_defaults(state.get("recipe", {})) != asdict(recipe):
        # Checked before anything is trained: an earlier stage may take hours.
        raise ValueError(f"{progress} was made with another recipe ({state.get('recipe')}); "
                         f"delete it or train without --resume")
    earlier = stage_weights(recipe.start_from, device, resume, quiet) if recipe.start_from else None
    seed_everything(recipe.seed)
    model = build_model(name).to(device)
    if earlier is not None:
        model.load_state_dict(earlier["state_dict"])
    if recipe.dataset == "cifar10":  # NHWC convolutions run ~1.6x faster on CPU here
        model = model.to(memory_format=torch.channels_last)
    test_set = load_dataset(recipe.dataset, "test")
    if recipe.val_size:
        train_set, monitor_set = train_val_split(recipe.dataset, val_size=recipe.val_size, seed=0,
                                                 cutout=recipe.cutout)
        monitor = "val_acc"
    else:  # trained on every training image: the only held-out set to watch is the test set
        train_set = load_dataset(recipe.dataset, "train", cutout=recipe.cutout)
        monitor_set, monitor = test_set, "test_acc"
    loss_fn = (_distillation_loss_fn(recipe, device, earlier and earlier["state_dict"])
               if recipe.teacher or recipe.born_again else None)
    optimizer = make_optimizer(model, recipe.optimizer, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = make_scheduler(optimizer, recipe.lr_schedule, recipe.epochs)
    start_epoch, seconds, history, average = 0, 0.0, [], None  # average: the SWA weights so far
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch, seconds, history = state["epoch"], state["seconds"], state["history"]
        average = state.get("average")  # absent from progress files made before Recipe.swa
        print(f"resuming {name} after epoch {start_epoch}")
    for epoch in range(start_epoch, recipe.epochs):
        t0 = time.perf_counter()
        loader = make_loader(train_set, recipe.batch_size, shuffle=True, seed=recipe.seed + epoch)
        # seed=None: augmentation continues one global random stream over the epochs (saved for --resume)
        record = train(model, loader, epochs=1, optimizer=optimizer, lr_schedule=None, device=device, seed=None,
                       quiet=quiet, label_smoothing=recipe.label_smoothing, precision=recipe.precision,
                       loss_fn=loss_fn)[0]
        if scheduler is not None:
            scheduler.step()
        if recipe.swa:
            average = update_weight_average(average, model, count=epoch)
        epoch_seconds = time.perf_counter() - t0
        seconds += epoch_seconds
        # Per-epoch time and thread count: a resumed run may mix thread counts, and the total alone hides it.
        record.update(epoch=epoch + 1, seconds=round(epoch_seconds, 1), threads=torch.get_num_threads(),
                      **{monitor: evaluate(model, monitor_set, device=device)})
        history.append(record)
        print(f"{name} epoch {epoch + 1}/{recipe.epochs}: loss {record['loss']:.4f} "
              f"train {record['train_acc']:.4f} {monitor[:-4]} {record[monitor]:.4f} ({seconds:.0f} s)", flush=True)
        progress.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler and scheduler.state_dict(), "rng": torch.get_rng_state(),
                    "recipe": asdict(recipe), "epoch": epoch + 1, "seconds": seconds, "history": history,
                    "average": average}, progress)
    swa = (_finish_weight_average(model, average, history, train_set, monitor_set, monitor, device)
           if recipe.swa else None)
    accuracy = evaluate(model.cpu(), test_set, device="cpu")
    info = {"name": name, "recipe": asdict(recipe), "test_accuracy": accuracy, "target": TARGETS[name],
            "train_seconds": round(seconds, 1), "device": str(device),
            "threads": sorted({r["threads"] for r in history if "threads" in r}),
            "torch": str(torch.__version__), "machine": platform.machine(), "data": _data_record(recipe.dataset),
            "parameters": sum(p.numel() for p in model.parameters()),
            "date": time.strftime("%Y-%m-%d"), "history": history}
    if swa is not None:
        info["swa"] = swa
    if earlier is not None:  # what the earlier stages measured and cost, so the record tells the whole story
        previous = earlier["info"]
        info["stages"] = previous.get("stages", []) + [{k: v for k, v in previous.items() if k != "stages"}]
        info["total_train_seconds"] = round(seconds + sum(st["train_seconds"] for st in info["stages"]), 1)
    return model, info


def _finish_weight_average(model: nn.Module, average: dict, history: list[dict], train_set, monitor_set,
                           monitor: str, device) -> dict:
    """Load the averaged weights into ``model`` and re-estimate its BatchNorm statistics on the training
    images; returns what averaging gave: ``{"epochs_averaged", "last_epoch_<monitor>", "averaged_<monitor>"}``."""
    model.load_state_dict(average)
    t0 = time.perf_counter()
    recompute_batchnorm(model, train_set, device=device)
    return {"epochs_averaged": len(history), f"last_epoch_{monitor}": history[-1][monitor],
            f"averaged_{monitor}": evaluate(model, monitor_set, device=device),
            "batchnorm_seconds": round(time.perf_counter() - t0, 1)}


def markdown_table() -> str:
    """The README's table of shipped checkpoints, written from their recorded metadata.

    ``python -m prunekit.zoo table`` prints it; a test checks that README.md contains it, so the
    numbers people read are the numbers the checkpoints carry.
    """
    lines = ["| model | data | parameters | test accuracy | target | trained |", "|---|---|---|---|---|---|"]
    for name in MODEL_NAMES:
        if not checkpoint_path(name).is_file():
            lines.append(f"| `{name}` | {DATASET_OF[name]} | | not trained yet | {TARGETS[name]:.0%} | |")
            continue
        info = checkpoint_info(name)
        recipe, accuracy = info["recipe"], info["test_accuracy"]
        verdict = "" if accuracy >= info["target"] else " (below target)"
        notes = [recipe["precision"]] if recipe.get("precision", "fp32") != "fp32" else []
        notes += [f"cutout {recipe['cutout']}"] if recipe.get("cutout") else []
        teachers = ([recipe["teacher"]] if recipe.get("teacher") else []) + (
            ["its earlier stage"] if recipe.get("born_again") else [])
        notes += [f"distilled from {' + '.join(teachers)}"] if teachers else []
        notes += ["weight-averaged"] if recipe.get("swa") else []
        extras = f" ({', '.join(notes)})" if notes else ""
        stages = info.get("stages", [])  # earlier stages first: "180 + 90 epochs"
        epochs = " + ".join(str(st["recipe"]["epochs"]) for st in stages + [info])
        seconds = info.get("total_train_seconds", info["train_seconds"])
        lines.append(f"| `{name}` | {recipe['dataset']} | {info['parameters']:,} | {accuracy:.2%}{verdict} | "
                     f"{info['target']:.0%} | {epochs} epochs, {seconds / 60:.0f} min "
                     f"on {info['device']}{extras} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prunekit.zoo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a zoo model with its recipe and save the checkpoint")
    t.add_argument("name", choices=MODEL_NAMES + PRUNED_NAMES + LANGUAGE_MODEL_NAMES)
    t.add_argument("--epochs", type=int, help="override the recipe's epochs")
    t.add_argument("--cutout", type=int, help="override the recipe's cutout size (0 = off)")
    t.add_argument("--teacher", choices=MODEL_NAMES, help="distil from this shipped zoo model (default: the recipe's)")
    t.add_argument("--lr", type=float, help="override the recipe's (initial) learning rate")
    t.add_argument("--device", help="cpu, cuda, mps (default: automatic)")
    t.add_argument("--resume", action="store_true", help="continue from the last finished epoch")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--steps", type=int, help="chargpt only: override the recipe's optimizer steps")
    sub.add_parser("list", help="show the shipped checkpoints and their accuracy")
    sub.add_parser("table", help="print the README's markdown table of the shipped checkpoints")
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.name in PRUNED_NAMES:  # made from a dense checkpoint by its PrunedRecipe (no overrides)
            train_pruned(args.name, device=args.device, resume=args.resume, quiet=args.quiet)
            return
        if args.name in LANGUAGE_MODEL_NAMES:  # a language model (prunekit.zoo_language): its own LMRecipe
            from .zoo_language import train_chargpt
            train_chargpt(steps=args.steps, device=args.device, quiet=args.quiet)
            return
        train_zoo_model(args.name, epochs=args.epochs, device=args.device, resume=args.resume, quiet=args.quiet,
                        cutout=args.cutout, teacher=args.teacher, lr=args.lr)
    elif args.command == "table":
        print(markdown_table())
        print()
        print(pruned_table())
        print()
        from .zoo_language import markdown_table as language_table
        print(language_table())
    else:
        for name in MODEL_NAMES:
            try:
                info = checkpoint_info(name)
                print(f"{name:10s} test accuracy {info['test_accuracy']:.4f} (target {info['target']}), "
                      f"{info['parameters']:,} parameters, trained "
                      f"{info.get('total_train_seconds', info['train_seconds']):.0f} s on {info['device']}")
            except FileNotFoundError:
                print(f"{name:10s} not trained yet")


if __name__ == "__main__":
    main()
