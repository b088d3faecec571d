"""Pure-PyTorch implementations of the fused ops, with the compiled ops' signatures.

Used when nytorch_ext._C is missing, and for CUDA tensors when the extension was
built without CUDA kernels. Same argument rules (see _checks.py) and the same math
in the same precision: half types are computed in float32 and rounded once.

The noise forms draw the same normals as the kernels (_philox.philox_normal), but
unlike the kernels they materialize them: one opmath buffer per target.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import _checks, _philox


def _opmath(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def axpby_out(a: float, x, b: float, y, *, out) -> None:
    _checks.binary_out(out, x, y)
    out.copy_(_opmath(x) * a + _opmath(y) * b)


def blend_out(x, y, alpha: float, *, out) -> None:
    _checks.binary_out(out, x, y)
    # torch.lerp is the same two-sided formula as the kernels (exact at 0 and 1).
    out.copy_(torch.lerp(_opmath(x), _opmath(y), alpha))


def lincomb_out(coeffs: Sequence[float], tensors: Sequence[torch.Tensor], bias: float, *, out) -> None:
    _checks.lincomb_out(out, coeffs, tensors)
    acc = _opmath(tensors[0]) * coeffs[0]
    for c, t in zip(coeffs[1:], tensors[1:]):
        acc = acc + _opmath(t) * c
    out.copy_(acc + bias)


def multi_axpby_(outs, a: float, xs, b: float, ys) -> None:
    _checks.multi_axpby(outs, xs, ys)
    for o, x, y in zip(outs, xs, ys):
        o.copy_(_opmath(x) * a + _opmath(y) * b)


def multi_blend_(targets, sources, alphas: Sequence[float]) -> None:
    _checks.multi_blend(targets, sources, alphas)
    for i, t in enumerate(targets):
        src = sources[0 if len(sources) == 1 else i]
        alpha = alphas[0 if len(alphas) == 1 else i]
        t.copy_(torch.lerp(_opmath(t), _opmath(src), alpha))


def _blend_noise_into(t, src, weight: float, noise_scale: float, seed: int, stream: int) -> None:
    blended = torch.lerp(_opmath(t), _opmath(src), weight)
    if noise_scale == 0.0:  # exactly the blend, as the kernels (a -0.0 stays -0.0)
        t.copy_(blended)
        return
    z = _philox.philox_normal(t.numel(), seed, stream, blended.dtype, t.device).view(t.shape)
    t.copy_(blended + noise_scale * z)


def blend_noise_(self, best, weight: float, noise_scale: float, seed: int, stream: int) -> None:
    _checks.blend_noise(self, best, weight, noise_scale)
    _checks.writable(self, "self", "blend_noise_")
    _blend_noise_into(self, best, weight, noise_scale, seed, stream)


def multi_blend_noise_(targets, sources, weights: Sequence[float], noise_scale: float, seed: int,
                       streams: Sequence[int]) -> None:
    _checks.multi_blend_noise(targets, sources, weights, noise_scale, streams)
    for i, t in enumerate(targets):
        _checks.writable(t, f"targets[{i}]", "multi_blend_noise_")
    for i, t in enumerate(targets):
        src = sources[0 if len(sources) == 1 else i]
        weight = weights[0 if len(weights) == 1 else i]
        _blend_noise_into(t, src, weight, noise_scale, seed, streams[i])


def axpby(a: float, x, b: float, y) -> torch.Tensor:
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    axpby_out(a, x.contiguous(), b, y.contiguous(), out=out)
    return out


def blend(x, y, alpha: float) -> torch.Tensor:
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    blend_out(x.contiguous(), y.contiguous(), alpha, out=out)
    return out


def lincomb(coeffs, tensors, bias: float = 0.0) -> torch.Tensor:
    if len(coeffs) == 0:
        raise ValueError("coeffs must not be empty")
    if len(coeffs) != len(tensors):
        raise ValueError(f"coeffs has {len(coeffs)} entries but tensors has {len(tensors)}")
    _checks.floating(tensors[0], "tensors[0]")
    out = torch.empty_like(tensors[0], memory_format=torch.contiguous_format)
    lincomb_out(coeffs, [t.contiguous() for t in tensors], bias, out=out)
    return out
