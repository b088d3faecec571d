"""Pure-PyTorch implementations of the fused ops, with the compiled ops' signatures.

Used when nytorch_ext._C is missing, and for CUDA tensors when the extension was
built without CUDA kernels. Same argument rules (see _checks.py) in the same
order as the compiled ops: first, with grad mode on, no tensor of an out=,
in-place or list form may require grad (the compiled ops' Autograd kernel);
then the kernels' checks. Same math in the same precision: half types are
computed in float32 and rounded once; the blend is torch.lerp, the same
two-sided formula as the kernels (|w| < 0.5 picks the branch).

The noise forms draw the same normals as the kernels (_philox.philox_normal), but
unlike the kernels they materialize them: one opmath buffer per target.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import philox as _philox, validation as _checks


def _opmath(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


# The computations, on validated arguments (the allocating forms run them with
# autograd recording: they are differentiable).

def _axpby_into(out, a: float, x, b: float, y) -> None:
    out.copy_(_opmath(x) * a + _opmath(y) * b)


def _blend_into(out, x, y, alpha: float) -> None:
    out.copy_(torch.lerp(_opmath(x), _opmath(y), alpha))


def _lincomb_into(out, coeffs, tensors, bias: float) -> None:
    acc = _opmath(tensors[0]) * coeffs[0]
    for c, t in zip(coeffs[1:], tensors[1:]):
        acc = acc + _opmath(t) * c
    out.copy_(acc + bias)


# ------------------------------------------------------------------ the ops

def axpby_out(a: float, x, b: float, y, *, out) -> None:
    _checks.not_differentiable("axpby_out", (x, "x"), (y, "y"), (out, "out"))
    _checks.axpby_out(out, a, x, b, y)
    _axpby_into(out, a, x, b, y)


def blend_out(x, y, alpha: float, *, out) -> None:
    _checks.not_differentiable("blend_out", (x, "x"), (y, "y"), (out, "out"))
    _checks.blend_out(out, x, y, alpha)
    _blend_into(out, x, y, alpha)


def lincomb_out(coeffs: Sequence[float], tensors: Sequence[torch.Tensor], bias: float, *, out) -> None:
    _checks.not_differentiable("lincomb_out", (tensors, "tensors"), (out, "out"))
    _checks.lincomb_out(out, coeffs, tensors, bias)
    _lincomb_into(out, coeffs, tensors, bias)


def multi_axpby_(outs, a: float, xs, b: float, ys) -> None:
    _checks.not_differentiable("multi_axpby_", (outs, "outs"), (xs, "xs"), (ys, "ys"))
    _checks.multi_axpby(outs, xs, ys, a=a, b=b)
    for o, x, y in zip(outs, xs, ys):
        _axpby_into(o, a, x, b, y)


def multi_blend_(targets, sources, alphas: Sequence[float], shared_source: bool = False) -> None:
    _checks.not_differentiable("multi_blend_", (targets, "targets"), (sources, "sources"))
    _checks.multi_blend(targets, sources, alphas, shared_source=shared_source)
    for i, t in enumerate(targets):
        src = sources[0 if len(sources) == 1 else i]
        alpha = alphas[0 if len(alphas) == 1 else i]
        _blend_into(t, t, src, alpha)


def _blend_noise_into(t, src, weight: float, noise_scale: float, seed: int, stream: int) -> None:
    blended = torch.lerp(_opmath(t), _opmath(src), weight)
    if noise_scale == 0.0:  # exactly the blend, as the kernels (a -0.0 stays -0.0)
        t.copy_(blended)
        return
    z = _philox.philox_normal(t.numel(), seed, stream, blended.dtype, t.device).view(t.shape)
    t.copy_(blended + noise_scale * z)


def blend_noise_(x, best, weight: float, noise_scale: float, seed: int, stream: int) -> None:
    _checks.not_differentiable("blend_noise_", (x, "x"), (best, "best"))
    _checks.blend_noise(x, best, weight, noise_scale)
    _blend_noise_into(x, best, weight, noise_scale, seed, stream)


def multi_blend_noise_(targets, sources, weights: Sequence[float], noise_scale: float, seed: int,
                       streams: Sequence[int], shared_source: bool = False) -> None:
    _checks.not_differentiable("multi_blend_noise_", (targets, "targets"), (sources, "sources"))
    _checks.multi_blend_noise(targets, sources, weights, noise_scale, streams, shared_source=shared_source)
    for i, t in enumerate(targets):
        src = sources[0 if len(sources) == 1 else i]
        weight = weights[0 if len(weights) == 1 else i]
        _blend_noise_into(t, src, weight, noise_scale, seed, streams[i])


# ------------------------------------------------------- the allocating forms
# Differentiable through autograd's own record of the computation.

def axpby(a: float, x, b: float, y) -> torch.Tensor:
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    x, y = x.contiguous(), y.contiguous()
    _checks.axpby_out(out, a, x, b, y)
    _axpby_into(out, a, x, b, y)
    return out


def blend(x, y, alpha: float) -> torch.Tensor:
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    x, y = x.contiguous(), y.contiguous()
    _checks.blend_out(out, x, y, alpha)
    _blend_into(out, x, y, alpha)
    return out


def lincomb(coeffs, tensors, bias: float = 0.0) -> torch.Tensor:
    if len(coeffs) == 0:
        raise ValueError("coeffs must not be empty")
    if len(coeffs) != len(tensors):
        raise ValueError(f"coeffs has {len(coeffs)} entries but tensors has {len(tensors)}")
    _checks.floating(tensors[0], "tensors[0]")
    out = torch.empty_like(tensors[0], memory_format=torch.contiguous_format)
    tensors = [t.contiguous() for t in tensors]
    _checks.lincomb_out(out, coeffs, tensors, bias)
    _lincomb_into(out, coeffs, tensors, bias)
    return out
