"""nytorch_ext.ops on CPU: every op and form against a float64 reference, in
every dtype, on both backends (see the ``backend`` fixture in conftest.py)."""
from __future__ import annotations

import math

import pytest
import torch

from nytorch_ext import ops
from reference import (
    DTYPES, ENDPOINT_FORMS, NAN, OPS, SIZES, assert_bitwise_equal, assert_list_matches,
    assert_matches, assert_unchanged, axpby_spec, blend_at, blend_spec, carve, check_forms,
    dtype_id, inputs_for, lincomb_spec, list_sizes, make, make_list, no_zeros, ref_axpby,
    ref_blend, ref_lincomb, snapshot, specials,
)

pytestmark = pytest.mark.usefixtures("backend")

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
all_ops = pytest.mark.parametrize("op", OPS, ids=repr)


# ------------------------------------------------------------ single-tensor ops

@all_ops
@dtypes
@pytest.mark.parametrize("n", SIZES)
def test_matches_reference(op, dtype, n):
    check_forms(op, inputs_for(op, n, dtype, seed=n), dtype)


@all_ops
@pytest.mark.parametrize("shape", [(), (1,), (2, 3, 4), (0, 5), (3, 1, 70)], ids=str)
def test_shapes(op, shape):
    check_forms(op, inputs_for(op, shape, torch.float32, seed=7), torch.float32)


@all_ops
@dtypes
@pytest.mark.parametrize("n", [1, 5, 127, 65537])
@pytest.mark.parametrize("offsets", [(1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1)],
                         ids=["all", "first", "others", "out"])
def test_unaligned_views(op, dtype, n, offsets):
    """Views one element into their allocation (buf[1:n+1]): the first input, the
    other inputs and/or the output are misaligned for every vector width."""
    first, others, out = offsets
    inputs = inputs_for(op, n, dtype, seed=3, offsets=[first] + [others] * (op.arity - 1))
    check_forms(op, inputs, dtype, out_offset=out)


@pytest.mark.parametrize("w", [-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
def test_blend_weights(dtype, w):
    """Both lerp branches, the branch point 0.5, the end points, extrapolation."""
    op = blend_spec(w)
    check_forms(op, inputs_for(op, 1000, dtype, seed=11), dtype)


@pytest.mark.parametrize("a, b", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 1.0),
                                  (1e-3, 1e3), (2.0, 2.0)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=dtype_id)
def test_axpby_coefficients(dtype, a, b):
    op = axpby_spec(a, b)
    check_forms(op, inputs_for(op, 300, dtype, seed=13), dtype)


@dtypes
@pytest.mark.parametrize("k", [1, 2, 8, 17, 20])
def test_lincomb_lengths(dtype, k):
    op = lincomb_spec(k)
    check_forms(op, inputs_for(op, 1029, dtype, seed=k), dtype)


# -------------------------------------------------------------------- aliasing

ALIAS_CASES = [pytest.param(op, k, id=f"{op!r}-out=input{k}") for op in OPS for k in range(op.arity)]


@pytest.mark.parametrize("op, k", ALIAS_CASES)
@pytest.mark.parametrize("same_object", [True, False], ids=["same-object", "same-memory-view"])
@dtypes
def test_out_aliases_an_input(op, k, dtype, same_object):
    """out= may be exactly an input (the tensor itself, or another view of the
    very same memory): the result is as if computed from the old values."""
    inputs = inputs_for(op, 1029, dtype, seed=17, offsets=[1] * op.arity)
    expected = op.ref(inputs)
    others = snapshot([t for j, t in enumerate(inputs) if j != k])
    out = inputs[k] if same_object else inputs[k].view(inputs[k].shape)
    assert op.out(inputs, out) is out
    assert_matches(inputs[k], expected, dtype, factor=op.factor)
    assert_unchanged(others)


@all_ops
@dtypes
def test_one_tensor_for_every_argument(op, dtype):
    """x is y (every input the same tensor), also with out= and in place."""
    x = make(1029, dtype, seed=19)
    inputs = [x] * op.arity
    expected = op.ref(inputs)
    before = snapshot([x])
    assert_matches(op.alloc(inputs), expected, dtype, factor=op.factor)
    assert_unchanged(before)
    out = torch.empty_like(x)
    op.out(inputs, out)
    assert_matches(out, expected, dtype, factor=op.factor)
    assert op.out(inputs, x) is x
    assert_matches(x, expected, dtype, factor=op.factor, what="out=x with x is y")
    z = before[0][1].clone()
    assert op.inplace([z] * op.arity) is z
    assert_matches(z, expected, dtype, factor=op.factor, what="in place with x is y")


@dtypes
@pytest.mark.parametrize("out_index", [None, 0, 1, 2, 3])
def test_lincomb_repeated_tensors(dtype, out_index):
    """tensors = [x, y, x, x, y]: repeated inputs, out= each of them, lincomb_."""
    op = lincomb_spec(5)
    x, y = make(1029, dtype, seed=23), make(1029, dtype, seed=29)
    tensors = [x, y, x, x, y]
    expected = op.ref(tensors)
    if out_index is None:
        assert_matches(op.alloc(tensors), expected, dtype, factor=op.factor)
        xi = x.clone()
        assert op.inplace([xi, y, xi, xi, y]) is xi
        assert_matches(xi, expected, dtype, factor=op.factor, what="lincomb_ repeated")
    else:
        out = tensors[out_index]
        untouched = snapshot([y if out is x else x])
        assert op.out(tensors, out) is out
        assert_matches(out, expected, dtype, factor=op.factor)
        assert_unchanged(untouched)


# -------------------------------------------------------------- NaN and Inf

@all_ops
@dtypes
def test_nan_and_inf_propagate(op, dtype):
    inputs = [specials(67, dtype, seed=31 + k) for k in range(op.arity)]
    assert any(t.isinf().any() for t in inputs) and any(t.isnan().any() for t in inputs)
    check_forms(op, inputs, dtype)


@dtypes
def test_zero_times_inf_is_nan(dtype):
    """0*inf is NaN: a zero coefficient does not skip its tensor."""
    n = 67
    inf = torch.full((n,), math.inf, dtype=dtype)
    inf[::2] = -math.inf
    zeros = torch.zeros(n, dtype=dtype)
    results = {
        "axpby a=0": ops.axpby(0.0, inf, 1.0, zeros),
        "axpby b=0": ops.axpby(1.0, zeros, 0.0, inf),
        "axpby out=": ops.axpby(0.0, inf, 1.0, zeros, out=torch.zeros(n, dtype=dtype)),
        "axpby_": ops.axpby_(0.0, inf.clone(), 1.0, zeros),
        "lincomb": ops.lincomb([1.0, 0.0], [zeros, inf]),
        "lincomb_": ops.lincomb_([0.0, 1.0], [inf.clone(), zeros]),
        "multi_axpby_": ops.multi_axpby_([torch.zeros(n, dtype=dtype)], 0.0, [inf], 1.0, [zeros])[0],
        "axpby a=inf x=0": ops.axpby(math.inf, zeros, 1.0, zeros),
        "axpby a=nan": ops.axpby(NAN, zeros, 1.0, zeros),
        "lincomb bias=nan": ops.lincomb([1.0], [zeros], NAN),
        # lerp(inf, 0, 0) = inf + 0*(0 - inf) = NaN, as IEEE says.
        "blend w=0 x=inf": ops.blend(inf, zeros, 0.0),
        "blend w=1 x=inf": ops.blend(inf, zeros, 1.0),
        "multi_blend_ w=1": ops.multi_blend_([inf.clone()], zeros, 1.0)[0],
    }
    for name, r in results.items():
        assert r.dtype == dtype and r.shape == (n,), name
        assert r.isnan().all(), f"{name}: {r}"


@dtypes
def test_inf_results(dtype):
    n = 40
    big = torch.full((n,), math.inf, dtype=dtype)
    one = torch.ones(n, dtype=dtype)
    assert torch.equal(ops.axpby(2.0, big, 1.0, one), big)
    assert torch.equal(ops.axpby(-2.0, big, 1.0, one), -big)
    assert torch.equal(ops.blend(one, big, 0.25), big)  # 1 + 0.25*inf
    assert ops.blend(one, big, 0.5).isnan().all()  # inf - (inf-1)*0.5
    assert torch.equal(ops.lincomb([1.0, 1.0], [big, one], 1.0), big)
    assert ops.axpby(1.0, big, 1.0, -big).isnan().all()  # inf - inf


# ------------------------------------------------------------ blend end points

@dtypes
@pytest.mark.parametrize("w", [0.0, 1.0, 0, 1], ids=["0.0", "1.0", "int0", "int1"])
@pytest.mark.parametrize("form", ENDPOINT_FORMS)
@pytest.mark.parametrize("offset", [0, 1])
def test_blend_endpoints_are_bit_exact(dtype, w, form, offset):
    """blend(x, y, 0) is x and blend(x, y, 1) is y, bit for bit (finite inputs),
    though (1-w)*x + w*y would round."""
    x = no_zeros(make(1029, dtype, seed=37, offset=offset, scale=1e3))
    y = no_zeros(make(1029, dtype, seed=41, offset=offset, scale=1e-3))
    result = blend_at(form, x, y, w)
    assert_bitwise_equal(result, x if w == 0 else y, what=f"blend {form} at {w}")


@pytest.mark.xfail(strict=True, reason=(
    "documented, matches torch.lerp. signed zero: the two-sided lerp computes x + 0*(y-x) = -0.0 + 0.0 = +0.0 at w=0 "
    "(and y - (y-x)*0 = +0.0 for y = -0.0 at w=1), so blend is not bit-exactly x / y "
    "when they hold -0.0 (torch.lerp behaves the same)"))
@pytest.mark.parametrize("w", [0.0, 1.0])
def test_blend_endpoints_keep_negative_zero(w):
    x = torch.tensor([-0.0, -0.0, 1.0])
    y = torch.tensor([1.0, -0.0, -0.0])
    assert_bitwise_equal(ops.blend(x, y, w), x if w == 0 else y)


# ---------------------------------------------------------- multi-tensor ops

COUNTS = [1, 12, 111, 1000]


@dtypes
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("alias", ["fresh", "out=x", "out=y", "adjacent-views"])
def test_multi_axpby(dtype, count, alias):
    a, b = -0.7, 1.3
    sizes = list_sizes(count)
    xs = make_list(sizes, dtype, seed=43, offset=count % 2)
    ys = make_list(sizes, dtype, seed=47)
    expected = [ref_axpby(a, x, b, y) for x, y in zip(xs, ys)]
    if alias == "fresh":
        outs = [torch.full_like(x, NAN) for x in xs]
    elif alias == "out=x":
        outs = xs
    elif alias == "out=y":
        outs = ys
    else:  # back to back in one buffer, one element into it
        _, outs = carve(sizes, dtype)
    keep = snapshot([t for t in xs + ys if not any(t is o for o in outs)])
    ptrs = [o.data_ptr() for o in outs]
    returned = ops.multi_axpby_(outs, a, xs, b, ys)
    assert len(returned) == count and all(r is o for r, o in zip(returned, outs))
    assert [o.data_ptr() for o in outs] == ptrs
    assert_list_matches(outs, expected, dtype)
    assert_unchanged(keep)


@dtypes
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("alphas", ["shared", "per-target"])
def test_multi_blend_per_target_sources(dtype, count, alphas):
    sizes = list_sizes(count)
    targets = make_list(sizes, dtype, seed=53, offset=1)
    sources = make_list(sizes, dtype, seed=59)
    ws = [0.0, 1.0, 0.3, 0.5, 0.9, 0.05]
    ws = [ws[i % len(ws)] for i in range(count)] if alphas == "per-target" else 0.35
    expected = [ref_blend(t, s, ws[i] if isinstance(ws, list) else ws)
                for i, (t, s) in enumerate(zip(targets, sources))]
    keep = snapshot(sources)
    returned = ops.multi_blend_(targets, sources, ws)
    assert all(r is t for r, t in zip(returned, targets))
    assert_list_matches(targets, expected, dtype)
    assert_unchanged(keep)


@dtypes
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("alphas", ["shared", "per-target"])
def test_multi_blend_shared_source(dtype, count, alphas):
    n = 257 if count > 1 else 65537
    source = make(n, dtype, seed=61, offset=1)
    targets = make_list([n] * count, dtype, seed=67)
    ws = [0.1 + 0.8 * i / max(count - 1, 1) for i in range(count)] if alphas == "per-target" else 0.6
    expected = [ref_blend(t, source, ws[i] if isinstance(ws, list) else ws)
                for i, t in enumerate(targets)]
    keep = snapshot([source])
    ops.multi_blend_(targets, source, ws)
    assert_list_matches(targets, expected, dtype)
    assert_unchanged(keep)


def test_multi_inputs_may_repeat_across_indices():
    """One input tensor at every index (read-only) is fine; only outputs must be
    distinct."""
    x, y = make(300, torch.float32, seed=201), make(300, torch.float32, seed=202)
    outs = [torch.empty_like(x) for _ in range(3)]
    ops.multi_axpby_(outs, 2.0, [x, x, y], -1.0, [y, y, x])
    for o, (p, q) in zip(outs, [(x, y), (x, y), (y, x)]):
        assert_matches(o, ref_axpby(2.0, p, -1.0, q), torch.float32)
    targets = [x.clone(), y.clone()]
    ops.multi_blend_(targets, [y, y], [0.25, 0.75])
    assert_matches(targets[0], ref_blend(x, y, 0.25), torch.float32)
    assert_matches(targets[1], ref_blend(y, y, 0.75), torch.float32)


@pytest.mark.parametrize("source", ["shared", "list"])
def test_multi_blend_empty_tensors(source):
    """Every target empty (a shared source must then be empty too)."""
    targets = [torch.empty(0), torch.empty(0)]
    src = torch.empty(0) if source == "shared" else [torch.empty(0), torch.empty(0)]
    assert ops.multi_blend_(targets, src, 0.5) == targets


def test_multi_single_target_may_be_its_source():
    """With one target and a one-tensor source list, the source is that target's
    own input, which may alias it exactly (lerp(x, x, w) == x)."""
    x = make(100, torch.float32, seed=71)
    before = x.clone()
    ops.multi_blend_([x], [x], 0.3)
    assert_bitwise_equal(x, before)


@pytest.mark.parametrize("count", [12, 111])
@pytest.mark.parametrize("op", ["axpby", "blend-list", "blend-alphas"])
def test_multi_mixed_dtypes(count, op):
    """One call with every dtype in the list: the Python layer groups by dtype and
    each tensor still gets its own result."""
    sizes = list_sizes(count)
    dts = [DTYPES[i % len(DTYPES)] for i in range(count)]
    xs = [make(n, dt, seed=73 + i, offset=i % 2) for i, (n, dt) in enumerate(zip(sizes, dts))]
    ys = [make(n, dt, seed=79 + i) for i, (n, dt) in enumerate(zip(sizes, dts))]
    ws = [0.1 * (i % 11) for i in range(count)]
    if op == "axpby":
        outs = [torch.empty_like(x) for x in xs]
        expected = [ref_axpby(1.5, x, -0.25, y) for x, y in zip(xs, ys)]
        ops.multi_axpby_(outs, 1.5, xs, -0.25, ys)
    elif op == "blend-list":
        outs = xs
        expected = [ref_blend(x, y, 0.4) for x, y in zip(xs, ys)]
        ops.multi_blend_(outs, ys, 0.4)
    else:
        outs = xs
        expected = [ref_blend(x, y, w) for x, y, w in zip(xs, ys, ws)]
        ops.multi_blend_(outs, ys, ws)
    for i, (o, e) in enumerate(zip(outs, expected)):
        assert_matches(o, e, dts[i], what=f"{op}[{i}] ({dts[i]})")


def test_multi_empty_lists_are_noops(backend):
    """A list call on no tensors at all (an empty parameter group) is a no-op."""
    assert ops.multi_axpby_([], 1.0, [], 2.0, []) == []
    assert ops.multi_blend_([], [], []) == []


def test_multi_blend_no_targets_shared_source(backend):
    assert ops.multi_blend_([], torch.ones(3), 0.5) == []


@dtypes
def test_multi_nan_inf(dtype):
    sizes = [67, 0, 5, 130]
    xs = [specials(n, dtype, seed=83 + i) for i, n in enumerate(sizes)]
    ys = [specials(n, dtype, seed=89 + i) for i, n in enumerate(sizes)]
    outs = [torch.empty_like(x) for x in xs]
    ops.multi_axpby_(outs, 0.0, xs, 2.0, ys)
    assert_list_matches(outs, [ref_axpby(0.0, x, 2.0, y) for x, y in zip(xs, ys)], dtype)
    targets = [x.clone() for x in xs]
    ops.multi_blend_(targets, ys, [0.0, 0.5, 1.0, 0.7])
    assert_list_matches(targets, [ref_blend(x, y, w) for x, y, w in
                                  zip(xs, ys, [0.0, 0.5, 1.0, 0.7])], dtype)


# ----------------------------------------- non-contiguous allocating inputs

def noncontiguous(layout, dtype, seed):
    if layout == "transposed":
        return make((9, 7), dtype, seed=seed).t()
    if layout == "strided":
        return make((7, 18), dtype, seed=seed)[:, ::2]
    if layout == "expanded":
        return make((1, 9), dtype, seed=seed).expand(7, 9)
    if layout == "channels_last":
        return make((2, 3, 4, 5), dtype, seed=seed).to(memory_format=torch.channels_last)
    raise AssertionError(layout)


@all_ops
@dtypes
@pytest.mark.parametrize("layout", ["transposed", "strided", "expanded", "channels_last"])
@pytest.mark.parametrize("which", ["first", "all"])
def test_allocating_forms_accept_noncontiguous(op, dtype, layout, which):
    nc = [noncontiguous(layout, dtype, seed=97 + k) for k in range(op.arity)]
    assert not nc[0].is_contiguous()
    inputs = [nc[0]] + ([t.contiguous() * 0.5 for t in nc[1:]] if which == "first" else nc[1:])
    before = snapshot(inputs)
    result = op.alloc(inputs)
    assert result.is_contiguous() and result.shape == nc[0].shape
    assert_matches(result, op.ref(inputs), dtype, factor=op.factor)
    assert_unchanged(before)


# ------------------------------------------------------ identity and storage

def test_inplace_forms_keep_storage_and_return_the_same_tensor():
    x, y = make(1000, torch.float32, seed=101), make(1000, torch.float32, seed=103)
    for name, call, expected in [
        ("axpby_", lambda t: ops.axpby_(2.0, t, 3.0, y), lambda t: ref_axpby(2.0, t, 3.0, y)),
        ("blend_", lambda t: ops.blend_(t, y, 0.25), lambda t: ref_blend(t, y, 0.25)),
        ("lincomb_", lambda t: ops.lincomb_([2.0, -1.0], [t, y], 0.5),
         lambda t: ref_lincomb([2.0, -1.0], [t, y], 0.5)),
        ("axpby out=", lambda t: ops.axpby(2.0, x, 3.0, y, out=t), lambda t: ref_axpby(2.0, x, 3.0, y)),
        ("blend out=", lambda t: ops.blend(x, y, 0.75, out=t), lambda t: ref_blend(x, y, 0.75)),
        ("lincomb out=", lambda t: ops.lincomb([1.0, 2.0], [x, y], out=t),
         lambda t: ref_lincomb([1.0, 2.0], [x, y])),
    ]:
        t = make(1000, torch.float32, seed=107)
        exp = expected(t.clone())
        ptr = t.data_ptr()
        assert call(t) is t, name
        assert t.data_ptr() == ptr, name
        assert_matches(t, exp, torch.float32, what=name)

    ts = make_list([10, 0, 3], torch.float32, seed=109)
    ss = make_list([10, 0, 3], torch.float32, seed=113)
    ptrs = [t.data_ptr() for t in ts]
    returned = ops.multi_blend_(ts, ss, 0.5)
    assert isinstance(returned, list) and all(r is t for r, t in zip(returned, ts))
    returned = ops.multi_axpby_(ts, 1.0, ts, 1.0, ss)
    assert isinstance(returned, list) and all(r is t for r, t in zip(returned, ts))
    assert [t.data_ptr() for t in ts] == ptrs


# ---------------------------------------------------------- scalar arguments

def test_scalar_argument_types():
    """ints, numpy scalars and one-element tensors are the same as Python floats."""
    np = pytest.importorskip("numpy")
    x, y = make(100, torch.float32, seed=127), make(100, torch.float32, seed=131)
    want = ops.axpby(2.0, x, -0.5, y)
    for a, b in [(2, -0.5), (np.float64(2.0), np.float32(-0.5)), (torch.tensor(2.0), torch.tensor([-0.5])),
                 (torch.tensor(2, dtype=torch.int64), -0.5)]:
        assert_bitwise_equal(ops.axpby(a, x, b, y), want, what=f"{type(a)}, {type(b)}")
    assert_bitwise_equal(ops.blend(x, y, torch.tensor(0.25)), ops.blend(x, y, 0.25))
    want = ops.lincomb([1.5, 2.0], [x, y], 1.0)
    for coeffs in [(1.5, 2), torch.tensor([1.5, 2.0]), [np.float32(1.5), torch.tensor(2.0)]]:
        assert_bitwise_equal(ops.lincomb(coeffs, (x, y), torch.tensor(1.0)), want, what=str(coeffs))
    t1, t2 = [x.clone(), y.clone()], [x.clone(), y.clone()]
    ops.multi_blend_(t1, [y, x], [0.25, 0.75])
    ops.multi_blend_(t2, (y, x), torch.tensor([0.25, 0.75], dtype=torch.float64))
    for p, q in zip(t1, t2):
        assert_bitwise_equal(p, q)
    t3 = [x.clone(), y.clone()]
    ops.multi_blend_(t3, [y, x], torch.tensor(0.25))
    assert_matches(t3[1], ref_blend(y, x, 0.25), torch.float32)


# ------------------------------------------------------- position independence



@pytest.mark.parametrize("op", OPS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
def test_result_does_not_depend_on_position(request, backend, op, dtype):
    """Element i of a 1000-element call (mostly the vectorized body) is
    bit-identical to the same element computed alone (the scalar tail)."""
    n = 1000
    inputs = inputs_for(op, n, dtype, seed=5)
    whole = op.alloc(inputs)
    alone = torch.cat([op.alloc([t[i:i + 1] for t in inputs]) for i in range(n)])
    assert_bitwise_equal(whole, alone, what="whole tensor vs one element at a time")
