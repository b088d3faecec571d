"""Property tests: random sizes, dtypes, finite coefficients, alphas in [0, 1],
offsets and forms, each against the float64 reference, on both backends."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nytorch_ext import ops
from reference import (
    DTYPES, assert_bitwise_equal, assert_matches, assert_unchanged, axpby_spec, blend_spec, make,
    make_list, no_zeros, place, ref_blend, ref_axpby, ref_lincomb, snapshot,
)

# The backend fixture (monkeypatch) is function-scoped; it is the same for every
# example of one test, which is what we want.
SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

dtypes = st.sampled_from(DTYPES)
sizes = st.one_of(st.integers(0, 70), st.integers(0, 3000), st.sampled_from([65535, 65536, 65537]))
offsets = st.integers(0, 3)
coefficients = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)
alphas = st.floats(0.0, 1.0)
seeds = st.integers(0, 2**31 - 1)
forms = st.sampled_from(["alloc", "out", "inplace"])


def run(op, form, inputs, out_offset):
    if form == "alloc":
        return op.alloc(inputs)
    if form == "out":
        out = place(torch.empty_like(inputs[0]), out_offset)
        assert op.out(inputs, out) is out
        return out
    target = place(inputs[0], inputs[0].storage_offset())
    assert op.inplace([target, *inputs[1:]]) is target
    return target


@SETTINGS
@given(dtype=dtypes, n=sizes, a=coefficients, b=coefficients, x_off=offsets, y_off=offsets,
       out_off=offsets, form=forms, seed=seeds)
def test_axpby_property(backend, dtype, n, a, b, x_off, y_off, out_off, form, seed):
    op = axpby_spec(a, b)
    inputs = [make(n, dtype, seed=seed, offset=x_off), make(n, dtype, seed=seed + 1, offset=y_off)]
    assert_matches(run(op, form, inputs, out_off), op.ref(inputs), dtype)


@SETTINGS
@given(dtype=dtypes, n=sizes, w=alphas, x_off=offsets, y_off=offsets, out_off=offsets,
       form=forms, seed=seeds)
def test_blend_property(backend, dtype, n, w, x_off, y_off, out_off, form, seed):
    op = blend_spec(w)
    inputs = [no_zeros(make(n, dtype, seed=seed, offset=x_off)),
              no_zeros(make(n, dtype, seed=seed + 1, offset=y_off))]
    result = run(op, form, inputs, out_off)
    assert_matches(result, op.ref(inputs), dtype)
    if w in (0.0, 1.0):
        assert_bitwise_equal(result, inputs[0] if w == 0.0 else inputs[1])


@SETTINGS
@given(dtype=dtypes, n=sizes, coeffs=st.lists(coefficients, min_size=1, max_size=20),
       bias=coefficients, offs=st.lists(offsets, min_size=20, max_size=20), out_off=offsets,
       form=forms, seed=seeds, data=st.data())
def test_lincomb_property(backend, dtype, n, coeffs, bias, offs, out_off, form, seed, data):
    k = len(coeffs)
    # Some tensors repeated: tensors[j] is tensors[src[j]] for src[j] <= j.
    src = [data.draw(st.integers(0, j), label=f"src[{j}]") for j in range(k)]
    distinct = [make(n, dtype, seed=seed + j, offset=offs[j]) for j in range(k)]
    tensors = [distinct[s] for s in src]
    if form == "inplace":  # only tensors[0] is written; its repeats go with it
        target = place(tensors[0], tensors[0].storage_offset())
        tensors = [target if t is tensors[0] else t for t in tensors]
        expected = ref_lincomb(coeffs, tensors, bias)
        assert ops.lincomb_(coeffs, tensors, bias) is target
        result = target
    else:
        expected = ref_lincomb(coeffs, tensors, bias)
        out = place(torch.empty_like(tensors[0]), out_off) if form == "out" else None
        result = ops.lincomb(coeffs, tensors, bias, out=out)
    assert_matches(result, expected, dtype, factor=max(1.0, k / 4))


list_sizes = st.lists(st.sampled_from([0, 1, 3, 4, 5, 17, 127, 1000]), min_size=1, max_size=40)


@SETTINGS
@given(dtype=dtypes, sizes_=list_sizes, a=coefficients, b=coefficients, alias=st.sampled_from(["none", "x", "y"]),
       offset=offsets, seed=seeds)
def test_multi_axpby_property(backend, dtype, sizes_, a, b, alias, offset, seed):
    xs = make_list(sizes_, dtype, seed=seed, offset=offset)
    ys = make_list(sizes_, dtype, seed=seed + 1)
    expected = [ref_axpby(a, x, b, y) for x, y in zip(xs, ys)]
    outs = {"none": [torch.empty_like(x) for x in xs], "x": xs, "y": ys}[alias]
    ops.multi_axpby_(outs, a, xs, b, ys)
    for i, (o, e) in enumerate(zip(outs, expected)):
        assert_matches(o, e, dtype, what=f"outs[{i}]")


@SETTINGS
@given(dtype=dtypes, sizes_=list_sizes, shared=st.booleans(),
       ws=st.one_of(alphas, st.lists(alphas, min_size=40, max_size=40)), offset=offsets, seed=seeds)
def test_multi_blend_property(backend, dtype, sizes_, shared, ws, offset, seed):
    if shared:  # one source for all: every target has its shape
        sizes_ = [sizes_[0]] * len(sizes_)
        source = make(sizes_[0], dtype, seed=seed + 1, offset=offset)
        sources = [source] * len(sizes_)
    else:
        source = sources = make_list(sizes_, dtype, seed=seed + 1)
    alphas_arg = ws[:len(sizes_)] if isinstance(ws, list) else ws
    per = alphas_arg if isinstance(alphas_arg, list) else [alphas_arg] * len(sizes_)
    targets = make_list(sizes_, dtype, seed=seed, offset=offset)
    expected = [ref_blend(t, s, w) for t, s, w in zip(targets, sources, per)]
    ops.multi_blend_(targets, source, alphas_arg)
    for i, (t, e) in enumerate(zip(targets, expected)):
        assert_matches(t, e, dtype, what=f"targets[{i}]")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@SETTINGS
@given(values=st.lists(st.floats(-1e3, 1e3, width=16), min_size=1, max_size=80),
       a=st.floats(-10.0, 10.0), w=alphas, data=st.data())
def test_hypothesis_chosen_values(backend, dtype, values, a, w, data):
    """Values chosen by hypothesis itself (zeros, signed zeros, subnormals, exact
    ties), not just random normals."""
    other = data.draw(st.lists(st.floats(-1e3, 1e3, width=16), min_size=len(values), max_size=len(values)))
    x, y = torch.tensor(values, dtype=dtype), torch.tensor(other, dtype=dtype)
    assert_matches(ops.axpby(a, x, 1.0 - a, y), ref_axpby(a, x, 1.0 - a, y), dtype)
    assert_matches(ops.blend(x, y, w), ref_blend(x, y, w), dtype)
    assert_matches(ops.lincomb([a, 0.5, -a], [x, y, y], w), ref_lincomb([a, 0.5, -a], [x, y, y], w), dtype)


# ------------------------------------------- blend over every alpha (D11)
# Both backends compute torch.lerp's formula, |w| < 0.5 ? x + w*(y-x) : y - (y-x)*(1-w),
# for any alpha: negative, > 1, huge, Inf, NaN; and inputs with NaN and Inf. A
# finite scalar too large for the opmath type (float32 for float32/float16/
# bfloat16 tensors) is a ValueError naming the argument, in both backends.

FLT_MAX = torch.finfo(torch.float32).max
NASTY_ALPHAS = [0.0, -0.0, 0.5, -0.5, 0.49999997, -0.49999997, 1.0, -1.0, 1.5, -2.25, 7.0,
                1e30, -1e30, 1e38, -1e38, FLT_MAX, -FLT_MAX, 3.5e38, 1e39, -1e39, 1e300,
                float("inf"), float("-inf"), float("nan")]
blend_alphas = st.one_of(st.sampled_from(NASTY_ALPHAS), st.floats(-10.0, 10.0), st.floats(-1e6, 1e6),
                         st.floats(allow_nan=True, allow_infinity=True))
blend_values = st.one_of(st.floats(-1e3, 1e3, width=16), st.sampled_from([float("inf"), float("-inf"), float("nan")]))
BLEND_FORMS = ["alloc", "out", "inplace", "multi-shared", "multi-list"]


def _opmath_overflows(alpha: float, dtype) -> bool:
    return dtype != torch.float64 and math.isfinite(alpha) and abs(alpha) > FLT_MAX


def _lerp_reference(x, y, alpha):
    """torch.lerp in float64, as (value, magnitude) for assert_matches."""
    xd, yd = x.double(), y.double()
    return torch.lerp(xd, yd, alpha), (xd.abs() + yd.abs()) * (1.0 + abs(alpha)) if math.isfinite(alpha) \
        else torch.zeros_like(xd)


def _blend_by(form, x, y, alpha):
    if form == "alloc":
        return ops.blend(x, y, alpha)
    if form == "out":
        return ops.blend(x, y, alpha, out=torch.empty_like(x))
    if form == "inplace":
        return ops.blend_(x.clone(), y, alpha)
    if form == "multi-shared":
        ts = [x.clone(), x.clone()]
        ops.multi_blend_(ts, y, alpha)
        return ts[1]
    ts = [x.clone(), x.clone()]
    ops.multi_blend_(ts, [y.clone(), y], [0.25, alpha])
    return ts[1]


@SETTINGS
@given(dtype=dtypes, values=st.lists(blend_values, min_size=1, max_size=40), alpha=blend_alphas,
       form=st.sampled_from(BLEND_FORMS), data=st.data())
def test_blend_backends_agree_with_torch_lerp(monkeypatch, dtype, values, alpha, form, data):
    from reference import use_backend
    other = data.draw(st.lists(blend_values, min_size=len(values), max_size=len(values)), label="y")
    x = torch.tensor(values, dtype=torch.float64).to(dtype)
    y = torch.tensor(other, dtype=torch.float64).to(dtype)
    results = {}
    for name in ("compiled", "fallback"):
        with monkeypatch.context() as m:
            use_backend(name, m)
            if _opmath_overflows(alpha, dtype):
                before = snapshot([x, y])
                with pytest.raises(ValueError, match=r"^alphas?(\[1\])?(?!\w).*out of range"):
                    _blend_by(form, x, y, alpha)
                assert_unchanged(before)
                continue
            results[name] = _blend_by(form, x, y, alpha)
    if not results:
        return
    # the reference: torch.lerp itself in the opmath type, and in float64 (both agree
    # up to the result's rounding where nothing overflows)
    opmath = torch.float64 if dtype == torch.float64 else torch.float32
    lerp = torch.lerp(x.to(opmath), y.to(opmath), alpha).to(dtype)
    for name, got in results.items():
        assert torch.equal(got.isnan(), lerp.isnan()), (name, got, lerp)
        finite = ~lerp.isnan()
        assert torch.equal(got[lerp.isinf()], lerp[lerp.isinf()]), (name, got, lerp)
        assert_matches(got[finite & ~lerp.isinf()],
                       tuple(v[finite & ~lerp.isinf()] for v in _lerp_reference(x, y, alpha)), dtype,
                       factor=4.0, what=name)


@pytest.mark.parametrize("alpha, expected", [(-0.5, float("nan")), (-0.25, float("-inf")), (0.25, float("inf")),
                                             (1.5, float("inf")), (0.5, float("nan")), (-1.0, float("nan")),
                                             (1.0, float("nan"))])
def test_blend_towards_infinity_is_torch_lerp(backend, alpha, expected):
    x = torch.zeros(20)
    y = torch.full((20,), float("inf"))
    want = torch.lerp(x, y, alpha)
    assert torch.allclose(want, torch.full((20,), expected), equal_nan=True)  # the premise
    for form in BLEND_FORMS:
        got = _blend_by(form, x, y, alpha)
        assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got[~got.isnan()], want[~want.isnan()]), form


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_out_of_range_scalars_are_value_errors(backend, dtype):
    x, y = make(10, dtype, seed=1), make(10, dtype, seed=2)
    before = (x.clone(), y.clone())
    big = 1e39
    calls = {
        "a": lambda: ops.axpby(big, x, 1.0, y),
        "b": lambda: ops.axpby_(1.0, x, -big, y),
        "alpha": lambda: ops.blend(x, y, big, out=torch.empty_like(x)),
        r"coeffs\[1\]": lambda: ops.lincomb([1.0, big], [x, y]),
        "bias": lambda: ops.lincomb_([1.0, 2.0], [x, y], big),
        r"alphas\[0\]": lambda: ops.multi_blend_([x], [y], [big]),
        r"alphas\[1\]": lambda: ops.multi_blend_([x, x.clone()], y, [0.5, -big]),
        "a ": lambda: ops.multi_axpby_([x], big, [x], 1.0, [y]),
        "noise_scale": lambda: ops.blend_noise_(x, y, 0.5, big, seed=1),
    }
    for name, call in calls.items():
        if dtype == torch.float64:
            call()  # representable: computed
            x.copy_(before[0])
            continue
        with pytest.raises(ValueError, match=rf"^{name.strip()}(?!\w).*out of range"):
            call()
        assert torch.equal(x, before[0]) and torch.equal(y, before[1]), name
    # mixed groups: a float64 group takes 1e39, a float32 one does not
    if dtype != torch.float64:
        z = make(10, torch.float64, seed=3)
        z_before = z.clone()
        for alphas, name in (([0.5, big], r"alphas\[1\]"), (big, r"alphas\[0\]")):
            with pytest.raises(ValueError, match=rf"^{name}.*out of range"):
                ops.multi_blend_([z, x], [z.clone(), y], alphas)
            assert torch.equal(x, before[0]) and torch.equal(z, z_before)
        w = make(10, torch.float64, seed=4)
        ops.multi_blend_([z, x], [w, y], [big, 0.5])  # 1e39 for the float64 target: fine
        assert torch.allclose(z, torch.lerp(z_before, w, big), rtol=1e-12, atol=0)
        x.copy_(before[0])
    # inf and nan are not out of range: IEEE arithmetic
    r = ops.blend(x, y, float("inf"))
    assert torch.equal(r.isnan(), torch.lerp(x.float(), y.float(), float("inf")).to(dtype).isnan())
