"""Fused parameter-arithmetic ops: each reads every input once and writes every
output once, in one pass over memory.

=====================================  =========================================
``axpby(a, x, b, y, *, out=None)``     ``a*x + b*y``
``blend(x, y, alpha, *, out=None)``    ``(1-alpha)*x + alpha*y``, exact at 0 and 1
``lincomb(coeffs, tensors, bias=0.)``  ``sum_k coeffs[k]*tensors[k] + bias``
``axpby_ / blend_ / lincomb_``         the same, written into the first tensor
``multi_axpby_(outs, a, xs, b, ys)``   ``outs[i] = a*xs[i] + b*ys[i]``
``multi_blend_(targets, src, alphas)`` ``targets[i] = blend(targets[i], src, alpha_i)``
``blend_noise_(x, best, w, s, *,``     ``x = blend(x, best, w) + s*z``, z standard
``seed, stream=0)``                    normal drawn in the pass (full APSO)
``multi_blend_noise_(targets, src,``   ``targets[i] = blend(targets[i], src, w_i)``
``weights, s, *, seed, streams)``      ``+ s*z_i``, z_i from ``(seed, streams[i])``
``philox_normal(numel, seed, stream)`` the noise those two add, as a tensor
=====================================  =========================================

The noise ``z`` is Philox4x32-10 + Box-Muller, a function of ``(seed, stream,
element index)`` only (see ``nytorch_ext.ops.philox``): reproducible whatever the
thread count or device, never stored in a buffer by the compiled kernels. Seeds
and streams are 64-bit (Python ints in ``[-2**63, 2**64)``, taken as uint64 bits).

Rules shared by every op:

* dtypes float32, float64, float16, bfloat16; half types are computed in float32
  and rounded once, float64 in float64. No type promotion, no broadcasting: all
  tensors of one call share dtype, device and shape, else a ``TypeError``,
  ``RuntimeError`` or ``ValueError`` names the argument.
* The allocating forms accept non-contiguous inputs and copy them once. The
  in-place, ``out=`` and list forms require contiguous tensors and never copy.
* ``out`` may be exactly an input (that is how the in-place forms work); a partial
  overlap is rejected. Rejected calls leave every tensor untouched.
* NaN and Inf propagate as IEEE arithmetic says (``0*inf`` is NaN). The blend
  is torch.lerp's formula for every alpha (negative, > 1, Inf and NaN included).
* Scalars arrive as double. A finite scalar beyond float32's range given for
  float32/float16/bfloat16 tensors (which compute in float32) is a ``ValueError``
  naming it, in both backends (as torch.lerp rejects it), not a silent Inf.
* Not differentiable: with grad mode on, the ``out=``, in-place and list forms
  raise a ``RuntimeError`` naming the first of their tensors that requires grad
  (as torch's ``out=`` functions do), before writing anything; a coefficient
  given as a tensor that requires grad is rejected by every form (the ops take
  coefficients as constants). The allocating forms are differentiable in their
  tensors.
* List forms run one fused launch per (device, dtype) group of the list.

The ops are registered as ``torch.ops.nytorch_ext.*`` custom ops (with fake
implementations, so they trace under ``torch.compile(fullgraph=True)``, and
autograd formulas for the allocating forms). If the compiled extension is missing
they run on plain PyTorch ops instead; see :func:`backend_info`.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch

from . import fallback as _fallback, philox as _philox, validation as _checks
from ._extension import _C, BUILD_INFO, LOAD_ERROR
from .philox import philox_normal

__all__ = [
    "axpby", "axpby_", "blend", "blend_", "lincomb", "lincomb_",
    "multi_axpby_", "multi_blend_", "blend_noise_", "multi_blend_noise_", "philox_normal",
    "is_compiled", "backend_info",
]

Tensor = torch.Tensor


# --------------------------------------------------------------------- backend

def is_compiled() -> bool:
    """True when the compiled kernels (``nytorch_ext._C``) are loaded."""
    return _C is not None


def backend_info() -> dict:
    """Which implementation serves each device, and why.

    Returns a dict with keys ``"cpu"`` and ``"cuda"`` (``"compiled"`` or
    ``"pytorch-fallback"``), ``"cpu_simd"`` (what the CPU kernels were vectorized
    for), ``"cuda_runtime_version"`` (when CUDA kernels are compiled) and
    ``"load_error"`` (why ``_C`` did not load, else ``None``).
    """
    cuda_compiled = bool(BUILD_INFO.get("cuda"))
    return {
        "cpu": "compiled" if _C is not None else "pytorch-fallback",
        "cuda": "compiled" if cuda_compiled else "pytorch-fallback",
        "cpu_simd": BUILD_INFO.get("cpu"),
        "cuda_runtime_version": BUILD_INFO.get("cuda_runtime_version"),
        "load_error": LOAD_ERROR,
    }


if _C is not None:
    from . import registrations  # noqa: F401  (fakes, autograd, CUDA fallback)

    _lib = torch.ops.nytorch_ext
    _axpby, _axpby_out = _lib.axpby.default, _lib.axpby_out.default
    _blend, _blend_out = _lib.blend.default, _lib.blend_out.default
    _lincomb, _lincomb_out = _lib.lincomb.default, _lib.lincomb_out.default
    _multi_axpby, _multi_blend = _lib.multi_axpby_.default, _lib.multi_blend_.default
    _blend_noise, _multi_blend_noise = _lib.blend_noise_.default, _lib.multi_blend_noise_.default
else:
    _axpby, _axpby_out = _fallback.axpby, _fallback.axpby_out
    _blend, _blend_out = _fallback.blend, _fallback.blend_out
    _lincomb, _lincomb_out = _fallback.lincomb, _fallback.lincomb_out
    _multi_axpby, _multi_blend = _fallback.multi_axpby_, _fallback.multi_blend_
    _blend_noise, _multi_blend_noise = _fallback.blend_noise_, _fallback.multi_blend_noise_


# ------------------------------------------------------------ argument helpers

def _constant_tensor(value: Tensor, name: str) -> None:
    """A tensor given as a coefficient is taken as a constant: one that requires
    grad (with grad mode on) would silently get no gradient, so it is an error."""
    if value.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(f"{name} is a tensor that requires grad, but the ops take their coefficients as "
                           f"constants (no gradient would reach it): pass {name}.detach() or a number")


def _scalar(value, name: str) -> float:
    if type(value) is float:  # the common case, without the ABC checks below
        return value
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Tensor)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(f"{name} must be a real number or a one-element real tensor")
        _constant_tensor(value, name)
        value = value.item()
    return float(value)


def _tensor(value, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
    return value


def _scalars(values, name: str, each=_scalar, what: str = "numbers") -> list:
    """A sequence (or tensor, ndarray) of ``what``, each converted by ``each``."""
    if each is _scalar and type(values) in (list, tuple) and all([type(v) is float for v in values]):
        return list(values)  # the common case: no per-entry checks, no names built
    if hasattr(values, "tolist") and not isinstance(values, (str, bytes)):  # tensor, ndarray
        if isinstance(values, Tensor):
            _constant_tensor(values, name)
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of {what}, got {type(values).__name__}")
    return [each(v, f"{name}[{i}]") for i, v in enumerate(values)]


def _tensor_list(values, name: str) -> list[Tensor]:
    if isinstance(values, Tensor) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list or tuple of tensors, got {type(values).__name__}")
    values = list(values)
    if not all(isinstance(t, Tensor) for t in values):
        i = next(i for i, t in enumerate(values) if not isinstance(t, Tensor))
        raise TypeError(f"{name}[{i}] must be a tensor, got {type(values[i]).__name__}")
    return values


def _int64_bits(value, name: str) -> int:
    """A 64-bit seed or stream: an int in [-2**63, 2**64), returned as the int64
    with the same bits (what the ops take)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    bits = _philox.uint64_bits(int(value), name)
    return bits - (1 << 64) if bits >= 1 << 63 else bits


def _groups(tensors: list[Tensor]) -> list[list[int]] | None:
    """Indices grouped by (device, dtype), or None when the list is one group."""
    groups: dict = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return list(groups.values()) if len(groups) > 1 else None


# The same, in one C++ pass (~0.1 us for six tensors against ~1.4 us in Python).
_fast_groups = getattr(_C, "tensor_groups", None) or _groups


# ------------------------------------------------------------- single-tensor ops

def axpby(a, x: Tensor, b, y: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``a*x + b*y`` in one pass. With ``out=`` the result is written there
    (``out`` may be ``x`` or ``y``) and ``out`` is returned."""
    a, b = _scalar(a, "a"), _scalar(b, "b")
    _tensor(x, "x"), _tensor(y, "y")
    if out is None:
        return _axpby(a, x, b, y)
    _tensor(out, "out")
    _axpby_out(a, x, b, y, out=out)
    return out


def _inplace_target(t, name: str) -> Tensor:
    """The in-place forms write into ``t``: report its problems under its own name."""
    _checks.floating(t, name)
    _checks.contiguous(t, name)
    return t


def axpby_(a, x: Tensor, b, y: Tensor) -> Tensor:
    """In place: ``x <- a*x + b*y``. Returns ``x``."""
    return axpby(a, x, b, y, out=_inplace_target(x, "x"))


def blend(x: Tensor, y: Tensor, alpha, *, out: Tensor | None = None) -> Tensor:
    """``(1-alpha)*x + alpha*y`` with the two-sided lerp formula, so the result is
    exactly ``x`` at ``alpha == 0`` and exactly ``y`` at ``alpha == 1``."""
    alpha = _scalar(alpha, "alpha")
    _tensor(x, "x"), _tensor(y, "y")
    if out is None:
        return _blend(x, y, alpha)
    _tensor(out, "out")
    _blend_out(x, y, alpha, out=out)
    return out


def blend_(x: Tensor, y: Tensor, alpha) -> Tensor:
    """In place: ``x <- (1-alpha)*x + alpha*y``. Returns ``x``."""
    return blend(x, y, alpha, out=_inplace_target(x, "x"))


def lincomb(coeffs: Sequence[float], tensors: Sequence[Tensor], bias=0.0, *,
            out: Tensor | None = None) -> Tensor:
    """``sum_k coeffs[k]*tensors[k] + bias`` for any number of tensors, one pass
    over memory (on CUDA one pass for up to 16 tensors, one more per 15 beyond)."""
    coeffs = _scalars(coeffs, "coeffs")
    tensors = _tensor_list(tensors, "tensors")
    bias = _scalar(bias, "bias")
    if out is None:
        return _lincomb(coeffs, tensors, bias)
    _tensor(out, "out")
    _lincomb_out(coeffs, tensors, bias, out=out)
    return out


def lincomb_(coeffs: Sequence[float], tensors: Sequence[Tensor], bias=0.0) -> Tensor:
    """In place into the first tensor: ``tensors[0] <- sum_k coeffs[k]*tensors[k] + bias``."""
    tensors = _tensor_list(tensors, "tensors")
    if not tensors:
        raise ValueError("tensors must not be empty")
    return lincomb(coeffs, tensors, bias, out=_inplace_target(tensors[0], "tensors[0]"))


# --------------------------------------------------------------- multi-tensor ops

def _grouped(outs: list[Tensor], lists: list[list], op, check) -> None:
    """``op(*lists)`` as one fused call when ``outs`` is one (device, dtype)
    group (decided up front, in one C++ pass); otherwise ``check(one_group=False,
    aliasing=...)`` validates the whole call first, under the caller's indices
    (so a rejection writes nothing and names the right tensor), then ``op`` runs
    once per group, each list picked at the group's indices. O(n) in all."""
    compiling = torch.compiler.is_compiling()
    groups = _groups(outs) if compiling else _fast_groups(outs)  # traced: decided at trace time
    if groups is None:
        op(*lists)
        return
    check(one_group=False, aliasing=not compiling)
    for idx in groups:
        op(*[_pick(values, idx) for values in lists])


def multi_axpby_(outs: Sequence[Tensor], a, xs: Sequence[Tensor], b, ys: Sequence[Tensor]) -> list[Tensor]:
    """``outs[i] <- a*xs[i] + b*ys[i]`` for every i; ``outs[i]`` may be ``xs[i]`` or
    ``ys[i]``. One fused launch per (device, dtype) group. Returns ``outs``."""
    outs, xs, ys = _tensor_list(outs, "outs"), _tensor_list(xs, "xs"), _tensor_list(ys, "ys")
    a, b = _scalar(a, "a"), _scalar(b, "b")
    if not outs:
        _checks.multi_axpby(outs, xs, ys)  # lengths must still agree
        return outs
    _grouped(outs, [outs, xs, ys], lambda o, x, y: _multi_axpby(o, a, x, b, y),
             lambda **kw: _check_multi("multi_axpby_", [(outs, "outs"), (xs, "xs"), (ys, "ys")],
                                       _checks.multi_axpby, outs, xs, ys, a=a, b=b, **kw))
    return outs


def _check_multi(op: str, named, check, *args, **kwargs) -> None:
    """The multi-group path's checks, under the caller's indices: the compiled
    ops' Autograd rule first (as the ops run it), then the list rules."""
    _checks.not_differentiable(op, *named)
    check(*args, **kwargs)


def _blend_sources(targets: list[Tensor], source) -> tuple[list[Tensor], bool]:
    """The source list of a multi-blend call, and whether it is one shared tensor
    (the ops are told: for a single target they could not tell a shared source,
    which may not overlap it, from a per-target one, which may be it)."""
    shared = isinstance(source, Tensor)
    return ([source] if shared else _tensor_list(source, "source")), shared


def _one_or_many(values, name: str) -> list[float]:
    """One number, or a sequence (or 1-D tensor) of them, as a list of floats."""
    if (isinstance(values, Sequence) or hasattr(values, "tolist")) and getattr(values, "ndim", 1) != 0:
        return _scalars(values, name)
    return [_scalar(values, name)]


def multi_blend_(targets: Sequence[Tensor], source, alphas) -> list[Tensor]:
    """The APSO subset update: ``targets[i] <- (1-alpha_i)*targets[i] + alpha_i*src_i``.

    ``source`` is one tensor shared by all targets (which must not overlap it) or a
    list with one tensor per target; ``alphas`` is one number or one per target.
    One fused launch per (device, dtype) group. Returns ``targets``."""
    targets = _tensor_list(targets, "targets")
    sources, shared = _blend_sources(targets, source)
    alphas = _one_or_many(alphas, "alphas")
    if not targets:  # an empty subset is a no-op, with a shared source or not
        if not shared:
            _checks.multi_blend(targets, sources, alphas)
        return targets
    # Tell the op about a shared source only where it cannot see it (one target):
    # the common call stays a plain three-argument one.
    one_shared = shared and len(targets) == 1
    _grouped(targets, [targets, sources, alphas],
             (lambda t, src, a: _multi_blend(t, src, a, True)) if one_shared else _multi_blend,
             lambda **kw: _check_multi("multi_blend_", [(targets, "targets"), (sources, "sources")],
                                       _checks.multi_blend, targets, sources, alphas, shared_source=shared, **kw))
    return targets


# ------------------------------------------------------------ blend with noise

def blend_noise_(x: Tensor, best: Tensor, weight, noise_scale, *, seed, stream=0) -> Tensor:
    """The full-APSO step in one pass: ``x <- (1-weight)*x + weight*best + noise_scale*z``.

    ``z`` is standard normal noise drawn inside the kernel from ``(seed, stream)``
    and each element's index (``philox_normal(x.numel(), seed, stream, x.dtype)``
    is exactly that noise, before scaling). The blend is :func:`blend_`'s
    two-sided lerp; ``noise_scale == 0`` gives exactly ``blend_``. ``weight`` and
    ``noise_scale`` must be finite; ``best`` may be ``x`` itself or disjoint from
    it. Returns ``x``."""
    weight, noise_scale = _scalar(weight, "weight"), _scalar(noise_scale, "noise_scale")
    seed, stream = _int64_bits(seed, "seed"), _int64_bits(stream, "stream")
    _tensor(best, "best")
    _blend_noise(_inplace_target(x, "x"), best, weight, noise_scale, seed, stream)
    return x


def multi_blend_noise_(targets: Sequence[Tensor], source, weights, noise_scale, *, seed,
                       streams) -> list[Tensor]:
    """:func:`multi_blend_` plus noise: ``targets[i] <- blend(targets[i], src_i,
    w_i) + noise_scale*z_i``, with ``z_i`` drawn in the pass from ``(seed,
    streams[i])`` exactly as :func:`blend_noise_` draws it for one tensor.

    ``source`` and ``weights`` as in :func:`multi_blend_`; ``streams`` holds one
    64-bit int per target (give every target of a run its own stream, e.g. the
    particle's and parameter's indices combined). One fused launch per (device,
    dtype) group. Returns ``targets``."""
    targets = _tensor_list(targets, "targets")
    sources, shared = _blend_sources(targets, source)
    weights = _one_or_many(weights, "weights")
    noise_scale = _scalar(noise_scale, "noise_scale")
    seed, streams = _int64_bits(seed, "seed"), _scalars(streams, "streams", _int64_bits, "ints")
    if not targets:
        _checks.multi_blend_noise(targets, [] if shared else sources, weights, noise_scale, streams)
        return targets
    one_shared = shared and len(targets) == 1  # see multi_blend_
    _grouped(targets, [targets, sources, weights, streams],
             (lambda t, src, w, st: _multi_blend_noise(t, src, w, noise_scale, seed, st, True)) if one_shared
             else (lambda t, src, w, st: _multi_blend_noise(t, src, w, noise_scale, seed, st)),
             lambda **kw: _check_multi("multi_blend_noise_", [(targets, "targets"), (sources, "sources")],
                                       _checks.multi_blend_noise, targets, sources, weights, noise_scale,
                                       streams, shared_source=shared, **kw))
    return targets


def _pick(values: list, idx: list[int]) -> list:
    """The entries of a per-index list at ``idx``; a one-entry (shared) list as is."""
    return values if len(values) == 1 else [values[i] for i in idx]
