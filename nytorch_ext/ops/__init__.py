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
``multi_scale_(targets, scales)``      ``targets[i] = scale_i * targets[i]``
``philox_normal(numel, seed, stream)`` the noise the noise ops add, as a tensor
``prepared.multi_blend_(...)``, ...    the list ops on arguments already in the
                                       op's form (no conversion or grouping)
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

from types import SimpleNamespace
from typing import Sequence

import torch

from . import validation as check
# The argument conversions every call runs, as plain globals (the wrappers are a hot path).
from .validation import (inplace_target, int64_bits, one_or_many, scalar, scalar_list, shared_or_list, tensor,
                         tensor_list)
from ._extension import _C, BUILD_INFO, LOAD_ERROR, native
from .grouping import device_dtype_groups, pick
from .philox import philox_normal
from .registry import OPS, refuse_grad

__all__ = [
    "axpby", "axpby_", "blend", "blend_", "lincomb", "lincomb_",
    "multi_axpby_", "multi_blend_", "blend_noise_", "multi_blend_noise_", "multi_scale_", "philox_normal",
    "prepared", "is_compiled", "backend_info",
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

class _Impls(SimpleNamespace):
    """What the public functions call, one attribute per op of the registry: the
    registered op (its default ``OpOverload``), or its fallback when _C is not loaded.
    Setting an attribute (the tests' backend fixture swaps them) sets its
    :data:`_direct` twin too."""

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        setattr(_direct, name, _bound(value))


def _bound(impl):
    """The builtin an ``OpOverload`` calls (``OpOverload.__call__`` is one more Python
    frame per call: the 1e4-element rows of benchmarks/fused_vs_eager.py); anything
    else (a fallback, a test's spy) as it is."""
    return getattr(impl, "_op", impl) if isinstance(impl, torch._ops.OpOverload) else impl


# _impl's twin with the overloads' builtins, for untraced calls: Dynamo traces an
# OpOverload but not the builtin behind it, so traced code goes through _impl.
_direct = SimpleNamespace()
_impl = _Impls(**{op.name: native(op.name, op.python_impl, op=True) for op in OPS if op.python_impl is not None})
for _name, _value in vars(_impl).items():
    setattr(_direct, _name, _bound(_value))
del _name, _value


def _calls() -> SimpleNamespace:
    """The implementations to call here: the builtins, or the overloads in traced code."""
    return _impl if torch.compiler.is_compiling() else _direct


# ------------------------------------------------------------- single-tensor ops

def axpby(a, x: Tensor, b, y: Tensor, *, out: Tensor | None = None) -> Tensor:
    """``a*x + b*y`` in one pass. With ``out=`` the result is written there
    (``out`` may be ``x`` or ``y``) and ``out`` is returned."""
    a, b = scalar(a, "a"), scalar(b, "b")
    tensor(x, "x"), tensor(y, "y")
    if out is None:
        return _calls().axpby(a, x, b, y)
    tensor(out, "out")
    _calls().axpby_out(a, x, b, y, out=out)
    return out


# The in-place forms are the hot path on small tensors: one frame, scalar()'s float fast
# path inlined, the same checks in the same order as axpby(out=x) / blend(out=x).
def axpby_(a, x: Tensor, b, y: Tensor) -> Tensor:
    """In place: ``x <- a*x + b*y``. Returns ``x``."""
    inplace_target(x, "x")
    if type(a) is not float or type(b) is not float:
        a, b = scalar(a, "a"), scalar(b, "b")
    tensor(y, "y")
    _calls().axpby_out(a, x, b, y, out=x)
    return x


def blend(x: Tensor, y: Tensor, alpha, *, out: Tensor | None = None) -> Tensor:
    """``(1-alpha)*x + alpha*y`` with the two-sided lerp formula, so the result is
    exactly ``x`` at ``alpha == 0`` and exactly ``y`` at ``alpha == 1``."""
    alpha = scalar(alpha, "alpha")
    tensor(x, "x"), tensor(y, "y")
    if out is None:
        return _calls().blend(x, y, alpha)
    tensor(out, "out")
    _calls().blend_out(x, y, alpha, out=out)
    return out


def blend_(x: Tensor, y: Tensor, alpha) -> Tensor:
    """In place: ``x <- (1-alpha)*x + alpha*y``. Returns ``x``."""
    inplace_target(x, "x")
    if type(alpha) is not float:
        alpha = scalar(alpha, "alpha")
    tensor(y, "y")
    _calls().blend_out(x, y, alpha, out=x)
    return x


def lincomb(coeffs: Sequence[float], tensors: Sequence[Tensor], bias=0.0, *,
            out: Tensor | None = None) -> Tensor:
    """``sum_k coeffs[k]*tensors[k] + bias`` for any number of tensors, one pass
    over memory (on CUDA one pass for up to 16 tensors, one more per 15 beyond)."""
    coeffs = scalar_list(coeffs, "coeffs")
    tensors = tensor_list(tensors, "tensors")
    bias = scalar(bias, "bias")
    if out is None:
        return _calls().lincomb(coeffs, tensors, bias)
    tensor(out, "out")
    _calls().lincomb_out(coeffs, tensors, bias, out=out)
    return out


def lincomb_(coeffs: Sequence[float], tensors: Sequence[Tensor], bias=0.0) -> Tensor:
    """In place into the first tensor: ``tensors[0] <- sum_k coeffs[k]*tensors[k] + bias``."""
    tensors = tensor_list(tensors, "tensors")
    if not tensors:
        raise ValueError("tensors must not be empty")
    return lincomb(coeffs, tensors, bias, out=inplace_target(tensors[0], "tensors[0]"))


# --------------------------------------------------------------- multi-tensor ops
# One registered call when the list is one (device, dtype) group, decided up front.
# Otherwise the whole call is validated first, under the caller's indices (so a
# rejection writes nothing and names the right tensor), then the op runs once per
# group, each list picked at the group's indices. O(n) in all.

def multi_axpby_(outs: Sequence[Tensor], a, xs: Sequence[Tensor], b, ys: Sequence[Tensor]) -> list[Tensor]:
    """``outs[i] <- a*xs[i] + b*ys[i]`` for every i; ``outs[i]`` may be ``xs[i]`` or
    ``ys[i]``. One fused launch per (device, dtype) group. Returns ``outs``."""
    outs, xs, ys = tensor_list(outs, "outs"), tensor_list(xs, "xs"), tensor_list(ys, "ys")
    a, b = scalar(a, "a"), scalar(b, "b")
    traced = torch.compiler.is_compiling()
    impl = _impl if traced else _direct
    groups = device_dtype_groups(outs, traced)
    if groups is None:
        if not outs:  # nothing to write, but the lengths must agree
            check.pair_lists(outs, xs, ys)
        else:
            impl.multi_axpby_(outs, a, xs, b, ys)
        return outs
    refuse_grad("multi_axpby_", (outs, "outs"), (xs, "xs"), (ys, "ys"))
    check.pair_lists(outs, xs, ys, a, b, one_group=False, aliasing=not traced)
    for idx in groups:
        impl.multi_axpby_(pick(outs, idx), a, pick(xs, idx), b, pick(ys, idx))
    return outs


def multi_blend_(targets: Sequence[Tensor], source, alphas) -> list[Tensor]:
    """The APSO subset update: ``targets[i] <- (1-alpha_i)*targets[i] + alpha_i*src_i``.

    ``source`` is one tensor shared by all targets (which must not overlap it) or a
    list with one tensor per target; ``alphas`` is one number or one per target.
    One fused launch per (device, dtype) group. Returns ``targets``."""
    targets = tensor_list(targets, "targets")
    sources, shared = shared_or_list(source, "source")
    alphas = one_or_many(alphas, "alphas")
    traced = torch.compiler.is_compiling()
    impl = _impl if traced else _direct
    groups = device_dtype_groups(targets, traced)
    if groups is None:
        if not targets:  # an empty subset is a no-op, with a shared source or not
            if not shared:
                check.target_lists(targets, sources, alphas)
        elif shared and len(targets) == 1:  # only the op's flag tells it a shared source from its own
            impl.multi_blend_(targets, sources, alphas, True)
        else:  # the common call stays a plain three-argument one
            impl.multi_blend_(targets, sources, alphas)
        return targets
    refuse_grad("multi_blend_", (targets, "targets"), (sources, "sources"))
    check.target_lists(targets, sources, alphas, shared, one_group=False, aliasing=not traced)
    for idx in groups:
        impl.multi_blend_(pick(targets, idx), pick(sources, idx), pick(alphas, idx))
    return targets


def multi_scale_(targets: Sequence[Tensor], scales) -> list[Tensor]:
    """``targets[i] <- scales_i * targets[i]`` for every i (per-member gradient
    clipping, decaying a swarm's states). ``scales`` is one number or one per
    target; a plain IEEE product, bit for bit ``torch.mul`` (the scale in opmath;
    CPU ``torch._foreach_mul_`` rounds it to float16/bfloat16 first): a scale of 0
    leaves NaN where a target holds Inf or NaN. One fused launch per (device, dtype)
    group. Returns ``targets``."""
    targets = tensor_list(targets, "targets")
    scales = one_or_many(scales, "scales")
    traced = torch.compiler.is_compiling()
    impl = _impl if traced else _direct
    groups = device_dtype_groups(targets, traced)
    if groups is None:
        if targets:
            impl.multi_scale_(targets, scales)
        else:  # nothing to write, but the scales must still be valid
            check.scaled_lists(targets, scales)
        return targets
    refuse_grad("multi_scale_", (targets, "targets"))
    check.scaled_lists(targets, scales, one_group=False, aliasing=not traced)
    for idx in groups:
        impl.multi_scale_(pick(targets, idx), pick(scales, idx))
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
    weight, noise_scale = scalar(weight, "weight"), scalar(noise_scale, "noise_scale")
    seed, stream = int64_bits(seed, "seed"), int64_bits(stream, "stream")
    tensor(best, "best")
    _calls().blend_noise_(inplace_target(x, "x"), best, weight, noise_scale, seed, stream)
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
    targets = tensor_list(targets, "targets")
    sources, shared = shared_or_list(source, "source")
    weights = one_or_many(weights, "weights")
    noise_scale = scalar(noise_scale, "noise_scale")
    seed = int64_bits(seed, "seed")
    streams = scalar_list(streams, "streams", int64_bits, "ints")
    traced = torch.compiler.is_compiling()
    impl = _impl if traced else _direct
    groups = device_dtype_groups(targets, traced)
    if groups is None:
        if not targets:  # nothing to write, but the lengths must agree
            check.noisy_target_lists(targets, [] if shared else sources, weights, noise_scale, streams)
        elif shared and len(targets) == 1:  # see multi_blend_
            impl.multi_blend_noise_(targets, sources, weights, noise_scale, seed, streams, True)
        else:
            impl.multi_blend_noise_(targets, sources, weights, noise_scale, seed, streams)
        return targets
    refuse_grad("multi_blend_noise_", (targets, "targets"), (sources, "sources"))
    check.noisy_target_lists(targets, sources, weights, noise_scale, streams, shared, one_group=False,
                             aliasing=not traced)
    for idx in groups:
        impl.multi_blend_noise_(pick(targets, idx), pick(sources, idx), pick(weights, idx), noise_scale, seed,
                                 pick(streams, idx))
    return targets



# ------------------------------------------------------------- prepared calls

class prepared:  # lower case: a namespace of functions, called as ops.prepared.multi_blend_(...)
    """The list ops for callers whose arguments are already in the op's own form
    (``ops.prepared.multi_blend_(...)``): the public function's conversions and its
    (device, dtype) grouping are skipped, one Python call less per op.

    ``targets``: a list of tensors of one (device, dtype) group; ``sources``: a list
    of one tensor shared by every target, or of one tensor per target (with a single
    target, ``shared_source=True`` says that its one source is shared, so it must not
    overlap it); weights and ``noise_scale`` as floats (a list of one, or one per
    target), ``seed`` and ``streams`` as int64 bit patterns (what
    :func:`~nytorch_ext.ops.validation.int64_bits` returns). Every check of the op
    itself still runs before anything is written (the compiled entry, or the
    fallback), so a call that breaks these rules raises and writes nothing, but may
    name an argument as the op does (``sources``), not as the public function does.
    The swarm's APSO step calls these: its rows are one group per buffer by
    construction."""

    @staticmethod
    def multi_blend_(targets: list, sources: list, alphas: list, shared_source: bool = False) -> None:
        """:func:`multi_blend_` on prepared arguments."""
        if shared_source:
            _calls().multi_blend_(targets, sources, alphas, True)
        else:
            _calls().multi_blend_(targets, sources, alphas)

    @staticmethod
    def multi_blend_noise_(targets: list, sources: list, weights: list, noise_scale: float, seed: int,
                           streams: list, shared_source: bool = False) -> None:
        """:func:`multi_blend_noise_` on prepared arguments."""
        if shared_source:
            _calls().multi_blend_noise_(targets, sources, weights, noise_scale, seed, streams, True)
        else:
            _calls().multi_blend_noise_(targets, sources, weights, noise_scale, seed, streams)

