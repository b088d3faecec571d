"""What the compiled ops need besides their kernels: fake implementations (so
they trace under torch.compile and FakeTensor), autograd formulas for the
allocating forms, and a CUDA implementation when the extension was built without
CUDA kernels. Imported once, by nytorch_ext.ops, when nytorch_ext._C is loaded.
"""
from __future__ import annotations

import warnings

import torch

from . import fallback as _fallback, validation as _checks
from ._extension import BUILD_INFO

_NS = "nytorch_ext::"


def _new_like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


# ------------------------------------------------------------------------ fakes
# They run the same rules as the kernels, the overlap checks included: on
# FakeTensors (torch.compile) those compare storages and offsets, so a call that
# eager mode rejects for its aliasing is rejected at trace time too (at run time
# the compiled graph hands the kernels fresh copies of what they write, too late
# to see the overlap). Bad input fails at trace time, and a stray meta tensor
# among real ones is rejected rather than silently computing nothing.

@torch.library.register_fake(_NS + "axpby")
def _axpby_fake(a, x, b, y):
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
    out = _new_like(x)
    _checks.scalar_range(a, "a", x.dtype)
    _checks.scalar_range(b, "b", x.dtype)
    return out


@torch.library.register_fake(_NS + "blend")
def _blend_fake(x, y, alpha):
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
    _checks.scalar_range(alpha, "alpha", x.dtype)
    return _new_like(x)


@torch.library.register_fake(_NS + "lincomb")
def _lincomb_fake(coeffs, tensors, bias=0.0):
    # The allocating form copies non-contiguous inputs, so no contiguity rule here.
    if len(coeffs) == 0:
        raise ValueError("coeffs must not be empty")
    if len(coeffs) != len(tensors):
        raise ValueError(f"coeffs has {len(coeffs)} entries but tensors has {len(tensors)}")
    _checks.floating(tensors[0], "tensors[0]")
    for k, t in enumerate(tensors):
        _checks.same(t, f"tensors[{k}]", tensors[0], "tensors[0]")
    for k, c in enumerate(coeffs):
        _checks.scalar_range(c, f"coeffs[{k}]", tensors[0].dtype)
    _checks.scalar_range(bias, "bias", tensors[0].dtype)
    return _new_like(tensors[0])


@torch.library.register_fake(_NS + "axpby_out")
def _axpby_out_fake(a, x, b, y, *, out):
    _checks.axpby_out(out, a, x, b, y)


@torch.library.register_fake(_NS + "blend_out")
def _blend_out_fake(x, y, alpha, *, out):
    _checks.blend_out(out, x, y, alpha)


@torch.library.register_fake(_NS + "lincomb_out")
def _lincomb_out_fake(coeffs, tensors, bias, *, out):
    _checks.lincomb_out(out, coeffs, tensors, bias)


@torch.library.register_fake(_NS + "multi_axpby_")
def _multi_axpby_fake(outs, a, xs, b, ys):
    _checks.multi_axpby(outs, xs, ys, a=a, b=b)


@torch.library.register_fake(_NS + "multi_blend_")
def _multi_blend_fake(targets, sources, alphas, shared_source=False):
    _checks.multi_blend(targets, sources, alphas, shared_source=shared_source)


@torch.library.register_fake(_NS + "blend_noise_")
def _blend_noise_fake(x, best, weight, noise_scale, seed, stream):
    _checks.blend_noise(x, best, weight, noise_scale)


@torch.library.register_fake(_NS + "multi_blend_noise_")
def _multi_blend_noise_fake(targets, sources, weights, noise_scale, seed, streams, shared_source=False):
    _checks.multi_blend_noise(targets, sources, weights, noise_scale, streams, shared_source=shared_source)


# --------------------------------------------------------------------- autograd
# The allocating forms are linear in their tensors: d(a*x + b*y) = a*dx + b*dy.
# The coefficients are constants (the Python layer rejects tensor coefficients
# that require grad). The dispatcher drops trailing arguments equal to their
# defaults (lincomb's bias=0.) before autograd sees the call, and backward must
# return one entry per argument it did see: ctx.needs_input_grad has that length.

def _save_scalars(*names_and_positions):
    def setup_context(ctx, inputs, output):
        for name, pos in names_and_positions:
            setattr(ctx, name, inputs[pos])
    return setup_context


def _as_passed(ctx, grads: tuple) -> tuple:
    return grads[:len(ctx.needs_input_grad)]


def _axpby_backward(ctx, grad):
    need = ctx.needs_input_grad
    return _as_passed(ctx, (None, grad * ctx.a if need[1] else None, None, grad * ctx.b if need[3] else None))


def _blend_backward(ctx, grad):
    need = ctx.needs_input_grad
    return _as_passed(ctx, (grad * (1.0 - ctx.alpha) if need[0] else None,
                            grad * ctx.alpha if need[1] else None, None))


def _lincomb_backward(ctx, grad):
    need = ctx.needs_input_grad[1]
    grads = [grad * c if n else None for c, n in zip(ctx.coeffs, need)]
    return _as_passed(ctx, (None, grads, None))


torch.library.register_autograd(_NS + "axpby", _axpby_backward,
                                setup_context=_save_scalars(("a", 0), ("b", 2)))
torch.library.register_autograd(_NS + "blend", _blend_backward,
                                setup_context=_save_scalars(("alpha", 2)))
torch.library.register_autograd(_NS + "lincomb", _lincomb_backward,
                                setup_context=_save_scalars(("coeffs", 0)))


# ------------------------------------------- CUDA without compiled CUDA kernels

def _warn_once(fn):
    warned = False

    def wrapper(*args, **kwargs):
        nonlocal warned
        if not warned:
            warned = True
            warnings.warn(
                "nytorch_ext was built without CUDA kernels; CUDA tensors run on the "
                "pure-PyTorch fallback. Rebuild on a machine with nvcc and a CUDA build "
                "of PyTorch (or NYTORCH_EXT_CUDA=1) for the fused kernels.",
                RuntimeWarning,
                stacklevel=3,
            )
        return fn(*args, **kwargs)

    return wrapper


if not BUILD_INFO.get("cuda"):
    for _name in ("axpby_out", "blend_out", "lincomb_out", "multi_axpby_", "multi_blend_",
                  "blend_noise_", "multi_blend_noise_"):
        torch.library.impl(_NS + _name, "CUDA")(_warn_once(getattr(_fallback, _name)))
