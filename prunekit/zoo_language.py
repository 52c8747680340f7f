"""The zoo's language model: CharGPT trained on Tiny Shakespeare, and the command that trains it.

``python -m prunekit.zoo train chargpt`` (or ``python -m prunekit.zoo_language``, which imports less)
trains :class:`prunekit.chargpt.CharGPT` with :data:`RECIPE` from a fixed seed and writes
``prunekit/checkpoints/chargpt.pt`` (state dict + record) and ``chargpt.json`` (the record without
its history). The record holds the validation loss on all 111,540 validation characters, the device,
the precision, the seconds per step and the loss every ``eval_every`` steps. Target: validation
loss <= 1.60 nats per character (nanoGPT's 10.7 M-parameter "baby GPT" reaches 1.47 with 256
characters of context; this model has 3.2 M parameters and 128).

The same recipe runs on a CPU (about an hour on two cores with bfloat16) and on a GPU (minutes).

The shipped checkpoint was trained on an NVIDIA H200 in 48 s (13.7 ms per step): validation loss 1.4636
nats per character (perplexity 4.32) on the whole validation split. The progress lines print a lower
"val loss" (1.374 at the end) because they measure only the first 20 batches (640 of the 871 blocks):
the last quarter of the validation text is harder for the model (1.71 nats on its 231 blocks, measured),
not a precision effect (float32 and the shipped float16 weights both give 1.4636).

Example:
    >>> from prunekit.zoo import load_pretrained
    >>> model = load_pretrained("chargpt")                # doctest: +SKIP
    >>> checkpoint_record()["val_loss"]                   # doctest: +SKIP
    1.5...
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .data import SHAKESPEARE_SHA256, load_dataset
from .language import LMRecipe, mean_loss, train_language_model

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
RECIPE = LMRecipe(steps=3500, lr=2e-3, warmup_steps=200)
TARGET_VAL_LOSS = 1.60


def checkpoint_record(name: str = "chargpt") -> dict:
    """The record saved with the shipped checkpoint (recipe, validation loss, device, timing, history)."""
    path = CHECKPOINT_DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train it with python -m prunekit.zoo train {name}")
    return torch.load(path, map_location="cpu", weights_only=True)["info"]


def markdown_table(names: tuple[str, ...] = ("chargpt",)) -> str:
    """The README's language-model table, read from each checkpoint's own record (``python -m prunekit.zoo table``)."""
    rows = ["| language model | data | parameters | validation loss (nats/char) | perplexity | target | trained |",
            "|---|---|---|---|---|---|---|"]
    for name in names:
        info = checkpoint_record(name)
        recipe = info["recipe"]
        rows.append(f"| `{name}` | {recipe['dataset']} | {info['parameters']:,} | {info['val_loss']:.4f} | "
                    f"{info['val_perplexity']:.2f} | <= {info['target_val_loss']:.2f} | {recipe['steps']:,} steps, "
                    f"{info['train_seconds']:.0f} s on {info['device_name']} ({info['precision']}) |")
    return "\n".join(rows)


def train_chargpt(steps: int | None = None, device=None, quiet: bool = False,
                  checkpoint_dir: str | Path | None = None) -> dict:
    """Train CharGPT with :data:`RECIPE` (``steps`` overrides its number of steps), save, return the record."""
    from .models import build_model

    recipe = RECIPE if steps is None else replace(RECIPE, steps=steps)
    torch.manual_seed(recipe.seed)  # the initial weights
    model = build_model("chargpt")
    train_set = load_dataset(recipe.dataset, "train", block_size=recipe.block_size)
    val_set = load_dataset(recipe.dataset, "val", block_size=recipe.block_size)
    result = train_language_model(model, train_set, val_set, recipe, device=device, quiet=quiet)
    # Shipped in float16 (half the file; loading casts back to float32). The validation loss recorded
    # is the one measured after that round trip, so it is what load_pretrained's model gives.
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.cpu() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    result["val_loss_float32"] = result["val_loss"]
    result["val_loss"] = round(mean_loss(model, val_set, device=device), 4)
    result["val_perplexity"] = round(math.exp(result["val_loss"]), 3)
    info = {"name": "chargpt", "recipe": asdict(recipe), **result, "target_val_loss": TARGET_VAL_LOSS,
            "parameters": sum(p.numel() for p in model.parameters()), "torch": str(torch.__version__),
            "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"),
            "data": {"dataset": "tinyshakespeare", "sha256": SHAKESPEARE_SHA256,
                     "train_characters": len(train_set.ids), "val_characters": len(val_set.ids)}}
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "info": info}, folder / "chargpt.pt")
    (folder / "chargpt.json").write_text(json.dumps({k: v for k, v in info.items() if k != "history"},
                                                    indent=2) + "\n")
    verdict = "meets" if info["val_loss"] <= TARGET_VAL_LOSS else "MISSES"
    print(f"saved {folder / 'chargpt.pt'}: validation loss {info['val_loss']:.4f} nats/char "
          f"({verdict} the target {TARGET_VAL_LOSS}), {info['ms_per_step']} ms/step on {info['device_name']}")
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prunekit.zoo_language", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, help=f"override the recipe's {RECIPE.steps} steps (e.g. 20 to try)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: automatic)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_chargpt(steps=args.steps, device=args.device, quiet=args.quiet)


if __name__ == "__main__":
    main()
