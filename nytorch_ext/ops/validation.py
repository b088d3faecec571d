"""The one place that states the fused ops' argument rules in Python.

Three kinds of rule live here:

* The kernels' rules (dtype, device, shape, contiguity, aliasing, scalar ranges,
  list lengths), run by the pure-PyTorch fallback and the fake implementations.
  They agree with csrc/checks.cpp and csrc/ops.cpp: the same exception types, the
  same argument named first in the messages, checked in the same order, and every
  check runs before any write (tests/ops/test_ops_agreement.py holds both sides to
  it).
* The argument conversions of the public functions (``scalar``, ``scalar_list``,
  ``tensor``, ``tensor_list``, ``int64_bits``, ...): what the C++ side cannot do
  (the dispatcher's own errors do not name the caller's argument).
* The user-facing helpers of every layer above the ops: ``number``,
  ``probability``, ``positive_int``.

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
from typing import Any, Callable, Iterable, Sequence

import torch
from torch._subclasses.fake_tensor import is_fake

from .philox import uint64_bits

Tensor = torch.Tensor
FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
FLOAT32_MAX = torch.finfo(torch.float32).max
_INT64_MAX = (1 << 63) - 1

# (value, name) of a scalar argument, checked against its tensors' dtype.
NamedScalar = tuple[float, str]


# ------------------------------------------------------- tensors, one at a time

def tensor(value: Any, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
    return value


def floating(t: Any, name: str) -> None:
    if not isinstance(t, Tensor):
        tensor(t, name)  # raises, naming the argument
    if t.dtype not in FLOATING:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")


def same(t: Any, name: str, ref: Tensor, ref_name: str) -> None:
    floating(t, name)
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}")
    if t.device != ref.device:
        raise RuntimeError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")
    if t.shape != ref.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but {ref_name} has shape {tuple(ref.shape)}")


def contiguous(t: Tensor, name: str) -> None:
    if not t.is_contiguous():
        raise RuntimeError(
            f"{name} must be contiguous (call .contiguous() first); in-place, out= and list forms never copy"
        )


def inplace_target(t: Any, name: str) -> Tensor:
    """The tensor an in-place form writes. The kernels check their ``out`` before
    the inputs' contiguity and would call a non-contiguous target "out": checked
    here first, under the caller's name for it."""
    floating(t, name)
    contiguous(t, name)
    return t


# --------------------------------------------------------------------- scalars

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


def _scalar_ranges(scalars: Iterable[NamedScalar], dtype: torch.dtype) -> None:
    for value, name in scalars:
        scalar_range(value, name, dtype)


def _shared_range(value: float, name: str, targets: Sequence[Tensor]) -> None:
    """scalar_range for one scalar applied to every target (of one or several dtypes)."""
    if targets and not all([t.dtype is torch.float64 for t in targets]):
        scalar_range(value, name, next(t.dtype for t in targets if t.dtype is not torch.float64))


def _per_target_range(values: Sequence[float], name: str, targets: Sequence[Tensor]) -> None:
    """scalar_range for a per-target list (or one shared value) over targets
    that may span several dtypes."""
    if len(values) == 1:
        _shared_range(values[0], f"{name}[0]", targets)
        return
    for k, (v, t) in enumerate(zip(values, targets)):
        scalar_range(v, f"{name}[{k}]", t.dtype)


# ------------------------------------------------------------------- gradients

def constant_tensor(value: Tensor, name: str) -> None:
    """A tensor given as a coefficient is taken as a constant: one that requires
    grad (with grad mode on) would silently get no gradient, so it is an error."""
    if value.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(f"{name} is a tensor that requires grad, but the ops take their coefficients as "
                           f"constants (no gradient would reach it): pass {name}.detach() or a number")


def not_differentiable(op: str, named: Iterable[tuple[Any, str]], allocating_forms: Sequence[str]) -> None:
    """The out=, in-place and list forms have no derivative: with grad mode on,
    any tensor of theirs that requires grad is an error naming it, checked in
    argument order (as the compiled ops' Autograd kernel does, csrc/ops.cpp).
    ``named``: ``(argument, name)`` pairs; tensors and lists of tensors are
    checked, other arguments skipped. ``allocating_forms``: the differentiable
    ops, suggested instead."""
    if not torch.is_grad_enabled():
        return
    for value, name in named:
        if isinstance(value, Tensor):
            if value.requires_grad:
                _requires_grad_error(op, name, allocating_forms)
        elif isinstance(value, (list, tuple)) and any([isinstance(t, Tensor) and t.requires_grad for t in value]):
            i = next(i for i, t in enumerate(value) if isinstance(t, Tensor) and t.requires_grad)
            _requires_grad_error(op, f"{name}[{i}]", allocating_forms)


def _requires_grad_error(op: str, name: str, allocating_forms: Sequence[str]):
    raise RuntimeError(
        f"{name} requires grad, but nytorch_ext::{op} (an out=, in-place or list form) does not support "
        "automatic differentiation: call it under torch.no_grad(), or use the allocating "
        f"form ({', '.join(allocating_forms)})"
    )


# ------------------------------------------------------------------- aliasing

Span = tuple[Any, int, int]


def _span(t: Tensor) -> Span | None:
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
    begin = address(t)
    return (t.device.type, -1 if t.device.index is None else t.device.index), begin, begin + n * size


_data_address: Callable[[Tensor], int] | None = getattr(torch._C, "_data_address", None)


def address(t: Tensor) -> int:
    """Where ``t``'s first element is, read without a write access: ``data_ptr()``
    would first give a copy-on-write tensor (a lazy product's snapshot, or the
    particle it was taken from) memory of its own, a copy and a new address."""
    if _data_address is None:
        return t.data_ptr()
    return _data_address(t) + int(t.storage_offset()) * t.element_size() if t.numel() else 0


def _overlap(a: Sequence, b: Sequence) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def overlaps(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors share any memory (both non-empty)."""
    sa, sb = _span(a), _span(b)
    return sa is not None and sb is not None and _overlap(sa, sb)


def out_alias(out: Tensor, inp: Tensor, in_name: str, out_name: str = "out") -> None:
    """``out`` may be exactly ``inp`` or disjoint from it."""
    o, i = _span(out), _span(inp)
    if o is not None and i is not None and _overlap(o, i) and o != i:
        raise RuntimeError(
            f"{out_name} partially overlaps {in_name}: an output may be the very same memory as an input, "
            "or disjoint from it"
        )


def same_memory(a: Tensor, b: Tensor) -> bool:
    sa = _span(a)
    return sa is not None and sa == _span(b)


# ------------------------------------------------- the single-output forms
# "pair": out = f(x, y); "combination": out = sum_k coeffs[k]*tensors[k] + bias.
# The allocating forms (``*_result``) accept non-contiguous inputs (they copy
# them once) and write a fresh tensor, so only the input rules apply.

def pair_result(x: Any, y: Any, *scalars: NamedScalar) -> None:
    floating(x, "x")
    same(y, "y", x, "x")
    _scalar_ranges(scalars, x.dtype)


def pair_out(out: Any, x: Any, y: Any, *scalars: NamedScalar, aliasing: bool = True) -> None:
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
    _scalar_ranges(scalars, x.dtype)


def coefficient_count(coeffs: Sequence[float], tensors: Sequence[Any]) -> None:
    if len(coeffs) == 0:
        raise ValueError("coeffs must not be empty")
    if len(coeffs) != len(tensors):
        raise ValueError(f"coeffs has {len(coeffs)} entries but tensors has {len(tensors)}")
    floating(tensors[0], "tensors[0]")


def _coefficient_ranges(coeffs: Sequence[float], bias: float, dtype: torch.dtype) -> None:
    for k, c in enumerate(coeffs):
        scalar_range(c, f"coeffs[{k}]", dtype)
    scalar_range(bias, "bias", dtype)


def combination_result(coeffs: Sequence[float], tensors: Sequence[Any], bias: float = 0.0) -> None:
    coefficient_count(coeffs, tensors)
    for k, t in enumerate(tensors):
        same(t, f"tensors[{k}]", tensors[0], "tensors[0]")
    _coefficient_ranges(coeffs, bias, tensors[0].dtype)


def combination_out(out: Any, coeffs: Sequence[float], tensors: Sequence[Any], bias: float = 0.0,
                    aliasing: bool = True) -> None:
    coefficient_count(coeffs, tensors)
    for k, t in enumerate(tensors):
        same(t, f"tensors[{k}]", tensors[0], "tensors[0]")
        contiguous(t, f"tensors[{k}]")
    same(out, "out", tensors[0], "tensors[0]")
    contiguous(out, "out")
    if aliasing:
        out_name = "tensors[0]" if same_memory(out, tensors[0]) else "out"
        for k, t in enumerate(tensors):
            out_alias(out, t, f"tensors[{k}]", out_name)
    _coefficient_ranges(coeffs, bias, tensors[0].dtype)


def noisy_target(x: Any, best: Any, weight: float, noise_scale: float, aliasing: bool = True) -> None:
    """x <- lerp(x, best, weight) + noise_scale * z, in place."""
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


# --------------------------------------------------------------- the list forms

def lists(
    outs: Sequence[Any],
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
        _lists_aliasing(outs, outs_name, inputs)


def _lists_aliasing(outs: Sequence[Tensor], outs_name: str, inputs: Sequence[tuple]) -> None:
    """Outputs pairwise disjoint; an input may overlap only its own output, and
    only by being exactly the same memory (a shared input: no output at all).
    Sorted spans and binary search, as csrc/checks.cpp: O(n log n)."""
    spans = []
    for i, out in enumerate(outs):
        s = _span(out)
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


def pair_lists(outs: Sequence[Any], xs: Sequence[Any], ys: Sequence[Any], a: float = 0.0, b: float = 0.0,
               one_group: bool = True, aliasing: bool = True) -> None:
    """outs[i] <- f(xs[i], ys[i]) with the scalars ``a`` and ``b``."""
    if len(xs) != len(outs):
        raise ValueError(f"xs has {len(xs)} tensors but outs has {len(outs)}")
    if len(ys) != len(outs):
        raise ValueError(f"ys has {len(ys)} tensors but outs has {len(outs)}")
    lists(outs, "outs", [(xs, "xs"), (ys, "ys")], one_group, aliasing)
    _shared_range(a, "a", outs)
    _shared_range(b, "b", outs)


def target_lists(targets: Sequence[Any], sources: Sequence[Any], weights: Sequence[float],
                 shared_source: bool = False, one_group: bool = True, aliasing: bool = True,
                 weights_name: str = "alphas") -> None:
    """targets[i] <- lerp(targets[i], sources[i] (or the shared sources[0]), weights[i] (or weights[0]))."""
    if len(sources) == 0 and len(targets) > 0:
        raise ValueError("sources must not be empty")
    if not (len(weights) == 1 or len(weights) == len(targets)):
        raise ValueError(
            f"{weights_name} has {len(weights)} entries but targets has {len(targets)} (give one, or one per target)"
        )
    lists(targets, "targets", [(sources, "sources", shared_source)], one_group, aliasing)
    _per_target_range(weights, weights_name, targets)


def noisy_target_lists(targets: Sequence[Any], sources: Sequence[Any], weights: Sequence[float],
                       noise_scale: float, streams: Sequence[int], shared_source: bool = False,
                       one_group: bool = True, aliasing: bool = True) -> None:
    """target_lists plus noise_scale * z_i, z_i drawn from streams[i]."""
    if len(streams) != len(targets):
        raise ValueError(f"streams has {len(streams)} entries but targets has {len(targets)} (give one per target)")
    for k, w in enumerate(weights):
        finite(w, f"weights[{k}]")
    finite(noise_scale, "noise_scale")
    target_lists(targets, sources, weights, shared_source, one_group, aliasing, weights_name="weights")
    _shared_range(noise_scale, "noise_scale", targets)


def scaled_lists(targets: Sequence[Any], scales: Sequence[float], one_group: bool = True,
                 aliasing: bool = True) -> None:
    """targets[i] <- scales[i] (or the shared scales[0]) * targets[i]."""
    if not (len(scales) == 1 or len(scales) == len(targets)):
        raise ValueError(f"scales has {len(scales)} entries but targets has {len(targets)} (give one, or one per target)")
    lists(targets, "targets", [], one_group, aliasing)
    _per_target_range(scales, "scales", targets)


# ------------------------------------------- the public functions' arguments
# The C++ ops cannot do these: the dispatcher converts Python arguments itself, and
# its errors do not name the caller's argument.

def scalar(value: Any, name: str) -> float:
    """A coefficient of the ops: a real number or a one-element real tensor that
    does not require grad (a constant). :func:`number` with the ops' rules, and a
    fast path for the common case, a float."""
    if type(value) is float:
        return value
    return number(value, name, finite=False, tensor=True, constant=True)


def scalar_list(values: Any, name: str, each: Callable[[Any, str], Any] = scalar,
                what: str = "numbers") -> list:
    """A sequence (or tensor, ndarray) of ``what``, each converted by ``each``."""
    if type(values) in (list, tuple):  # the common cases: no per-entry checks, no names built
        if each is scalar and all([type(v) is float for v in values]):
            return list(values)
        if each is int64_bits and all([type(v) is int and 0 <= v <= _INT64_MAX for v in values]):
            return list(values)
    if hasattr(values, "tolist") and not isinstance(values, (str, bytes)):  # tensor, ndarray
        if isinstance(values, Tensor):
            constant_tensor(values, name)
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of {what}, got {type(values).__name__}")
    return [each(v, f"{name}[{i}]") for i, v in enumerate(values)]


def one_or_many(values: Any, name: str) -> list[float]:
    """One number, or a sequence (or 1-D tensor) of them, as a list of floats."""
    if (isinstance(values, Sequence) or hasattr(values, "tolist")) and getattr(values, "ndim", 1) != 0:
        return scalar_list(values, name)
    return [scalar(values, name)]


def tensor_list(values: Any, name: str) -> list[Tensor]:
    if isinstance(values, Tensor) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list or tuple of tensors, got {type(values).__name__}")
    values = list(values)
    if not all([isinstance(t, Tensor) for t in values]):
        i = next(i for i, t in enumerate(values) if not isinstance(t, Tensor))
        raise TypeError(f"{name}[{i}] must be a tensor, got {type(values[i]).__name__}")
    return values


def shared_or_list(source: Any, name: str) -> tuple[list[Tensor], bool]:
    """One tensor shared by every target (as a one-entry list, and True), or a
    list with one tensor per target (and False)."""
    if isinstance(source, Tensor):
        return [source], True
    return tensor_list(source, name), False


def int64_bits(value: Any, name: str) -> int:
    """A 64-bit seed or stream: an int in [-2**63, 2**64), returned as the int64
    with the same bits (what the ops take)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    bits = uint64_bits(int(value), name)
    return bits - (1 << 64) if bits > _INT64_MAX else bits


# ------------------------------------------------------------- user-facing arguments
# The one place that decides what a number, a probability and a positive int are, for
# every layer above the ops (particles, swarm, train). bool is never a number here.

def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number by these rules (bool is not): a yes/no for
    callers that choose a path by it, as a particle's operators do."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(value: Any, name: str, *, finite: bool = True, minimum: float | None = None,
           tensor: bool = False, type_error: type[Exception] = TypeError, constant: bool = False,
           expected: str | None = None) -> float:
    """``value`` as a float: a real number (a one-element real tensor too when
    ``tensor``), finite when ``finite``, ``>= minimum`` when given. Raises
    ``type_error`` for a value that is not a number and ValueError for one out of
    range, naming ``name``; ``expected`` (e.g. ``"a finite number >= 0"``) words every
    rejection as ``"<name> must be <expected>, got <value>"``. With ``constant``, a
    tensor that requires grad (grad mode on) is a RuntimeError: its value is taken, so
    no gradient would reach it."""
    if tensor and isinstance(value, Tensor) and value.numel() == 1:
        if constant:
            constant_tensor(value, name)
        value = value.item()
    if not is_real(value):
        raise type_error(_must(name, expected, value, f"a real number, got {type(value).__name__}"))
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(_must(name, expected, value, f"finite, got {value}"))
    if minimum is not None and not value >= minimum:
        raise ValueError(_must(name, expected, value, f">= {minimum}, got {value}"))
    return value


def _must(name: str, expected: str | None, value: Any, default: str) -> str:
    return f"{name} must be {expected}, got {value!r}" if expected else f"{name} must be {default}"


def probability(value: Any, name: str, *, open_interval: bool = True) -> float:
    """``value`` as a float in (0, 1) (``open_interval``) or [0, 1]."""
    value = number(value, name)
    if not (0.0 < value < 1.0 if open_interval else 0.0 <= value <= 1.0):
        interval = "the open interval (0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


def positive_int(value: Any, name: str, *, minimum: int = 1, type_error: type[Exception] = TypeError,
                 expected: str | None = None) -> int:
    """``value`` as an int ``>= minimum`` (bool is not an int here); ``expected`` words
    every rejection, as in :func:`number`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise type_error(_must(name, expected, value, f"an int >= {minimum}, got {type(value).__name__}"))
    if value < minimum:
        raise ValueError(_must(name, expected, value, f"an int >= {minimum}, got {value}"))
    return int(value)
