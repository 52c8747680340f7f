"""Quantisation: store each number in a few bits, ``x ≈ scale · (q − zero_point)``.

Two grids, and which numbers each suits:

* **symmetric** (signed, ``zero_point = 0``): ``q = clamp(round(x / scale), -qmax, qmax)`` with
  ``qmax = 2**(bits-1) - 1`` (127 for int8) and ``scale = max|x| / qmax``. Right for weights,
  which are spread around 0 (:func:`quantize_linear`, :func:`dequantize_linear`).
* **affine** (unsigned, with a zero point): ``q = clamp(round(x / scale) + zero_point, 0, 2**bits - 1)``
  with ``scale = (max − min) / (2**bits − 1)``; the range always contains 0, and ``zero_point`` is
  the integer that stands for the real 0, so zeros (padding, ReLU, pruned weights) stay exact
  (Jacob et al. 2018, the int8 scheme of TensorFlow Lite and PyTorch). Right for activations after
  a ReLU: they are never negative, so a symmetric grid wastes its sign bit (half the levels),
  while the affine one spends all 256 uint8 levels on ``[0, max]``: half the step, half the error
  (:func:`quantize_affine`, :func:`dequantize_affine`).

Either grid can use one scale for the whole tensor (**per tensor**) or one per channel
(**per channel**: per output channel, dim 0, for weights). :func:`fake_quantize` rounds a tensor
to any of the four combinations and back to float, which is how the accuracy of a quantised model
is simulated here (:func:`quantize_weights`, :func:`quantize_activations`).

Before quantising a conv that a BatchNorm follows, fold the BatchNorm into it
(:func:`fold_batchnorm`, :func:`fold_batchnorms`): in eval mode BN is a per-channel affine map,
so the conv can absorb it exactly, and the deployed model has one quantised op instead of two.

Example:
    >>> w = torch.tensor([[0.5, 0.0, -1.0], [0.25, 0.0, 1.0]])
    >>> q, scale = quantize_linear(w, bits=8)
    >>> q.tolist(), round(scale.item(), 6)
    ([[64, 0, -127], [32, 0, 127]], 0.007874)
    >>> q, scale, zero_point = quantize_affine(torch.tensor([0.0, 0.5, 2.0]))   # post-ReLU values
    >>> q.tolist(), zero_point.item()
    ([0, 64, 255], 0)
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .activations import eval_mode, get_layers, hooked, model_device, take_batches
from .pruning import prunable_weights

__all__ = ["quantize_linear", "dequantize_linear", "quantize_affine", "dequantize_affine", "fake_quantize",
           "transform_weights", "quantize_weights", "fold_batchnorm", "fold_batchnorms",
           "activation_ranges", "quantize_activations", "SCHEMES"]

SCHEMES = ("symmetric", "affine")


# ============================================================================ symmetric (weights)
def _qmax(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16], got {bits!r}")
    return 2 ** (bits - 1) - 1


def _channel_view(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel scale (out,) viewed as (out, 1, 1, ...) so that it multiplies dim 0 of ``like``."""
    return scale.view(-1, *([1] * (like.dim() - 1))) if scale.dim() == 1 else scale


def quantize_linear(weight: torch.Tensor, bits: int = 8, per_channel: bool = False,
                    scale: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric linear quantisation: ``q = clamp(round(w / scale), -qmax, qmax)``, ``qmax = 2**(bits-1) - 1``.

    Args:
        weight: any shape; per channel means per entry of dim 0 (output unit / filter).
        bits: 2..16; q is int8 for bits <= 8, else int16.
        per_channel: one scale per output channel instead of one for the whole tensor.
        scale: use this scale (e.g. a clipped range) instead of ``max|w| / qmax``; values beyond
            ``±qmax * scale`` are clamped. An all-zero tensor/channel gets scale 1 (q = 0 anyway).

    Returns:
        ``(q, scale)``: q of ``weight.shape``; scale float32, shape ``()`` or ``(out,)``.

    Example:
        >>> quantize_linear(torch.tensor([1.0, -0.6, 0.02]), bits=4)[0].tolist()   # scale 1/7
        [7, -4, 0]
    """
    qmax = _qmax(bits)
    w = weight.detach().float()
    if scale is None:
        largest = w.abs().flatten(1).amax(1) if per_channel and w.dim() > 0 else w.abs().max()
        scale = torch.where(largest > 0, largest / qmax, torch.ones_like(largest))
    else:
        scale = torch.as_tensor(scale, dtype=torch.float32)
        if bool((scale <= 0).any()):
            raise ValueError("scale must be positive")
    q = torch.round(w / _channel_view(scale, w)).clamp(-qmax, qmax)
    return q.to(torch.int8 if bits <= 8 else torch.int16), scale


def dequantize_linear(q: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``w ≈ q * scale`` as float32; a per-channel scale of shape (out,) multiplies dim 0 of ``q``.

    Example:
        >>> dequantize_linear(torch.tensor([[2, -1], [4, 0]], dtype=torch.int8), torch.tensor([0.5, 0.25]))
        tensor([[ 1.0000, -0.5000],
                [ 1.0000,  0.0000]])
    """
    scale = torch.as_tensor(scale, dtype=torch.float32)
    if scale.dim() == 1 and scale.numel() != q.shape[0]:
        raise ValueError(f"per-channel scale has {scale.numel()} entries, q has {q.shape[0]} channels (dim 0)")
    return q.float() * _channel_view(scale, q)


# ============================================================================ affine (activations)
def _affine_params(low: torch.Tensor, high: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scale and zero point of the unsigned grid 0 .. 2**bits - 1 covering [low, high] ∪ {0}."""
    levels = 2 ** bits - 1
    low, high = low.clamp(max=0.0), high.clamp(min=0.0)          # 0 must be on the grid
    scale = (high - low) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all zeros: any scale works
    zero_point = torch.round(-low / scale).clamp(0, levels)
    return scale, zero_point


def quantize_affine(x: torch.Tensor, bits: int = 8, per_channel: bool = False,
                    value_range: tuple[float | torch.Tensor, float | torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine (asymmetric) quantisation: ``q = clamp(round(x / scale) + zero_point, 0, 2**bits − 1)``.

    ``scale = (max − min) / (2**bits − 1)`` and ``zero_point = round(−min / scale)``, where the
    range ``[min, max]`` is widened to contain 0 so that 0 is represented exactly.

    Args:
        x: any shape; per channel means per entry of dim 0.
        bits: 2..16; q is uint8 for bits <= 8, else int32.
        per_channel: one (scale, zero_point) per entry of dim 0 instead of one for the tensor.
        value_range: ``(min, max)`` to use instead of the tensor's own (e.g. from calibration
            data, :func:`activation_ranges`); values outside are clamped.

    Returns:
        ``(q, scale, zero_point)``: q of ``x.shape``; scale float32 and zero_point int64, each of
        shape ``()`` or ``(channels,)``.

    Example:
        >>> q, scale, zp = quantize_affine(torch.tensor([-1.0, 0.0, 3.0]), bits=8)
        >>> q.tolist(), round(scale.item(), 5), zp.item()
        ([0, 64, 255], 0.01569, 64)
    """
    _qmax(bits)
    x = x.detach().float()
    if value_range is not None:
        low, high = (torch.as_tensor(v, dtype=torch.float32) for v in value_range)
    elif per_channel and x.dim() > 0:
        low, high = x.flatten(1).amin(1), x.flatten(1).amax(1)
    else:
        low, high = x.min(), x.max()
    if bool((low > high).any()):
        raise ValueError(f"value_range must have min <= max, got {value_range!r}")
    scale, zero_point = _affine_params(low, high, bits)
    q = (torch.round(x / _channel_view(scale, x)) + _channel_view(zero_point, x)).clamp(0, 2 ** bits - 1)
    return q.to(torch.uint8 if bits <= 8 else torch.int32), scale, zero_point.long()


def dequantize_affine(q: torch.Tensor, scale: torch.Tensor | float, zero_point: torch.Tensor | int
                      ) -> torch.Tensor:
    """``x ≈ scale · (q − zero_point)`` as float32; per-channel values of shape (C,) act on dim 0.

    Example:
        >>> dequantize_affine(torch.tensor([0, 64, 255], dtype=torch.uint8), 4 / 255, 64)
        tensor([-1.0039,  0.0000,  2.9961])
    """
    scale = torch.as_tensor(scale, dtype=torch.float32)
    zero_point = torch.as_tensor(zero_point, dtype=torch.float32)
    if scale.dim() == 1 and scale.numel() != q.shape[0]:
        raise ValueError(f"per-channel scale has {scale.numel()} entries, q has {q.shape[0]} channels (dim 0)")
    return (q.float() - _channel_view(zero_point, q)) * _channel_view(scale, q)


def fake_quantize(x: torch.Tensor, bits: int = 8, scheme: str = "symmetric", per_channel: bool = False,
                  dim: int = 0, value_range: tuple | None = None) -> torch.Tensor:
    """Round ``x`` to a quantisation grid and back to float: what the quantised model computes with.

    Args:
        scheme: ``"symmetric"`` (signed, zero point 0) or ``"affine"`` (unsigned, with zero point).
        per_channel: one scale per index of ``dim`` (0: output channels of a weight; 1: channels
            of an activation (N, C, H, W)).
        value_range: ``(min, max)`` for the grid instead of ``x``'s own (per tensor only);
            symmetric uses ``max(|min|, |max|)``.

    Returns:
        a float32 tensor of ``x.shape`` holding at most ``2**bits`` (affine) or ``2**bits − 1``
        (symmetric) distinct values per scale.

    Example:
        >>> relu_out = torch.tensor([0.0, 0.2, 0.6, 1.0])
        >>> fake_quantize(relu_out, bits=2, scheme="symmetric")      # levels -1, 0, 1: -1 is wasted
        tensor([0., 0., 1., 1.])
        >>> fake_quantize(relu_out, bits=2, scheme="affine")         # levels 0, 1/3, 2/3, 1
        tensor([0.0000, 0.3333, 0.6667, 1.0000])
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if per_channel and value_range is not None:
        raise ValueError("value_range is per tensor; use per_channel=False with it")
    moved = x.detach().float().movedim(dim, 0) if per_channel else x.detach().float()
    if scheme == "symmetric":
        scale = None
        if value_range is not None:
            largest = max(abs(float(value_range[0])), abs(float(value_range[1])))
            scale = largest / _qmax(bits) if largest > 0 else 1.0
        out = dequantize_linear(*quantize_linear(moved, bits, per_channel, scale=scale))
    else:
        out = dequantize_affine(*quantize_affine(moved, bits, per_channel, value_range))
    return out.movedim(0, dim) if per_channel else out


# ============================================================================ whole models: weights
def transform_weights(model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor],
                      exclude: Iterable[str] = ()) -> nn.Module:
    """A deep copy of ``model`` whose Linear/Conv2d weights are replaced by ``fn(weight)`` (e.g. fake quantisation).

    Example:
        >>> from prunekit.models import build_model
        >>> int4 = transform_weights(build_model("lenet300"), lambda w: dequantize_linear(*quantize_linear(w, 4)))
        >>> int4.fc1.weight.unique().numel() <= 15
        True
    """
    new = copy.deepcopy(model)
    with torch.no_grad():
        for name, weight in prunable_weights(new, exclude).items():
            out = fn(weight.detach().clone())
            if tuple(out.shape) != tuple(weight.shape):
                raise ValueError(f"fn changed the shape of {name}: {tuple(weight.shape)} -> {tuple(out.shape)}")
            weight.copy_(out)
    return new


def quantize_weights(model: nn.Module, bits: int = 8, scheme: str = "symmetric", per_channel: bool = False,
                     exclude: Iterable[str] = ()) -> nn.Module:
    """A copy of ``model`` with every Linear/Conv2d weight fake-quantised (biases stay float).

    Per channel means per output channel (dim 0) of each weight. Fold BatchNorms first
    (:func:`fold_batchnorms`) to quantise the weights a deployed model really uses.

    Example:
        >>> from prunekit.models import build_model
        >>> q = quantize_weights(build_model("lenet300"), bits=4, scheme="affine", per_channel=True)
        >>> bool(q.fc1.weight[0].unique().numel() <= 16)
        True
    """
    return transform_weights(model, lambda w: fake_quantize(w, bits, scheme, per_channel, dim=0), exclude)


# ============================================================================ BatchNorm folding
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d equal to ``bn(conv(x))`` in eval mode: the BatchNorm folded into the conv.

    In eval mode BN computes ``γ · (y − μ) / √(σ² + ε) + β`` per channel with its running μ, σ²;
    with ``s = γ / √(σ² + ε)`` that is ``s·y + (β − s·μ)``, so

        ``W' = s · W`` (per output channel),  ``b' = s · (b − μ) + β``  (b = 0 without bias).

    Zeros of W stay zeros, so a pruned conv stays pruned (its masks are not carried over).

    Example:
        >>> conv, bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4).eval()
        >>> x = torch.randn(2, 3, 8, 8)
        >>> torch.allclose(fold_batchnorm(conv, bn)(x), bn(conv(x)), atol=1e-6)
        True
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"fold_batchnorm needs (Conv2d, BatchNorm2d), got ({type(conv).__name__}, "
                        f"{type(bn).__name__})")
    if bn.num_features != conv.out_channels or bn.running_mean is None:
        raise ValueError(f"the BatchNorm must track running statistics of the conv's {conv.out_channels} "
                         f"output channels (got num_features={bn.num_features})")
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    with torch.no_grad():
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        s = gamma / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))
        folded.bias.copy_(s * (bias - bn.running_mean) + beta)
    return folded.to(conv.weight.device)


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) for every BatchNorm2d whose input is exactly a Conv2d's output.

    Found by running one example: a hook remembers each conv output tensor, and a BN whose input
    *is* (same object) one of them follows that conv directly.
    """
    outputs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    names = {module: name for name, module in model.named_modules()}

    def on_conv(module, inputs, output):
        outputs[id(output)] = names[module]

    def on_bn(module, inputs):
        conv = outputs.get(id(inputs[0]))
        if conv is not None:
            pairs.append((conv, names[module]))

    handles = [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_pre_hook(on_bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with eval_mode(model), torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def fold_batchnorms(model: nn.Module, input_shape: Sequence[int]) -> nn.Module:
    """A copy of ``model`` (eval mode) in which every Conv2d → BatchNorm2d pair is one folded conv.

    The pairs are found by running one zero example of ``input_shape`` (no batch dimension);
    each conv is replaced by :func:`fold_batchnorm` and its BatchNorm by ``nn.Identity``. The
    copy computes the same function as the model in eval mode (up to float rounding), with no
    BatchNorm left after a conv. Masks are not carried over (the zeros are).

    Example:
        >>> from prunekit.models import build_model
        >>> vgg = build_model("vgg").eval()
        >>> folded = fold_batchnorms(vgg, (3, 32, 32))
        >>> any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        False
    """
    new = copy.deepcopy(model).eval()
    example = torch.zeros(1, *input_shape, device=model_device(new))
    for conv_name, bn_name in _conv_bn_pairs(new, example):
        conv, bn = new.get_submodule(conv_name), new.get_submodule(bn_name)
        new.set_submodule(conv_name, fold_batchnorm(conv, bn))
        new.set_submodule(bn_name, nn.Identity())
    return new


# ============================================================================ whole models: activations
@torch.no_grad()
def activation_ranges(model: nn.Module, layer_names: list[str], data, n_batches: int | None = None
                      ) -> dict[str, tuple[float, float]]:
    """``{name: (min, max)}`` of named modules' outputs over calibration batches (eval mode).

    Example:
        >>> from prunekit.models import build_model
        >>> low, high = activation_ranges(build_model("lenet300"), ["relu1"], [torch.randn(8, 1, 28, 28)])["relu1"]
        >>> low >= 0.0 and high > 0.0
        True
    """
    layers = get_layers(model, layer_names)
    device = model_device(model)
    ranges = {name: (float("inf"), float("-inf")) for name in layers}

    def make_hook(name):
        def hook(module, inputs, output):
            low, high = ranges[name]
            ranges[name] = (min(low, output.min().item()), max(high, output.max().item()))
        return hook

    with eval_mode(model), hooked(layers, make_hook):
        for x, _ in take_batches(data, n_batches):
            model(x.to(device))
    return ranges


class _FakeQuantizeOutput:
    """Forward hook that returns the module's output fake-quantised on a fixed per-tensor grid."""

    def __init__(self, bits: int, scheme: str, value_range: tuple[float, float]):
        self.bits, self.scheme, self.value_range = bits, scheme, value_range

    def __call__(self, module, inputs, output):
        return fake_quantize(output, self.bits, self.scheme, value_range=self.value_range).to(output.dtype)


def quantize_activations(model: nn.Module, layer_names: list[str], data, bits: int = 8, scheme: str = "affine",
                         n_batches: int | None = None) -> nn.Module:
    """A copy of ``model`` whose named modules' outputs are fake-quantised (per tensor).

    Each output's range ``[min, max]`` is calibrated once on ``data`` (:func:`activation_ranges`);
    at run time values outside it are clamped. ``scheme="affine"`` with ``bits=8`` is uint8 with
    a zero point; ``"symmetric"`` is int8 on ``[-max|x|, max|x|]``. For post-ReLU outputs the
    affine grid has half the step of the symmetric one, so about half the rounding error.

    Args:
        layer_names: modules whose outputs are quantised, e.g. every ReLU: ``["relu1", "relu2"]``.
        data: calibration batches ``(x, y)`` or ``x`` (a few batches of training data).

    Example:
        >>> from prunekit.models import build_model
        >>> calib = [torch.randn(8, 1, 28, 28)]
        >>> q = quantize_activations(build_model("lenet300"), ["relu1"], calib, bits=2)
        >>> acts = {}
        >>> _ = q.relu1.register_forward_hook(lambda m, i, o: acts.setdefault("relu1", o))
        >>> _ = q(calib[0])
        >>> acts["relu1"].unique().numel() <= 4
        True
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    _qmax(bits)
    new = copy.deepcopy(model)
    ranges = activation_ranges(new, layer_names, data, n_batches)
    for name, module in get_layers(new, layer_names).items():
        module.register_forward_hook(_FakeQuantizeOutput(bits, scheme, ranges[name]))
    return new
