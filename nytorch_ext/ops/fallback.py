"""Pure-PyTorch implementations of the fused ops, with the compiled ops' signatures.

Used when nytorch_ext._C is missing, and for CUDA tensors when the extension was
built without CUDA kernels (see registry.py: the registry adds the compiled ops'
Autograd rule to the mutating forms). Same argument rules (validation.py) in the
same order as the kernels. Same math in the same precision and the same roundings,
so the results are the kernels' bit for bit (tests/ops/test_ops_fallback_bitwise.py):
half types are computed in float32 and rounded once; the blend is torch.lerp's
two-sided formula (|w| < 0.5 picks the branch) written out (:func:`_lerp`), since
torch.lerp's own CPU kernel fuses the multiply and the add, which the kernels never do.

The noise forms draw the same normals as the kernels (philox.philox_normal), but
unlike the kernels they materialize them: one opmath buffer per target.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import philox, validation as check

Tensor = torch.Tensor


def _opmath(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _new_like(t: Tensor) -> Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


# The computations, on validated arguments (the allocating forms run them with
# autograd recording: they are differentiable).

def _axpby_into(out: Tensor, a: float, x: Tensor, b: float, y: Tensor) -> None:
    out.copy_(_opmath(x) * a + _opmath(y) * b)


def _lerp(x: Tensor, y: Tensor, weight: float) -> Tensor:
    """torch.lerp(x, y, weight) rounded as the kernels round it (csrc/functors.h,
    BlendOp): the weight in x's type, then every product and sum rounded on its own."""
    w = torch.tensor(weight, dtype=x.dtype)  # 0-dim on the CPU: a scalar operand on any device
    diff = y - x
    if -0.5 < float(w) < 0.5:
        return x + w * diff
    return y - diff * (1 - w)


def _blend_into(out: Tensor, x: Tensor, y: Tensor, alpha: float) -> None:
    out.copy_(_lerp(_opmath(x), _opmath(y), alpha))


def _lincomb_into(out: Tensor, coeffs: Sequence[float], tensors: Sequence[Tensor], bias: float) -> None:
    acc = _opmath(tensors[0]) * coeffs[0]
    for c, t in zip(coeffs[1:], tensors[1:]):
        acc = acc + _opmath(t) * c
    out.copy_(acc + bias)


def _blend_noise_into(t: Tensor, src: Tensor, weight: float, noise_scale: float, seed: int, stream: int) -> None:
    blended = _lerp(_opmath(t), _opmath(src), weight)
    if noise_scale == 0.0:  # exactly the blend, as the kernels (a -0.0 stays -0.0)
        t.copy_(blended)
        return
    z = philox.philox_normal(t.numel(), seed, stream, blended.dtype, t.device).view(t.shape)
    t.copy_(blended + noise_scale * z)


# ------------------------------------------------------- the allocating forms
# Differentiable through autograd's own record of the computation.

def axpby(a: float, x: Tensor, b: float, y: Tensor) -> Tensor:
    check.pair_result(x, y, (a, "a"), (b, "b"))
    out = _new_like(x)
    _axpby_into(out, a, x, b, y)
    return out


def blend(x: Tensor, y: Tensor, alpha: float) -> Tensor:
    check.pair_result(x, y, (alpha, "alpha"))
    out = _new_like(x)
    _blend_into(out, x, y, alpha)
    return out


def lincomb(coeffs: Sequence[float], tensors: Sequence[Tensor], bias: float = 0.0) -> Tensor:
    check.combination_result(coeffs, tensors, bias)
    out = _new_like(tensors[0])
    _lincomb_into(out, coeffs, tensors, bias)
    return out


# --------------------------------------------- the out=, in-place and list forms

def axpby_out(a: float, x: Tensor, b: float, y: Tensor, *, out: Tensor) -> None:
    check.pair_out(out, x, y, (a, "a"), (b, "b"))
    _axpby_into(out, a, x, b, y)


def blend_out(x: Tensor, y: Tensor, alpha: float, *, out: Tensor) -> None:
    check.pair_out(out, x, y, (alpha, "alpha"))
    _blend_into(out, x, y, alpha)


def lincomb_out(coeffs: Sequence[float], tensors: Sequence[Tensor], bias: float, *, out: Tensor) -> None:
    check.combination_out(out, coeffs, tensors, bias)
    _lincomb_into(out, coeffs, tensors, bias)


def multi_axpby_(outs: Sequence[Tensor], a: float, xs: Sequence[Tensor], b: float, ys: Sequence[Tensor]) -> None:
    check.pair_lists(outs, xs, ys, a, b)
    for o, x, y in zip(outs, xs, ys):
        _axpby_into(o, a, x, b, y)


def multi_blend_(targets: Sequence[Tensor], sources: Sequence[Tensor], alphas: Sequence[float],
                 shared_source: bool = False) -> None:
    check.target_lists(targets, sources, alphas, shared_source)
    for i, t in enumerate(targets):
        src = sources[0 if len(sources) == 1 else i]
        alpha = alphas[0 if len(alphas) == 1 else i]
        _blend_into(t, t, src, alpha)


def multi_scale_(targets: Sequence[Tensor], scales: Sequence[float]) -> None:
    check.scaled_lists(targets, scales)
    for i, t in enumerate(targets):
        t.copy_(_opmath(t) * scales[0 if len(scales) == 1 else i])


def blend_noise_(x: Tensor, best: Tensor, weight: float, noise_scale: float, seed: int, stream: int) -> None:
    check.noisy_target(x, best, weight, noise_scale)
    _blend_noise_into(x, best, weight, noise_scale, seed, stream)


def multi_blend_noise_(targets: Sequence[Tensor], sources: Sequence[Tensor], weights: Sequence[float],
                       noise_scale: float, seed: int, streams: Sequence[int], shared_source: bool = False) -> None:
    check.noisy_target_lists(targets, sources, weights, noise_scale, streams, shared_source)
    for i, t in enumerate(targets):
        src = sources[0 if len(sources) == 1 else i]
        weight = weights[0 if len(weights) == 1 else i]
        _blend_noise_into(t, src, weight, noise_scale, seed, streams[i])
