"""Property tests: random sizes, dtypes, finite coefficients, alphas in [0, 1],
offsets and forms, each against the float64 reference, on both backends."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nytorch_ext import ops
from reference import (
    DTYPES, assert_bitwise_equal, assert_matches, axpby_spec, blend_spec, make, make_list,
    no_zeros, place, ref_blend, ref_axpby, ref_lincomb,
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
