"""The one table of the fused ops' Python-facing facts.

Each entry of :data:`OPS` declares one op of ``torch.ops.nytorch_ext``: its fake
(meta) implementation, its pure-PyTorch fallback, its autograd formula if it has
one, whether it writes its arguments, and whether ``nytorch_ext._C`` must define
it. Everything else is derived from this table, never listed again:

* ``registrations.py``: the ``register_fake`` and ``register_autograd`` calls, and
  the CUDA implementations for builds without CUDA kernels;
* ``_extension.REQUIRED_OPS``: the stale-build check;
* ``ops.__init__``: what the public functions call, the registered op or its
  fallback (``_extension.native`` makes that one choice);
* the tests' ``backend`` fixture (tests/reference.py) and the agreement test.

The op schemas themselves are declared once, in csrc/ops.cpp. How to add an op:
docs/adding-an-op.md.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import fallback, validation as check

Tensor = torch.Tensor


@dataclass(frozen=True)
class Op:
    name: str  # its name in torch.ops.nytorch_ext
    fallback: Callable[..., Any] | None = None  # pure PyTorch, the op's signature
    fake: Callable[..., Any] | None = None  # for FakeTensor and torch.compile: the rules, no data
    backward: Callable[..., Any] | None = None  # with setup_context: torch.library.register_autograd
    setup_context: Callable[..., Any] | None = None
    mutates: bool = False  # an out=, in-place or list form: per-device kernels, no derivative
    required: bool = True  # a build of _C without it is stale

    @functools.cached_property
    def python_impl(self) -> Callable[..., Any] | None:
        """What runs without the compiled op: the fallback, behind the compiled
        ops' Autograd rule when it mutates (csrc/ops.cpp: with grad mode on, no
        tensor argument may require grad, checked in signature order)."""
        if self.fallback is None or not self.mutates:
            return self.fallback
        impl, op_name = self.fallback, self.name
        parameters = tuple(inspect.signature(impl).parameters)

        @functools.wraps(impl)
        def refusing_grad(*args, **kwargs):
            if torch.is_grad_enabled():
                named = [*zip(args, parameters), *((v, k) for k, v in kwargs.items())]
                check.not_differentiable(op_name, named, ALLOCATING_FORMS)
            return impl(*args, **kwargs)

        return refusing_grad


def _new_like(t: Tensor) -> Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


# ------------------------------------------------------------------------ fakes
# They run the same rules as the kernels, the overlap checks included: on
# FakeTensors (torch.compile) those compare storages and offsets, so a call that
# eager mode rejects for its aliasing is rejected at trace time too (at run time
# the compiled graph hands the kernels fresh copies of what they write, too late
# to see the overlap). Bad input fails at trace time, and a stray meta tensor
# among real ones is rejected rather than silently computing nothing.

def _axpby_fake(a, x, b, y):
    check.pair_result(x, y, (a, "a"), (b, "b"))
    return _new_like(x)


def _blend_fake(x, y, alpha):
    check.pair_result(x, y, (alpha, "alpha"))
    return _new_like(x)


def _lincomb_fake(coeffs, tensors, bias=0.0):
    check.combination_result(coeffs, tensors, bias)
    return _new_like(tensors[0])


def _axpby_out_fake(a, x, b, y, *, out):
    check.pair_out(out, x, y, (a, "a"), (b, "b"))


def _blend_out_fake(x, y, alpha, *, out):
    check.pair_out(out, x, y, (alpha, "alpha"))


def _lincomb_out_fake(coeffs, tensors, bias, *, out):
    check.combination_out(out, coeffs, tensors, bias)


def _multi_axpby_fake(outs, a, xs, b, ys):
    check.pair_lists(outs, xs, ys, a, b)


def _multi_blend_fake(targets, sources, alphas, shared_source=False):
    check.target_lists(targets, sources, alphas, shared_source)


def _multi_scale_fake(targets, scales):
    check.scaled_lists(targets, scales)


def _blend_noise_fake(x, best, weight, noise_scale, seed, stream):
    check.noisy_target(x, best, weight, noise_scale)


def _multi_blend_noise_fake(targets, sources, weights, noise_scale, seed, streams, shared_source=False):
    check.noisy_target_lists(targets, sources, weights, noise_scale, streams, shared_source)


# --------------------------------------------------------------------- autograd
# The allocating forms are linear in their tensors: d(a*x + b*y) = a*dx + b*dy.
# The coefficients are constants (the public functions reject tensor coefficients
# that require grad). The dispatcher drops trailing arguments equal to their
# defaults (lincomb's bias=0.) before autograd sees the call, and backward must
# return one entry per argument it did see: ctx.needs_input_grad has that length.

def _saving(*names_and_positions: tuple[str, int]) -> Callable[..., None]:
    """A setup_context that keeps the scalar arguments at the given positions."""
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


# ----------------------------------------------------------------------- the table

OPS: tuple[Op, ...] = (
    Op("axpby", fallback.axpby, _axpby_fake, _axpby_backward, _saving(("a", 0), ("b", 2))),
    Op("axpby_out", fallback.axpby_out, _axpby_out_fake, mutates=True),
    Op("blend", fallback.blend, _blend_fake, _blend_backward, _saving(("alpha", 2))),
    Op("blend_out", fallback.blend_out, _blend_out_fake, mutates=True),
    Op("lincomb", fallback.lincomb, _lincomb_fake, _lincomb_backward, _saving(("coeffs", 0))),
    Op("lincomb_out", fallback.lincomb_out, _lincomb_out_fake, mutates=True),
    Op("multi_axpby_", fallback.multi_axpby_, _multi_axpby_fake, mutates=True),
    Op("multi_blend_", fallback.multi_blend_, _multi_blend_fake, mutates=True),
    Op("blend_noise_", fallback.blend_noise_, _blend_noise_fake, mutates=True),
    Op("multi_blend_noise_", fallback.multi_blend_noise_, _multi_blend_noise_fake, mutates=True),
    Op("multi_scale_", fallback.multi_scale_, _multi_scale_fake, mutates=True),
    # The particle layer's views of a flat buffer (composite: no fake, no fallback
    # here; particles/flat.py has its own Python path).
    Op("_views"),
)

# The differentiable ops, which the mutating ones' grad-mode error suggests.
ALLOCATING_FORMS: tuple[str, ...] = tuple(op.name for op in OPS if op.backward is not None)


def refuse_grad(op_name: str, *named: tuple[Any, str]) -> None:
    """The compiled ops' Autograd rule for ``op_name``, under the caller's names
    (the public list functions run it before splitting a call into groups)."""
    check.not_differentiable(op_name, named, ALLOCATING_FORMS)
