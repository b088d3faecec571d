"""What the compiled ops need besides their kernels: fake implementations (so
they trace under torch.compile and FakeTensor), autograd formulas for the
allocating forms, and a CUDA implementation when the extension was built without
CUDA kernels. Imported once, by nytorch_ext.ops, when nytorch_ext._C is loaded.
"""
from __future__ import annotations

import warnings

import torch

from . import _checks, _fallback
from ._extension import BUILD_INFO

_NS = "nytorch_ext::"


def _new_like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


# ------------------------------------------------------------------------ fakes
# They run the same rules as the kernels (less the overlap checks, which need
# real memory), so bad input fails at trace time and a stray meta tensor among
# real ones is rejected rather than silently computing nothing.

@torch.library.register_fake(_NS + "axpby")
def _axpby_fake(a, x, b, y):
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
    return _new_like(x)


@torch.library.register_fake(_NS + "blend")
def _blend_fake(x, y, alpha):
    _checks.floating(x, "x")
    _checks.same(y, "y", x, "x")
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
    return _new_like(tensors[0])


@torch.library.register_fake(_NS + "axpby_out")
def _axpby_out_fake(a, x, b, y, *, out):
    _checks.binary_out(out, x, y, aliasing=False)


@torch.library.register_fake(_NS + "blend_out")
def _blend_out_fake(x, y, alpha, *, out):
    _checks.binary_out(out, x, y, aliasing=False)


@torch.library.register_fake(_NS + "lincomb_out")
def _lincomb_out_fake(coeffs, tensors, bias, *, out):
    _checks.lincomb_out(out, coeffs, tensors, aliasing=False)


@torch.library.register_fake(_NS + "multi_axpby_")
def _multi_axpby_fake(outs, a, xs, b, ys):
    _checks.multi_axpby(outs, xs, ys, aliasing=False)


@torch.library.register_fake(_NS + "multi_blend_")
def _multi_blend_fake(targets, sources, alphas):
    _checks.multi_blend(targets, sources, alphas, aliasing=False)


@torch.library.register_fake(_NS + "blend_noise_")
def _blend_noise_fake(self, best, weight, noise_scale, seed, stream):
    _checks.blend_noise(self, best, weight, noise_scale, aliasing=False)


@torch.library.register_fake(_NS + "multi_blend_noise_")
def _multi_blend_noise_fake(targets, sources, weights, noise_scale, seed, streams):
    _checks.multi_blend_noise(targets, sources, weights, noise_scale, streams, aliasing=False)


# --------------------------------------------------------------------- autograd
# The allocating forms are linear in their tensors: d(a*x + b*y) = a*dx + b*dy.

def _save_scalars(*names_and_positions):
    def setup_context(ctx, inputs, output):
        for name, pos in names_and_positions:
            setattr(ctx, name, inputs[pos])
    return setup_context


def _axpby_backward(ctx, grad):
    return None, grad * ctx.a, None, grad * ctx.b


def _blend_backward(ctx, grad):
    return grad * (1.0 - ctx.alpha), grad * ctx.alpha, None


def _lincomb_backward(ctx, grad):
    return None, [grad * c for c in ctx.coeffs], None


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
