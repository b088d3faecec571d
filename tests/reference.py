"""Shared test helpers: float64 references, input factories and comparisons.

Every reference is computed in float64 from the very same inputs with the same
formula as the kernels, and returns ``(value, magnitude)``: ``magnitude`` is the
element-wise sum of the absolute values of the terms, the scale that rounding
errors are relative to (so cancellation does not make the check flaky).
:func:`assert_matches` compares a result with the reference rounded to the
result's dtype.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import pytest
import torch

from nytorch_ext import ops
from nytorch_ext.ops import registry

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SIZES = [0, 1, 3, 4, 5, 127, 65535, 65536, 65537, 1_000_003]

# Relative tolerance per dtype, applied to |reference| + magnitude (so at least
# two units in the last place of the result).
TOL = {
    torch.float32: 1e-6,
    torch.float64: 1e-12,
    torch.float16: 1e-3,
    torch.bfloat16: 1e-2,
}

# Same-width integer dtypes, for bit-exact comparisons.
_BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}

# A dtype that differs from the given one, for dtype-mismatch inputs.
OTHER_DTYPE = {
    torch.float32: torch.float64,
    torch.float64: torch.float32,
    torch.float16: torch.bfloat16,
    torch.bfloat16: torch.float16,
}


def dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# ------------------------------------------------------------------ backends

BACKENDS = ["compiled", "fallback"]

# The ops of the registry that have a pure-PyTorch implementation: the ones the
# backend fixture swaps.
FALLBACK_OPS = [op for op in registry.OPS if op.python_impl is not None]


def require_compiled() -> bool:
    """NYTORCH_EXT_REQUIRE_COMPILED=1 (as the README's test command sets) turns a
    missing compiled extension from a skip into a failure."""
    return os.environ.get("NYTORCH_EXT_REQUIRE_COMPILED", "").strip() not in ("", "0")


def use_backend(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Route nytorch_ext.ops to the named backend for the rest of the test."""
    if name == "compiled":
        if not ops.is_compiled():
            why = f"compiled kernels not loaded: {ops.backend_info()['load_error']}"
            if require_compiled():
                pytest.fail(f"NYTORCH_EXT_REQUIRE_COMPILED is set but the {why}")
            pytest.skip(why)
        return
    assert name == "fallback", name
    for op in FALLBACK_OPS:
        monkeypatch.setattr(ops._impl, op.name, op.python_impl)


# ------------------------------------------------------------------- inputs

def make(shape, dtype, *, seed: int = 0, device="cpu", offset: int = 0,
         scale: float = 1.0) -> torch.Tensor:
    """Standard-normal values (drawn in float64, then rounded to ``dtype``).

    With ``offset`` the tensor is the view ``buf[offset:offset + numel]`` of a
    larger buffer, so its data pointer is ``offset`` elements past an allocation
    (unaligned for any vector width when ``offset`` is odd)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    numel = math.prod(shape)
    g = torch.Generator().manual_seed(seed)
    buf = (torch.randn(numel + offset, generator=g, dtype=torch.float64) * scale).to(dtype)
    buf = buf.to(device)
    t = buf[offset:offset + numel].view(shape)
    assert t.storage_offset() == offset
    return t


def make_list(sizes: Sequence[int], dtype, *, seed: int = 0, device="cpu",
              offset: int = 0) -> list[torch.Tensor]:
    """One separately allocated tensor per size (``offset`` elements into its
    allocation), with different values."""
    pool = make(sum(sizes), dtype, seed=seed, device=device)
    return [place(chunk, offset) for chunk in pool.split(list(sizes))]


def place(t: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """A contiguous copy of ``t`` that starts ``offset`` elements into a fresh
    allocation."""
    buf = torch.empty(t.numel() + offset, dtype=t.dtype, device=t.device)
    view = buf[offset:].view(t.shape)
    view.copy_(t)
    return view


def list_sizes(count: int) -> list[int]:
    """``count`` deterministic mixed sizes: empties, sub-vector sizes, vector
    body plus tail, and one tensor longer than the CPU list kernels' parallel grain
    (131072 elements), so a task boundary falls inside it (lists >= 12)."""
    pattern = [3, 0, 1, 127, 4, 5, 31, 17, 300, 0, 8, 1000]
    sizes = [pattern[i % len(pattern)] for i in range(count)]
    if count >= 12:
        sizes[5] = 131073
        sizes[-1] = 0
    return sizes


def carve(sizes: Sequence[int], dtype, *, device="cpu", offset: int = 1,
          fill: float = float("nan")) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Back-to-back views of one buffer (adjacent but disjoint), starting
    ``offset`` elements into it. Returns (buffer, views)."""
    buf = torch.full((sum(sizes) + offset + 1,), fill, dtype=dtype, device=device)
    views, start = [], offset
    for n in sizes:
        views.append(buf[start:start + n])
        start += n
    return buf, views


def no_zeros(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its zeros (values that underflowed, possibly to -0.0) set to 1,
    in place; for the bit-exact end-point checks (see the signed-zero test)."""
    t[t == 0] = 1
    return t


def specials(n: int, dtype, *, seed: int, device="cpu") -> torch.Tensor:
    """Random values with Inf, -Inf and NaN at the start, in the vector body and
    in the scalar tail."""
    t = make(n, dtype, seed=seed, device=device)
    values = [math.inf, -math.inf, math.nan, 1.0, -2.0]
    for k, pos in enumerate(range(seed % 3, n, 7)):
        t[pos] = values[(k + seed) % len(values)]
    return t


# --------------------------------------------------------------- references

def f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


def ref_axpby(a: float, x, b: float, y):
    x, y = f64(x), f64(y)
    return a * x + b * y, abs(a) * x.abs() + abs(b) * y.abs()


def ref_blend(x, y, w: float):
    """The two-sided lerp, torch.lerp's formula: exact at w == 0 and w == 1."""
    x, y = f64(x), f64(y)
    diff = y - x
    value = x + w * diff if abs(w) < 0.5 else y - diff * (1.0 - w)
    return value, (x.abs() + y.abs()) * (1.0 + abs(w))


def ref_lincomb(coeffs: Sequence[float], tensors: Sequence[torch.Tensor], bias: float = 0.0):
    acc = coeffs[0] * f64(tensors[0])
    mag = abs(coeffs[0]) * f64(tensors[0]).abs()
    for c, t in zip(coeffs[1:], tensors[1:]):
        acc = acc + c * f64(t)
        mag = mag + abs(c) * f64(t).abs()
    return acc + bias, mag + abs(bias)


def ref_scale(s: float, x):
    x = f64(x)
    return s * x, abs(s) * x.abs()


# -------------------------------------------------------------- comparisons

def assert_matches(result: torch.Tensor, expected, dtype=None, *, factor: float = 1.0,
                   what: str = "result") -> None:
    """``result`` equals the float64 reference ``expected = (value, magnitude)``
    rounded to ``dtype``: NaN exactly where the reference is NaN, the same
    infinities, and finite values within ``TOL[dtype] * factor`` of
    ``|reference| + magnitude``."""
    ref, mag = expected
    dtype = dtype or result.dtype
    assert result.dtype == dtype, f"{what}: dtype {result.dtype}, expected {dtype}"
    assert tuple(result.shape) == tuple(ref.shape), (
        f"{what}: shape {tuple(result.shape)}, expected {tuple(ref.shape)}")
    res = f64(result).reshape(-1)
    ref = ref.to(dtype).to(torch.float64).reshape(-1)  # rounded to the dtype once
    mag = mag.reshape(-1)
    nan = ref.isnan()
    if not torch.equal(res.isnan(), nan):
        idx = (res.isnan() != nan).nonzero()[0].item()
        raise AssertionError(f"{what}: NaN mismatch at {idx}: got {res[idx].item()}, "
                             f"expected {ref[idx].item()}")
    inf = ref.isinf()
    if not torch.equal(res[inf], ref[inf]):
        idx = (inf & (res != ref)).nonzero()[0].item()
        raise AssertionError(f"{what}: infinity mismatch at {idx}: got {res[idx].item()}, "
                             f"expected {ref[idx].item()}")
    finite = ~(nan | inf)
    tol = TOL[dtype] * factor
    bound = tol * (ref.abs() + mag) + torch.finfo(dtype).tiny
    bad = finite & ~((res - ref).abs() <= bound)
    if bad.any():
        idx = bad.nonzero()[0].item()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {res.numel()} elements off; first at {idx}: "
            f"got {res[idx].item()!r}, expected {ref[idx].item()!r} "
            f"(|diff| {abs(res[idx] - ref[idx]).item():.3g} > bound {bound[idx].item():.3g})")


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of a floating tensor (so NaN == NaN and -0.0 != 0.0); other
    dtypes as they are."""
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.view(_BITS[t.dtype]) if t.dtype in _BITS else t


def assert_bitwise_equal(a: torch.Tensor, b: torch.Tensor, what: str = "result") -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    if not torch.equal(bits(a).cpu(), bits(b).cpu()):
        idx = (bits(a).cpu() != bits(b).cpu()).reshape(-1).nonzero()[0].item()
        raise AssertionError(f"{what}: not bit-identical at {idx}: "
                             f"{a.reshape(-1)[idx].item()!r} vs {b.reshape(-1)[idx].item()!r}")


def snapshot(tensors) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Clones of every (non-meta) tensor, to check later that nothing was written."""
    return [(t, t.clone()) for t in tensors
            if isinstance(t, torch.Tensor) and t.device.type != "meta"]


def assert_unchanged(snap) -> None:
    for k, (t, before) in enumerate(snap):
        assert torch.equal(bits(t), bits(before)), f"tensor #{k} was modified by a rejected call"


# ---------------------------------------------------- the ops, uniformly

class OpSpec:
    """One op with fixed scalars, as functions of its list of input tensors:
    ``alloc(inputs)``, ``out(inputs, out)``, ``inplace(inputs)`` (writes
    ``inputs[0]``) and ``ref(inputs)`` (the float64 reference)."""

    def __init__(self, name, arity, alloc, out, inplace, ref, factor=1.0):
        self.name, self.arity = name, arity
        self.alloc, self.out, self.inplace, self.ref = alloc, out, inplace, ref
        self.factor = factor  # tolerance factor: longer sums round more often

    def __repr__(self):
        return self.name


def axpby_spec(a: float, b: float) -> OpSpec:
    return OpSpec(
        f"axpby({a},{b})", 2,
        lambda t: ops.axpby(a, t[0], b, t[1]),
        lambda t, out: ops.axpby(a, t[0], b, t[1], out=out),
        lambda t: ops.axpby_(a, t[0], b, t[1]),
        lambda t: ref_axpby(a, t[0], b, t[1]),
    )


def blend_spec(w: float) -> OpSpec:
    return OpSpec(
        f"blend({w})", 2,
        lambda t: ops.blend(t[0], t[1], w),
        lambda t, out: ops.blend(t[0], t[1], w, out=out),
        lambda t: ops.blend_(t[0], t[1], w),
        lambda t: ref_blend(t[0], t[1], w),
    )


def lincomb_coeffs(k: int) -> list[float]:
    """K deterministic coefficients of both signs, mostly not representable."""
    return [((-1) ** j) * (0.3 + 0.37 * j) for j in range(k)]


def lincomb_spec(k: int, bias: float = -0.375) -> OpSpec:
    coeffs = lincomb_coeffs(k)
    return OpSpec(
        f"lincomb(K={k})", k,
        lambda t: ops.lincomb(coeffs, t, bias),
        lambda t, out: ops.lincomb(coeffs, t, bias, out=out),
        lambda t: ops.lincomb_(coeffs, t, bias),
        lambda t: ref_lincomb(coeffs, t, bias),
        factor=max(1.0, k / 4),
    )


# Both blend branches: |w| < 0.5 runs x + w*(y-x), |w| >= 0.5 runs y - (y-x)*(1-w).
OPS = [axpby_spec(1.75, -0.3), blend_spec(0.3), blend_spec(0.7), lincomb_spec(3)]


# ------------------------------------------------------------ checks by form

NAN = float("nan")


def inputs_for(op, shape, dtype, *, seed=0, offsets=None, device="cpu"):
    """``op.arity`` input tensors, ``offsets[k]`` elements into their allocations."""
    offsets = offsets or [0] * op.arity
    return [make(shape, dtype, seed=seed + 101 * k, offset=offsets[k], device=device)
            for k in range(op.arity)]


def check_forms(op, inputs, dtype, *, out_offset=0, what=""):
    """The allocating, out= and in-place forms of ``op`` on ``inputs`` all match
    the reference, return what they should, and leave the inputs unmodified."""
    expected = op.ref(inputs)
    before = snapshot(inputs)

    result = op.alloc(inputs)
    assert_matches(result, expected, dtype, factor=op.factor, what=f"{what} allocating")
    assert result.is_contiguous()
    assert result.device == inputs[0].device
    assert_unchanged(before)

    out = place(torch.full(inputs[0].shape, NAN, dtype=dtype, device=inputs[0].device), out_offset)
    returned = op.out(inputs, out)
    assert returned is out
    assert_matches(out, expected, dtype, factor=op.factor, what=f"{what} out=")
    assert_unchanged(before)

    # In place: the target keeps the first input's offset into its allocation.
    target = place(inputs[0], inputs[0].storage_offset())
    ptr = target.data_ptr()
    returned = op.inplace([target] + list(inputs[1:]))
    assert returned is target and target.data_ptr() == ptr
    assert_matches(target, expected, dtype, factor=op.factor, what=f"{what} in-place")
    assert_unchanged(before)


def assert_list_matches(results, expected_parts, dtype, what="list"):
    """results[i] matches expected_parts[i] = (value, magnitude), checked at once."""
    assert len(results) == len(expected_parts)
    for r, (v, _) in zip(results, expected_parts):
        assert r.shape == v.shape and r.dtype == dtype, what
    value = torch.cat([v.reshape(-1) for v, _ in expected_parts])
    mag = torch.cat([m.reshape(-1) for _, m in expected_parts])
    flat_result = torch.cat([r.reshape(-1) for r in results]) if results else torch.empty(0, dtype=dtype)
    assert_matches(flat_result, (value, mag), dtype, what=what)


ENDPOINT_FORMS = ["alloc", "out", "inplace", "multi-shared", "multi-list", "multi-alphas"]


def blend_at(form, x, y, w):
    """blend(x, y, w) computed by one of the ENDPOINT_FORMS (x and y untouched)."""
    if form == "alloc":
        return ops.blend(x, y, w)
    if form == "out":
        return ops.blend(x, y, w, out=torch.empty_like(x))
    if form == "inplace":
        return ops.blend_(place(x, x.storage_offset()), y, w)
    if form == "multi-shared":  # shared source and shared alpha
        t = [place(x, x.storage_offset()), x.clone()]
        ops.multi_blend_(t, y, w)
        return t[0]
    if form == "multi-list":  # per-target sources, shared alpha
        t = [x.clone(), place(x, 1)]
        ops.multi_blend_(t, [y, y.clone()], w)
        return t[1]
    if form == "multi-alphas":  # per-target alphas, the others in between
        t = [x.clone(), place(x, 1), x.clone()]
        ops.multi_blend_(t, y, [0.5, w, 0.25])
        return t[1]
    raise AssertionError(form)
