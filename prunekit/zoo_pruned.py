"""Pruned zoo models: the course's headline pruning results, shipped so anyone can check them in seconds.

Four checkpoints, each made from a shipped dense zoo model (``prunekit.zoo``) by a recipe here:

================== ======== ==========================================================================
name               from     what
================== ======== ==========================================================================
lenet300_sparse    lenet300 >= 95 % of the weights exactly zero (gradual magnitude pruning, masks)
lenet5_sparse      lenet5   >= 95 % of the weights exactly zero (gradual magnitude pruning, masks)
vgg_pruned         vgg      channels removed by surgery (dependency groups), >= 2x fewer MACs
resnet20_pruned    resnet20 channels removed by surgery (dependency groups), >= 2x fewer MACs
================== ======== ==========================================================================

Every recipe fine-tunes with distillation (Hinton et al. 2015) from the dense model (for LeNet-300-100
together with LeNet-5: the mean of their logits, ``PrunedRecipe.teachers``), on the training images minus
the 5,000 of ``train_val_split``; every choice (the channel plan, the pruning scope) is made on those
5,000 validation images, and the test set is read once, at the end.

* **sparse** (``kind="sparse"``): automated gradual pruning (Zhu & Gupta 2017) raises the sparsity from
  0 to the target over the first half of training, then the network recovers at the target; a cosine
  learning rate over the whole run. The scope (one global magnitude ranking, or the same sparsity in
  every layer) is chosen by a shorter run of each on the validation split.
* **channels** (``kind="channels"``): candidate *plans* say how many channels each dependency group
  keeps; one knob per plan is set by bisection so that the model has at most ``1 / mac_reduction`` of
  the dense MACs, with channel counts rounded to multiples of ``channel_multiple`` (CPU kernels run
  whole vector registers). Each candidate is fine-tuned briefly (or, with ``select_epochs=0``, only its
  BatchNorm statistics are re-estimated) and the best on validation is kept and fine-tuned fully.
  Plans: ``"uniform"`` (the same fraction of every group), ``"global"`` (one ranking of all channels by
  filter L2 norm divided by their group's mean, so wide and narrow layers compete fairly) and
  ``"internal"`` (ResNet: only the channels inside residual blocks).

The plans themselves live in ``prunekit.channel_plans``. A record made on a GPU also says what the recipe
costs on a CPU, from training steps timed there (``prunekit.zoo_cpu_time``).

The pruned architecture is stored as channel counts per group: ``load_pruned`` builds the dense model,
shrinks it to those counts and loads the weights.

Example:
    >>> from prunekit.zoo import load_pretrained
    >>> small = load_pretrained("vgg_pruned")            # doctest: +SKIP
    >>> pruned_info("vgg_pruned")["macs"]["reduction"]   # doctest: +SKIP
    2.0...
"""
from __future__ import annotations

import copy
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .channel_plans import channel_scores, keep_top, macs_of, plan_for_macs
from .compression import distillation_loss
from .data import cache_dir, load_dataset, make_loader, subset, train_val_split
from .dependency import dependency_groups
from .measure import count_macs
from .models import INPUT_SHAPES, build_model
from .pruning import apply_masks, get_masks, make_permanent, model_sparsity, prunable_weights
from .schedules import agp_sparsity, gradual_pruning_callback
from .surgery import shrink
from .train import evaluate, get_device, make_optimizer, make_scheduler, recompute_batchnorm, train


@dataclass(frozen=True)
class PrunedRecipe:
    """How a pruned zoo model is made from a dense one (see the module docstring)."""

    dense: str                  # the shipped zoo model it starts from
    kind: str                   # "sparse" (masks, zeros kept) or "channels" (surgery: a smaller model)
    epochs: int                 # fine-tuning epochs of the final run
    lr: float                   # initial learning rate (cosine schedule, SGD with momentum 0.9)
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    val_size: int = 5000        # training images held out for every choice (train_val_split, seed 0)
    precision: str = "fp32"     # "bf16": mixed precision (prunekit.train.fast_precision)
    label_smoothing: float = 0.0
    teachers: tuple[str, ...] = ()  # shipped zoo models whose mean logits teach; () = the dense model alone
    temperature: float = 4.0    # distillation from the dense model
    distill_alpha: float = 0.9
    candidates: tuple[str, ...] = ()  # sparse: scopes; channels: plans; the best on validation is kept
    # Length of each candidate's trial run (epochs; may be a fraction). Channel plans only: 0 = no training,
    # just BatchNorm statistics re-estimated on BATCHNORM_IMAGES training images (cheap, a rougher guide).
    select_epochs: float = 1.0
    sparsity: float = 0.95      # sparse: fraction of the prunable weights set to zero
    prune_fraction: float = 0.5  # sparse: the gradual ramp takes this fraction of the training steps
    mac_reduction: float = 2.0  # channels: dense MACs / pruned MACs at least this
    channel_multiple: int = 8   # channels: every group keeps a multiple of this many channels


PRUNED_RECIPES = {
    # LeNet-5 (99.25 %) teaches LeNet-300-100 together with the dense LeNet-300-100 itself.
    "lenet300_sparse": PrunedRecipe("lenet300", "sparse", epochs=40, lr=0.02, weight_decay=1e-4,
                                    teachers=("lenet300", "lenet5"), candidates=("global", "layerwise"),
                                    select_epochs=8),
    "lenet5_sparse": PrunedRecipe("lenet5", "sparse", epochs=20, lr=0.02, weight_decay=1e-4,
                                  candidates=("global", "layerwise"), select_epochs=3),
    # Channel counts in multiples of 16: with AVX-512 (16 floats) the pruned VGG then runs >= 0.8 of its MAC
    # ratio faster (measured: multiples of 8 gave 0.69-0.72, see python -m prunekit.bench_pruned).
    # Plans compared without training (BatchNorm re-estimated), then 60 epochs of distillation
    # (15 epochs left the VGG 1.5 and ResNet-20 2.5 points short of dense; 60: 0.95 and 1.92).
    # The two CIFAR models teach together (the mean of their logits, a better teacher than either).
    "vgg_pruned": PrunedRecipe("vgg", "channels", epochs=60, lr=0.02, precision="bf16", label_smoothing=0.1,
                               teachers=("vgg", "resnet20"), candidates=("uniform", "global"), select_epochs=0,
                               channel_multiple=16),
    "resnet20_pruned": PrunedRecipe("resnet20", "channels", epochs=60, lr=0.02, precision="bf16",
                                    label_smoothing=0.1, teachers=("resnet20", "vgg"),
                                    candidates=("uniform", "global", "internal"), select_epochs=0,
                                    channel_multiple=4),  # 8 would halve stage 1 at once
}
PRUNED_NAMES = tuple(PRUNED_RECIPES)
# The bounds of the issue that asked for these checkpoints: sparse models at most 0.10 points below dense
# with >= 95 % zeros; channel-pruned models at most 1.0 point below dense with >= 2x fewer MACs.
MAX_DROP = {"sparse": 0.0010, "channels": 0.010}
BATCHNORM_IMAGES = 2560


def pruned_path(name: str) -> Path:
    """Where the checkpoint of the pruned model ``name`` is shipped."""
    from .zoo import CHECKPOINT_DIR

    if name not in PRUNED_RECIPES:
        raise ValueError(f"unknown pruned zoo model {name!r}: expected one of {', '.join(PRUNED_NAMES)}")
    return CHECKPOINT_DIR / f"{name}.pt"


# ----------------------------------------------------------------------------- architecture
def group_widths(model: nn.Module) -> dict[str, int]:
    """``{group name: channels}`` of every dependency group of ``model`` (``prunekit.dependency``)."""
    return {g.name: g.size for g in dependency_groups(model)}


def pruned_architecture(dense: str, widths: dict[str, int]) -> nn.Module:
    """A freshly initialised ``dense`` model shrunk to ``widths`` channels per group (weights random).

    Example:
        >>> pruned_architecture("vgg", {"conv1": 16}).conv1.out_channels
        16
    """
    model = build_model(dense)
    return shrink(model, {name: range(n) for name, n in widths.items()})


def load_pruned(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The pruned zoo model ``name`` in eval mode (see :data:`PRUNED_NAMES`); used by ``zoo.load_pretrained``."""
    path = pruned_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for {name!r} at {path}. "
                                f"Make it with: python -m prunekit.zoo train {name}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    info = checkpoint["info"]
    model = (pruned_architecture(info["dense"], info["widths"]) if info["recipe"]["kind"] == "channels"
             else build_model(info["dense"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def pruned_info(name: str) -> dict:
    """The record saved with a pruned checkpoint (recipe, choices, dense reference, MACs, accuracy...)."""
    path = pruned_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint for {name!r}; make it with python -m prunekit.zoo train {name}")
    return torch.load(path, map_location="cpu", weights_only=True)["info"]


# ----------------------------------------------------------------------------- training pieces
def _data(recipe: PrunedRecipe):
    dataset = "mnist" if recipe.dense in ("lenet300", "lenet5") else "cifar10"
    train_set, val_set = train_val_split(dataset, val_size=recipe.val_size, seed=0)
    return dataset, train_set, val_set


def _distill_fn(recipe: PrunedRecipe, teachers: list[nn.Module]):
    """``f(logits, x, y)``: distillation from the frozen teachers' mean logits (Hinton et al. 2015)."""
    def loss_fn(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = torch.stack([teacher(x).float() for teacher in teachers]).mean(0)
        return distillation_loss(logits.float(), teacher_logits, y, recipe.temperature, recipe.distill_alpha,
                                 label_smoothing=recipe.label_smoothing)
    return loss_fn


def _steps_per_epoch(recipe: PrunedRecipe, train_set) -> int:
    return math.ceil(len(train_set) / recipe.batch_size)


def _sparse_callback(recipe: PrunedRecipe, scope: str, total_steps: int, offset: int):
    """The AGP pruning callback for one epoch's ``train`` call, whose steps start at ``offset``."""
    ramp = max(1, int(recipe.prune_fraction * total_steps))
    events = max(1, min(100, ramp // 50))
    schedule = lambda step: agp_sparsity(step, 0.0, recipe.sparsity, start_step=0, n_steps=events,  # noqa: E731
                                         frequency=max(1, ramp // events))
    prune = gradual_pruning_callback(schedule, scope=scope)
    return lambda model, step: prune(model, step + offset)


def _fine_tune(model: nn.Module, recipe: PrunedRecipe, train_set, val_set, teachers: list[nn.Module], epochs: float,
               scope: str | None, device, quiet: bool, progress: Path | None = None, state: dict | None = None,
               extra: dict | None = None) -> list[dict]:
    """Fine-tune ``model`` in place with distillation and a cosine lr over ``epochs`` (a fraction allowed: the
    last epoch is cut short); with ``scope``, prune gradually to ``recipe.sparsity`` meanwhile. Saves
    progress after every whole epoch to ``progress`` (with ``extra``), and continues from ``state``."""
    steps_per_epoch = _steps_per_epoch(recipe, train_set)
    total_steps = max(1, round(epochs * steps_per_epoch))
    whole_epochs = math.ceil(total_steps / steps_per_epoch)
    model.to(device)  # before the optimizer: a resumed optimizer state then lands on the model's device
    optimizer = make_optimizer(model, "sgd", lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = make_scheduler(optimizer, "cosine", whole_epochs)
    loss_fn = _distill_fn(recipe, teachers)
    start, history, seconds = 0, [], 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, history, seconds = state["epoch"], state["history"], state["seconds"]
        print(f"resuming after epoch {start}", flush=True)
    for epoch in range(start, whole_epochs):
        t0 = time.perf_counter()
        steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
        callbacks = [_sparse_callback(recipe, scope, total_steps, epoch * steps_per_epoch)] if scope else []
        loader = make_loader(train_set, recipe.batch_size, shuffle=True, seed=recipe.seed + epoch)
        record = train(model, loader, epochs=1, optimizer=optimizer, lr_schedule=None, device=device, seed=None,
                       quiet=quiet, precision=recipe.precision, loss_fn=loss_fn, after_step=callbacks,
                       max_steps=steps)[0]
        scheduler.step()
        epoch_seconds = time.perf_counter() - t0
        seconds += epoch_seconds
        record.update(epoch=epoch + 1, seconds=round(epoch_seconds, 1), threads=torch.get_num_threads(),
                      device=_device_name(device), val_acc=evaluate(model, val_set, device=device))
        if scope:
            record["sparsity"] = model_sparsity(model)
        history.append(record)
        print(f"epoch {epoch + 1}/{whole_epochs}: loss {record['loss']:.4f} train {record['train_acc']:.4f} "
              f"val {record['val_acc']:.4f} ({seconds:.0f} s)", flush=True)
        if progress is not None:
            progress.parent.mkdir(parents=True, exist_ok=True)
            # written aside, then renamed: a run killed while saving keeps the previous epoch's file
            partial = progress.with_suffix(".partial")
            torch.save({**(extra or {}), "model": model.state_dict(), "masks": get_masks(model),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(), "epoch": epoch + 1, "history": history,
                        "seconds": seconds}, partial)
            partial.replace(progress)
    return history


def _device_name(device) -> str:
    """``"cpu"``, or ``"cuda (NVIDIA H200)"``: where an epoch ran, recorded with it."""
    device = torch.device(device)
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type


def _prepare(model: nn.Module, dataset: str) -> nn.Module:
    # NHWC convolutions run ~1.6x faster on CPU for the CIFAR models (as in prunekit.zoo)
    return model.to(memory_format=torch.channels_last) if dataset == "cifar10" else model


# ----------------------------------------------------------------------------- selection on validation
def _select_channels(recipe: PrunedRecipe, dense_model, train_set, val_set, teachers, device, quiet) -> dict:
    """Try each candidate plan (bisection to the MAC budget, short fine-tuning); the best on validation wins."""
    shape = INPUT_SHAPES[recipe.dense]
    scores = channel_scores(dense_model)
    trials = []
    for plan in recipe.candidates:
        x, widths = plan_for_macs(dense_model, shape, plan, recipe.mac_reduction, recipe.channel_multiple)
        torch.manual_seed(recipe.seed)
        model = _prepare(shrink(dense_model, keep_top(scores, widths)), "cifar10")
        if recipe.select_epochs:
            val_acc = _fine_tune(model, recipe, train_set, val_set, teachers, recipe.select_epochs, None, device,
                                 quiet)[-1]["val_acc"]
        else:  # no training: BatchNorm statistics re-estimated for the pruned network, then measured
            recompute_batchnorm(model, subset(train_set, BATCHNORM_IMAGES, seed=recipe.seed), device=device)
            val_acc = evaluate(model, val_set, device=device)
        trials.append({"plan": plan, "knob": round(x, 4), "widths": widths, "macs": macs_of(model, shape),
                       "val_acc": val_acc})
        print(f"candidate {plan}: {trials[-1]['macs']:,} MACs, val {trials[-1]['val_acc']:.4f}", flush=True)
    best = max(trials, key=lambda t: t["val_acc"])
    trial = (f"fine-tuned {recipe.select_epochs} epoch(s) with the recipe's distillation" if recipe.select_epochs
             else f"not fine-tuned, BatchNorm statistics re-estimated on {BATCHNORM_IMAGES} training images")
    return {"how": f"each plan set to >= {recipe.mac_reduction}x fewer MACs (channel counts multiples of "
                   f"{recipe.channel_multiple}), {trial}, compared on the {recipe.val_size} validation images",
            "candidates": trials, "chosen": best["plan"], "widths": best["widths"]}


def _select_scope(recipe: PrunedRecipe, dense_model, train_set, val_set, teachers, device, quiet) -> dict:
    """Run the gradual-pruning recipe shortened to ``select_epochs`` with each scope; the best on validation."""
    trials = []
    for scope in recipe.candidates:
        torch.manual_seed(recipe.seed)
        model = copy.deepcopy(dense_model).train()
        history = _fine_tune(model, recipe, train_set, val_set, teachers, recipe.select_epochs, scope, device, quiet)
        trials.append({"scope": scope, "sparsity": round(model_sparsity(model), 6),
                       "val_acc": history[-1]["val_acc"]})
        print(f"candidate {scope}: val {trials[-1]['val_acc']:.4f}", flush=True)
    best = max(trials, key=lambda t: t["val_acc"])
    return {"how": f"the recipe shortened to {recipe.select_epochs} epochs with each pruning scope, compared on "
                   f"the {recipe.val_size} validation images", "candidates": trials, "chosen": best["scope"]}


# ----------------------------------------------------------------------------- the whole recipe
def train_pruned(name: str, device=None, resume: bool = False, quiet: bool = False, test: bool = True) -> dict:
    """Make the pruned model ``name`` from its dense checkpoint, measure it once on the test set, save it.

    Progress (the validation choice, then every epoch) is saved in ``<cache>/zoo-progress/<name>.pt``;
    ``resume=True`` continues from it. ``test=False`` stops after training, without the test set (e.g. on a
    machine that holds only the training images); ``resume=True`` later measures and saves it.
    Returns the recorded metadata (``{}`` with ``test=False``).
    """
    from .zoo import checkpoint_info, load_pretrained

    pruned_path(name)  # checks the name
    recipe = PRUNED_RECIPES[name]
    device = get_device(device)
    progress = cache_dir() / "zoo-progress" / f"{name}.pt"
    state = torch.load(progress, map_location="cpu", weights_only=False) if resume and progress.is_file() else None
    if state is not None and state["recipe"] != asdict(recipe):
        raise ValueError(f"{progress} was made with another recipe; delete it or train without --resume")
    dataset, train_set, val_set = _data(recipe)
    teachers = [_prepare(load_pretrained(t, device=device), dataset).requires_grad_(False)
               for t in recipe.teachers or (recipe.dense,)]
    dense_model = load_pretrained(recipe.dense)
    t0 = time.perf_counter()
    if state is not None:
        choice = state["choice"]
    elif recipe.kind == "channels":
        choice = _select_channels(recipe, dense_model, train_set, val_set, teachers, device, quiet)
    else:
        choice = _select_scope(recipe, dense_model, train_set, val_set, teachers, device, quiet)
    select_seconds = state["select_seconds"] if state is not None else time.perf_counter() - t0
    torch.manual_seed(recipe.seed)
    if recipe.kind == "channels":
        model = shrink(dense_model, keep_top(channel_scores(dense_model), choice["widths"]))
        scope = None
    else:
        model, scope = copy.deepcopy(dense_model), choice["chosen"]
    model = _prepare(model, dataset).train()
    if state is not None:
        model.load_state_dict(state["model"])
        if state["masks"]:
            apply_masks(model, state["masks"])
    extra = {"recipe": asdict(recipe), "choice": choice, "select_seconds": select_seconds}
    history = _fine_tune(model, recipe, train_set, val_set, teachers, recipe.epochs, scope, device, quiet,
                         progress=progress, state=state, extra=extra)
    if not test:
        print(f"{name}: trained; progress in {progress}. Measure and save it with: "
              f"python -m prunekit.zoo train {name} --resume", flush=True)
        return {}
    model = make_permanent(model).cpu().to(memory_format=torch.contiguous_format).eval()
    info = _record(name, recipe, choice, model, history, dense=checkpoint_info(recipe.dense),
                   test_set=load_dataset(dataset, "test"), device=device,
                   seconds=sum(r["seconds"] for r in history), select_seconds=select_seconds)
    if torch.device(device).type != "cpu":  # trained elsewhere: say what the same recipe costs on a CPU
        from .zoo_cpu_time import cpu_training_estimate
        info["cpu_time_estimate"] = cpu_training_estimate(name, info["widths"])
    save_pruned(name, model.state_dict(), info)
    print(f"saved {pruned_path(name)}: test accuracy {info['test_accuracy']:.4f} "
          f"(dense {info['dense_reference']['test_accuracy']:.4f}); within bound: {info['meets_bound']}")
    return info


def _record(name, recipe, choice, model, history, dense, test_set, device, seconds, select_seconds) -> dict:
    """The checkpoint's metadata; the test set is evaluated here, once."""
    shape = INPUT_SHAPES[recipe.dense]
    dense_model = build_model(recipe.dense)
    macs = count_macs(model, shape)
    dense_macs = macs_of(dense_model, shape)
    pruned_macs = macs["dense"] if recipe.kind == "channels" else macs["effective"]
    weights = prunable_weights(model)
    accuracy = evaluate(model, test_set, device="cpu")
    drop = dense["test_accuracy"] - accuracy
    sparsity = model_sparsity(model)
    structural_ok = (pruned_macs * recipe.mac_reduction <= dense_macs if recipe.kind == "channels"
                     else sparsity >= recipe.sparsity)
    return {
        "name": name, "dense": recipe.dense, "recipe": asdict(recipe), "seed": recipe.seed,
        "validation_choice": choice,
        # The dense MNIST models were trained on all 60,000 training images: their (and the teachers')
        # validation accuracies are optimistic. They only rank the candidates; the test set judges.
        "validation_note": ("the dense model saw these validation images in its own training"
                            if dense["recipe"].get("val_size", 0) == 0 else "held out from the dense model too"),
        "dense_reference": {"name": recipe.dense, "test_accuracy": dense["test_accuracy"],
                            "parameters": dense["parameters"], "macs": dense_macs},
        "widths": group_widths(model) if recipe.kind == "channels" else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "nonzero_weights": int(sum(int(w.count_nonzero()) for w in weights.values())),
        "sparsity": round(sparsity, 6),
        "macs": {"dense_model": dense_macs, "pruned": pruned_macs,
                 "counted": "dense MACs of the smaller model" if recipe.kind == "channels"
                 else "effective MACs (nonzero weights x positions)",
                 "reduction": round(dense_macs / pruned_macs, 4)},
        "val_accuracy": history[-1]["val_acc"],
        "test_accuracy": accuracy, "test_accuracy_drop_points": round(100 * drop, 2),
        "bound": f"drop <= {100 * MAX_DROP[recipe.kind]:.2f} points and "
                 + (f">= {recipe.mac_reduction}x fewer MACs" if recipe.kind == "channels"
                    else f">= {recipe.sparsity:.0%} of the prunable weights zero"),
        "meets_bound": bool(drop <= MAX_DROP[recipe.kind] + 1e-9 and structural_ok),
        "train_seconds": round(seconds, 1), "select_seconds": round(select_seconds, 1),
        "device": ", ".join(sorted({r.get("device", str(device)) for r in history})), "measured_on": str(device),
        "threads": sorted({r["threads"] for r in history}), "torch": str(torch.__version__),
        "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"), "history": history,
    }


def save_pruned(name: str, state_dict: dict, info: dict) -> None:
    """Write ``<name>.pt`` (weights and record) and ``<name>.json`` (the record without per-epoch history)."""
    path = pruned_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "info": info}, path)
    summary = {k: v for k, v in info.items() if k != "history"}
    path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")


def markdown_table() -> str:
    """The README's table of the shipped pruned checkpoints, from their records.

    Bounds: sparse models keep >= 95 % zeros within 0.10 points of dense; channel-pruned ones have >= 2x
    fewer MACs within 1.0 point of dense (``MAX_DROP``).
    """
    lines = ["| pruned model | from | parameters | MACs | zero weights | test accuracy | dense | change | bound met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in PRUNED_NAMES:
        if not pruned_path(name).is_file():
            lines.append(f"| `{name}` | {PRUNED_RECIPES[name].dense} | | | | not trained yet | | | |")
            continue
        info = pruned_info(name)
        macs = info["macs"]
        lines.append(f"| `{name}` | {info['dense']} | {info['parameters']:,} | "
                     f"{macs['pruned']:,} ({macs['reduction']:.2f}x fewer) | {info['sparsity']:.1%} | "
                     f"{info['test_accuracy']:.2%} | {info['dense_reference']['test_accuracy']:.2%} | "
                     f"{-info['test_accuracy_drop_points']:+.2f} points | "
                     f"{'yes' if info['meets_bound'] else '**no**'} |")
    return "\n".join(lines)
