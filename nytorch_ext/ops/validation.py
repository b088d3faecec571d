"""Argument rules of the fused ops, for the pure-PyTorch fallback, the fake
implementations and the Python layer of the list forms.

They mirror csrc/checks.cpp and csrc/ops.cpp exactly (same exception types, the
same argument names in the messages, the same order), so both backends accept
and reject the same calls, and every check runs before any write.

Aliasing: real tensors are compared by their memory addresses; FakeTensors (what
torch.compile traces with) and meta tensors have none, but views of one tensor
share its storage, so they are compared by storage and byte offset. That keeps
the overlap rules in force at trace time: at run time the compiled graph hands
the kernels fresh copies of the tensors they write, too late to see an overlap.
``aliasing=False`` skips the overlap checks (the Python layer under
torch.compile, where no storage can be inspected). Every list check is
O(n log n) in the number of tensors.
"""
from __future__ import annotations

import math
import numbers
from bisect import bisect_right
from typing import Sequence

import torch
from torch._subclasses.fake_tensor import is_fake

FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
FLOAT32_MAX = torch.finfo(torch.float32).max


def floating(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dtype not in FLOATING:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")


def same(t, name: str, ref: torch.Tensor, ref_name: str) -> None:
    floating(t, name)
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}")
    if t.device != ref.device:
        raise RuntimeError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")
    if t.shape != ref.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but {ref_name} has shape {tuple(ref.shape)}")


def finite(value: float, name: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def scalar_range(value: float, name: str, dtype: torch.dtype) -> None:
    """A scalar must be representable in its tensors' opmath type: a finite value
    beyond float32's range is a ValueError for float32/float16/bfloat16 tensors
    (rather than silently becoming +-Inf); Inf and NaN pass (IEEE arithmetic)."""
    if dtype is torch.float64 or -FLOAT32_MAX <= value <= FLOAT32_MAX or not math.isfinite(value):
        return
    raise ValueError(f"{name} is out of range for {dtype} tensors: {value!r} is finite but beyond "
                     f"float32's range (they compute in float32; |{name}| must be at most "
                     f"{FLOAT32_MAX!r}, or Inf)")


def not_differentiable(op: str, *named) -> None:
    """The out=, in-place and list forms have no derivative: with grad mode on,
    any tensor of theirs that requires grad is an error naming it, checked in
    argument order (as the compiled ops' Autograd kernel does, csrc/ops.cpp).
    ``named``: ``(tensor or list of tensors, name)`` pairs."""
    if not torch.is_grad_enabled():
        return
    for value, name in named:
        if isinstance(value, torch.Tensor):
            if value.requires_grad:
                _requires_grad_error(op, name)
        elif any([t.requires_grad for t in value]):
            i = next(i for i, t in enumerate(value) if t.requires_grad)
            _requires_grad_error(op, f"{name}[{i}]")


def _requires_grad_error(op: str, name: str):
    raise RuntimeError(
        f"{name} requires grad, but nytorch_ext::{op} (an out=, in-place or list form) does not support "
        "automatic differentiation: call it under torch.no_grad(), or use the allocating form "
        "(axpby, blend, lincomb)"
    )


def contiguous(t: torch.Tensor, name: str) -> None:
    if not t.is_contiguous():
        raise RuntimeError(
            f"{name} must be contiguous (call .contiguous() first); in-place, out= and list forms never copy"
        )


# ------------------------------------------------------------------- aliasing

def _span(t: torch.Tensor):
    """``(memory, begin, end)`` of a contiguous tensor's bytes, or None when it is
    empty or its extent is symbolic. ``memory`` is the address space: the device
    for real tensors (begin/end are addresses), the storage for fake and meta
    tensors (begin/end are byte offsets into it)."""
    n = t.numel()
    if n == 0:
        return None
    size = t.element_size()
    cls = type(t)
    if t.is_meta or (cls is not torch.Tensor and cls is not torch.nn.Parameter and is_fake(t)):
        begin = t.storage_offset() * size
        end = begin + n * size
        if type(begin) is not int or type(end) is not int:  # dynamic shapes: not decidable
            return None
        return ("storage", t.untyped_storage()._cdata), begin, end
    begin = t.data_ptr()
    return (t.device.type, -1 if t.device.index is None else t.device.index), begin, begin + n * size


def _overlap(a, b) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors share any memory (both non-empty)."""
    sa, sb = _span(a), _span(b)
    return sa is not None and sb is not None and _overlap(sa, sb)


def out_alias(out, inp, in_name: str, out_name: str = "out") -> None:
    """``out`` may be exactly ``inp`` or disjoint from it."""
    o, i = _span(out), _span(inp)
    if o is not None and i is not None and _overlap(o, i) and o != i:
        raise RuntimeError(
            f"{out_name} partially overlaps {in_name}: an output may be the very same memory as an input, "
            "or disjoint from it"
        )


def same_memory(a, b) -> bool:
    sa = _span(a)
    return sa is not None and sa == _span(b)


def binary_out(out, x, y, aliasing: bool = True) -> None:
    floating(x, "x")
    same(y, "y", x, "x")
    same(out, "out", x, "x")
    for t, name in ((out, "out"), (x, "x"), (y, "y")):
        contiguous(t, name)
    if aliasing:
        # the in-place forms pass their target as out: name it as the caller did
        out_name = "x" if same_memory(out, x) else "y" if same_memory(out, y) else "out"
        out_alias(out, x, "x", out_name)
        out_alias(out, y, "y", out_name)


def axpby_out(out, a: float, x, b: float, y, aliasing: bool = True) -> None:
    binary_out(out, x, y, aliasing)
    scalar_range(a, "a", x.dtype)
    scalar_range(b, "b", x.dtype)


def blend_out(out, x, y, alpha: float, aliasing: bool = True) -> None:
    binary_out(out, x, y, aliasing)
    scalar_range(alpha, "alpha", x.dtype)


def lincomb_out(out, coeffs: Sequence[float], tensors: Sequence[torch.Tensor], bias: float = 0.0,
                aliasing: bool = True) -> None:
    if len(coeffs) == 0:
        raise ValueError("coeffs must not be empty")
    if len(coeffs) != len(tensors):
        raise ValueError(f"coeffs has {len(coeffs)} entries but tensors has {len(tensors)}")
    floating(tensors[0], "tensors[0]")
    for k, t in enumerate(tensors):
        same(t, f"tensors[{k}]", tensors[0], "tensors[0]")
        contiguous(t, f"tensors[{k}]")
    same(out, "out", tensors[0], "tensors[0]")
    contiguous(out, "out")
    if aliasing:
        out_name = "tensors[0]" if same_memory(out, tensors[0]) else "out"
        for k, t in enumerate(tensors):
            out_alias(out, t, f"tensors[{k}]", out_name)
    dtype = tensors[0].dtype
    for k, c in enumerate(coeffs):
        scalar_range(c, f"coeffs[{k}]", dtype)
    scalar_range(bias, "bias", dtype)


def multi(
    outs: Sequence[torch.Tensor],
    outs_name: str,
    inputs: Sequence[tuple],
    one_group: bool = True,
    aliasing: bool = True,
) -> None:
    """List rules. ``inputs``: ``(tensors, name)`` or ``(tensors, name, shared)``
    entries; a one-tensor list is shared by every output when there are several
    outputs, or when ``shared`` says so. ``one_group=False`` admits several
    (device, dtype) groups, which the public API then launches one at a time."""
    n = len(outs)
    inputs = [(entry[0], entry[1], len(entry[0]) == 1 and (n > 1 or (len(entry) > 2 and entry[2])))
              for entry in inputs]
    for tensors, name, _ in inputs:
        m = len(tensors)
        if not (m == n or (m == 1 and n > 0)):
            raise ValueError(
                f"{name} has {m} tensors but {outs_name} has {n} (they must have equal lengths, "
                f"or {name} must hold a single tensor shared by all)"
            )
    if n == 0:
        return
    floating(outs[0], f"{outs_name}[0]")
    for i, out in enumerate(outs):
        out_name = f"{outs_name}[{i}]"
        floating(out, out_name)
        if one_group and out.dtype != outs[0].dtype:
            raise TypeError(f"{out_name} has dtype {out.dtype} but {outs_name}[0] has dtype {outs[0].dtype}")
        if one_group and out.device != outs[0].device:
            raise RuntimeError(f"{out_name} is on {out.device} but {outs_name}[0] is on {outs[0].device}")
        contiguous(out, out_name)
        for tensors, name, shared in inputs:
            j = 0 if shared else i
            floating(tensors[j], f"{name}[{j}]")
            contiguous(tensors[j], f"{name}[{j}]")
            same(tensors[j], f"{name}[{j}]", out, out_name)
    if aliasing:
        _multi_aliasing(outs, outs_name, inputs)


def _multi_aliasing(outs, outs_name: str, inputs) -> None:
    """Outputs pairwise disjoint; an input may overlap only its own output, and
    only by being exactly the same memory (a shared input: no output at all).
    Sorted spans and binary search, as csrc/checks.cpp: O(n log n)."""
    spans = []
    for i, o in enumerate(outs):
        s = _span(o)
        if s is not None:
            spans.append((s[0], s[1], s[2], i))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if _overlap(a, b):
            raise RuntimeError(f"{outs_name}[{a[3]}] and {outs_name}[{b[3]}] overlap: "
                               "every output must be written exactly once")
    # Within one memory the outputs are disjoint and sorted, so their ends are
    # sorted too: the outputs overlapping [begin, end) are a run starting at the
    # first one whose end is past begin.
    ends = [(s[0], s[2]) for s in spans]
    for tensors, name, shared in inputs:
        for j, t in enumerate(tensors):
            s = _span(t)
            if s is None:
                continue
            k = bisect_right(ends, (s[0], s[1]))
            while k < len(spans) and spans[k][0] == s[0] and spans[k][1] < s[2]:
                o = spans[k]
                if shared or o[3] != j or o[1] != s[1] or o[2] != s[2]:
                    reason = ("a shared input may not be written by the same call" if shared
                              else "an input may alias only its own output, exactly")
                    raise RuntimeError(f"{name}[{j}] overlaps {outs_name}[{o[3]}]: {reason}")
                k += 1


def _shared_range(value: float, name: str, targets) -> None:
    """scalar_range for one scalar applied to every target (of one or several dtypes)."""
    if targets and not all([t.dtype is torch.float64 for t in targets]):
        scalar_range(value, name, next(t.dtype for t in targets if t.dtype is not torch.float64))


def _per_target_range(values: Sequence[float], name: str, targets) -> None:
    """scalar_range for a per-target list (or one shared value) over targets
    that may span several dtypes."""
    if len(values) == 1:
        _shared_range(values[0], f"{name}[0]", targets)
        return
    for k, (v, t) in enumerate(zip(values, targets)):
        scalar_range(v, f"{name}[{k}]", t.dtype)


def multi_axpby(outs, xs, ys, one_group: bool = True, aliasing: bool = True, a: float = 0.0,
                b: float = 0.0) -> None:
    if len(xs) != len(outs):
        raise ValueError(f"xs has {len(xs)} tensors but outs has {len(outs)}")
    if len(ys) != len(outs):
        raise ValueError(f"ys has {len(ys)} tensors but outs has {len(outs)}")
    multi(outs, "outs", [(xs, "xs"), (ys, "ys")], one_group, aliasing)
    _shared_range(a, "a", outs)
    _shared_range(b, "b", outs)


def multi_blend(targets, sources, alphas, one_group: bool = True, aliasing: bool = True,
                alphas_name: str = "alphas", shared_source: bool = False) -> None:
    if len(sources) == 0 and len(targets) > 0:
        raise ValueError("sources must not be empty")
    if not (len(alphas) == 1 or len(alphas) == len(targets)):
        raise ValueError(
            f"{alphas_name} has {len(alphas)} entries but targets has {len(targets)} (give one, or one per target)"
        )
    multi(targets, "targets", [(sources, "sources", shared_source)], one_group, aliasing)
    _per_target_range(alphas, alphas_name, targets)


def blend_noise(x, best, weight: float, noise_scale: float, aliasing: bool = True) -> None:
    finite(weight, "weight")
    finite(noise_scale, "noise_scale")
    floating(x, "x")
    same(best, "best", x, "x")
    contiguous(x, "x")
    contiguous(best, "best")
    if aliasing:
        out_alias(x, best, "best", "x")
    scalar_range(weight, "weight", x.dtype)
    scalar_range(noise_scale, "noise_scale", x.dtype)


def multi_blend_noise(targets, sources, weights, noise_scale: float, streams, one_group: bool = True,
                      aliasing: bool = True, shared_source: bool = False) -> None:
    if len(streams) != len(targets):
        raise ValueError(f"streams has {len(streams)} entries but targets has {len(targets)} (give one per target)")
    for k, w in enumerate(weights):
        finite(w, f"weights[{k}]")
    finite(noise_scale, "noise_scale")
    multi_blend(targets, sources, weights, one_group, aliasing, alphas_name="weights", shared_source=shared_source)
    _shared_range(noise_scale, "noise_scale", targets)


# ------------------------------------------------------------- user-facing arguments
# The one place that decides what a number, a probability and a positive int are, for
# every layer above the ops (particles, swarm, train). bool is never a number here.

def number(value, name: str, *, finite: bool = True, minimum: float | None = None,
           tensor: bool = False, type_error: type = TypeError) -> float:
    """``value`` as a float: a real number (a one-element tensor too when ``tensor``),
    finite when ``finite``, ``>= minimum`` when given. Raises ``type_error`` for a
    value that is not a number and ValueError for one out of range, naming ``name``."""
    if tensor and isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def probability(value, name: str, *, open_interval: bool = True) -> float:
    """``value`` as a float in (0, 1) (``open_interval``) or [0, 1]."""
    value = number(value, name)
    if not (0.0 < value < 1.0 if open_interval else 0.0 <= value <= 1.0):
        interval = "the open interval (0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


def positive_int(value, name: str, *, minimum: int = 1, type_error: type = TypeError) -> int:
    """``value`` as an int ``>= minimum`` (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise type_error(f"{name} must be an int >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)
