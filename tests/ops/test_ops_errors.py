"""Bad inputs: every rejected call raises TypeError, ValueError or RuntimeError
with a message naming the offending argument, and writes nothing (every tensor
it was given, and every buffer behind a view, is bit-identical afterwards).
Run on both backends."""
from __future__ import annotations

import re

import pytest
import torch

from nytorch_ext import ops
from reference import OTHER_DTYPE, assert_unchanged, dtype_id, make, snapshot

N = 8

CASES = []


def add(case_id, exc, match, factory, bug=None):
    """factory(dtype) -> (call, tensors): the rejected call, and every tensor that
    must be unmodified afterwards."""
    CASES.append(pytest.param(factory, exc, match, bug, id=case_id))


def t(dtype, n=N, seed=0, device="cpu"):
    return make(n, dtype, seed=seed, device=device)


def other(dtype):
    return OTHER_DTYPE[dtype]


def noncontig(dtype, n=N, seed=5):
    base = make(2 * n, dtype, seed=seed)
    return base[::2], base


def meta(dtype, n=N):
    return torch.empty(n, dtype=dtype, device="meta")


# ------------------------------------------------------------- axpby, blend

def binary(op, form, x, y, out=None, extra=()):
    """(call, tensors) for op in {"axpby", "blend"} and form in {"alloc", "out", "inplace"}."""
    if form == "out" and out is None:
        out = torch.zeros(x.shape if isinstance(x, torch.Tensor) else N,
                          dtype=x.dtype if isinstance(x, torch.Tensor) else torch.float32)
    if op == "axpby":
        call = {"alloc": lambda: ops.axpby(0.5, x, 2.0, y),
                "out": lambda: ops.axpby(0.5, x, 2.0, y, out=out),
                "inplace": lambda: ops.axpby_(0.5, x, 2.0, y)}[form]
    else:
        call = {"alloc": lambda: ops.blend(x, y, 0.25),
                "out": lambda: ops.blend(x, y, 0.25, out=out),
                "inplace": lambda: ops.blend_(x, y, 0.25)}[form]
    return call, [x, y, out, *extra]


for _op in ("axpby", "blend"):
    for _form in ("alloc", "out", "inplace"):
        def _add(name, exc, match, factory, bug=None, op=_op, form=_form):
            add(f"{op}-{form}-{name}", exc, match, lambda D: binary(op, form, *factory(D)), bug)

        _add("y-dtype", TypeError, r"\by\b", lambda D: (t(D), t(other(D), seed=1)))
        _add("x-int", TypeError, r"\bx\b",
             lambda D: (torch.arange(N, dtype=torch.int32), torch.arange(N, dtype=torch.int32)))
        _add("y-bool", TypeError, r"\by\b", lambda D: (t(D), torch.ones(N, dtype=torch.bool)))
        _add("x-complex", TypeError, r"\bx\b",
             lambda D: (torch.ones(N, dtype=torch.complex64), torch.ones(N, dtype=torch.complex64)))
        _add("y-int64-x-float", TypeError, r"\by\b", lambda D: (t(D), torch.arange(N)))
        _add("y-shape", ValueError, r"\by\b", lambda D: (t(D), t(D, N + 1, seed=1)))
        _add("y-same-numel-shape", ValueError, r"\by\b",
             lambda D: (t(D), t(D, seed=1).view(2, N // 2)))
        _add("y-broadcastable", ValueError, r"\by\b", lambda D: (t(D), t(D, 1, seed=1)))
        _add("y-meta", RuntimeError, r"\by\b", lambda D: (t(D), meta(D)))
        _add("x-none", TypeError, r"\bx\b", lambda D: (None, t(D)))

    add(f"{_op}-alloc-x-list", TypeError, r"\bx\b",
        lambda D, op=_op: binary(op, "alloc", [1.0] * N, t(D)))
    add(f"{_op}-alloc-y-float", TypeError, r"\by\b",
        lambda D, op=_op: binary(op, "alloc", t(D), 1.0))
    add(f"{_op}-out-out-list", TypeError, r"\bout\b",
        lambda D, op=_op: binary(op, "out", t(D), t(D, seed=1), out=[0.0] * N))
    add(f"{_op}-out-out-dtype", TypeError, r"\bout\b",
        lambda D, op=_op: binary(op, "out", t(D), t(D, seed=1), out=t(other(D), seed=2)))
    add(f"{_op}-out-out-int", TypeError, r"\bout\b",
        lambda D, op=_op: binary(op, "out", t(D), t(D, seed=1), out=torch.zeros(N, dtype=torch.int32)))
    add(f"{_op}-out-out-shape", ValueError, r"\bout\b",
        lambda D, op=_op: binary(op, "out", t(D), t(D, seed=1), out=t(D, N - 1, seed=2)))
    add(f"{_op}-out-out-meta", RuntimeError, r"\bout\b",
        lambda D, op=_op: binary(op, "out", t(D), t(D, seed=1), out=meta(D)))

    def _noncontig_out(D, op=_op):
        out, base = noncontig(D)
        return binary(op, "out", t(D), t(D, seed=1), out=out, extra=[base])

    def _noncontig_x(D, op=_op, form="out"):
        x, base = noncontig(D)
        return binary(op, form, x, t(D, seed=1), extra=[base])

    def _noncontig_y(D, op=_op, form="out"):
        y, base = noncontig(D)
        return binary(op, form, t(D), y, extra=[base])

    def _overlap_x(D, op=_op):  # out = buf[1:], x = buf[:-1]
        buf = t(D, N + 1, seed=3)
        return binary(op, "out", buf[:-1], t(D, seed=1), out=buf[1:], extra=[buf])

    def _overlap_y(D, op=_op):
        buf = t(D, N + 1, seed=3)
        return binary(op, "out", t(D, seed=1), buf[1:], out=buf[:-1], extra=[buf])

    def _overlap_inplace(D, op=_op):
        buf = t(D, N + 1, seed=3)
        return binary(op, "inplace", buf[1:], buf[:-1], extra=[buf])

    add(f"{_op}-out-out-noncontiguous", RuntimeError, r"\bout\b.*contiguous", _noncontig_out)
    add(f"{_op}-out-x-noncontiguous", RuntimeError, r"\bx\b.*contiguous", _noncontig_x)
    add(f"{_op}-out-y-noncontiguous", RuntimeError, r"\by\b.*contiguous", _noncontig_y)
    add(f"{_op}-inplace-x-noncontiguous", RuntimeError, r"contiguous",
        lambda D, f=_noncontig_x: f(D, form="inplace"))
    add(f"{_op}-inplace-y-noncontiguous", RuntimeError, r"\by\b.*contiguous",
        lambda D, f=_noncontig_y: f(D, form="inplace"))
    add(f"{_op}-out-partially-overlaps-x", RuntimeError, r"overlaps x\b", _overlap_x)
    add(f"{_op}-out-partially-overlaps-y", RuntimeError, r"overlaps y\b", _overlap_y)
    add(f"{_op}-inplace-partial-overlap", RuntimeError, r"overlaps y\b", _overlap_inplace)

# scalars
for _name, _call, _match in [
    ("axpby-a-str", lambda x, y: ops.axpby("2", x, 1.0, y), r"^a\b"),
    ("axpby-b-none", lambda x, y: ops.axpby(2.0, x, None, y), r"^b\b"),
    ("axpby-a-complex", lambda x, y: ops.axpby(1j, x, 1.0, y), r"^a\b"),
    ("axpby-a-bool", lambda x, y: ops.axpby(True, x, 1.0, y), r"^a\b"),
    ("axpby-a-two-element-tensor", lambda x, y: ops.axpby(torch.ones(2), x, 1.0, y), r"^a\b"),
    ("axpby-b-complex-tensor", lambda x, y: ops.axpby(1.0, x, torch.tensor(1j), y), r"^b\b"),
    ("axpby_-a-str", lambda x, y: ops.axpby_("2", x, 1.0, y), r"^a\b"),
    ("axpby-out-b-str", lambda x, y: ops.axpby(1.0, x, "1", y, out=torch.empty_like(x)), r"^b\b"),
    ("blend-alpha-str", lambda x, y: ops.blend(x, y, "0.5"), r"^alpha\b"),
    ("blend-alpha-list", lambda x, y: ops.blend(x, y, [0.5]), r"^alpha\b"),
    ("blend_-alpha-none", lambda x, y: ops.blend_(x, y, None), r"^alpha\b"),
    ("blend-out-alpha-complex", lambda x, y: ops.blend(x, y, 0.5j, out=torch.empty_like(x)), r"^alpha\b"),
]:
    add(_name, TypeError, _match, lambda D, c=_call: (lambda x, y: ((lambda: c(x, y)), [x, y]))(t(D), t(D, seed=1)))


# ------------------------------------------------------------------- lincomb

def lincomb(form, coeffs, tensors, out=None, bias=0.5, extra=()):
    if form == "out" and out is None:
        first = tensors[0] if isinstance(tensors, list) and tensors else None
        out = torch.zeros(N, dtype=first.dtype if isinstance(first, torch.Tensor) else torch.float32)
    call = {"alloc": lambda: ops.lincomb(coeffs, tensors, bias),
            "out": lambda: ops.lincomb(coeffs, tensors, bias, out=out),
            "inplace": lambda: ops.lincomb_(coeffs, tensors, bias)}[form]
    listed = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
    return call, [*listed, out, *extra]


def three(D):
    return [t(D, seed=s) for s in (10, 11, 12)]


C3 = [1.0, -2.0, 0.5]

for _form in ("alloc", "out", "inplace"):
    def _addl(name, exc, match, factory, bug=None, form=_form):
        add(f"lincomb-{form}-{name}", exc, match, lambda D: lincomb(form, *factory(D)), bug)

    _addl("coeffs-empty", ValueError, r"\bcoeffs\b", lambda D: ([], [t(D)]))
    _addl("coeffs-longer", ValueError, r"\bcoeffs\b.*\btensors\b", lambda D: ([1.0, 2.0], [t(D)]))
    _addl("coeffs-shorter", ValueError, r"\bcoeffs\b.*\btensors\b", lambda D: ([1.0], three(D)))
    _addl("tensors1-dtype", TypeError, r"tensors\[1\]",
          lambda D: (C3, [t(D), t(other(D), seed=1), t(D, seed=2)]))
    _addl("tensors2-shape", ValueError, r"tensors\[2\]",
          lambda D: (C3, [t(D), t(D, seed=1), t(D, N + 2, seed=2)]))
    _addl("tensors1-meta", RuntimeError, r"tensors\[1\]",
          lambda D: (C3, [t(D), meta(D), t(D, seed=2)]))
    _addl("tensors0-int", TypeError, r"tensors\[0\]",
          lambda D: ([1.0, 2.0], [torch.arange(N), torch.arange(N)]))
    _addl("tensors1-bool", TypeError, r"tensors\[1\]",
          lambda D: ([1.0, 2.0], [t(D), torch.ones(N, dtype=torch.bool)]))
    _addl("tensors0-complex", TypeError, r"tensors\[0\]",
          lambda D: ([1.0], [torch.ones(N, dtype=torch.complex128)]))
    _addl("coeffs-str", TypeError, r"^coeffs\b", lambda D: ("12", [t(D), t(D, seed=1)]))
    _addl("coeffs-float", TypeError, r"^coeffs\b", lambda D: (1.0, [t(D)]))
    _addl("coeffs0-str", TypeError, r"coeffs\[0\]", lambda D: (["a", 1.0], [t(D), t(D, seed=1)]))
    _addl("coeffs1-none", TypeError, r"coeffs\[1\]", lambda D: ([1.0, None], [t(D), t(D, seed=1)]))
    _addl("coeffs0-bool", TypeError, r"coeffs\[0\]", lambda D: ([True], [t(D)]))
    _addl("tensors-is-a-tensor", TypeError, r"^tensors\b", lambda D: ([1.0], t(D)))
    _addl("tensors1-float", TypeError, r"tensors\[1\]", lambda D: ([1.0, 2.0], [t(D), 2.0]))
    _addl("tensors-none", TypeError, r"^tensors\b", lambda D: ([1.0], None))
    add(f"lincomb-{_form}-bias-str", TypeError, r"^bias\b",
        lambda D, form=_form: lincomb(form, C3, three(D), bias="0.5"))
    add(f"lincomb-{_form}-bias-list", TypeError, r"^bias\b",
        lambda D, form=_form: lincomb(form, C3, three(D), bias=[0.5]))

add("lincomb-alloc-both-empty", ValueError, r"\bcoeffs\b", lambda D: lincomb("alloc", [], []))
add("lincomb-out-both-empty", ValueError, r"\bcoeffs\b", lambda D: lincomb("out", [], []))
add("lincomb-inplace-both-empty", ValueError, r"\btensors\b", lambda D: lincomb("inplace", [], []))
add("lincomb-out-out-dtype", TypeError, r"\bout\b",
    lambda D: lincomb("out", C3, three(D), out=t(other(D))))
add("lincomb-out-out-shape", ValueError, r"\bout\b",
    lambda D: lincomb("out", C3, three(D), out=t(D, N * 2)))
add("lincomb-out-out-meta", RuntimeError, r"\bout\b",
    lambda D: lincomb("out", C3, three(D), out=meta(D)))
add("lincomb-out-out-noncontiguous", RuntimeError, r"\bout\b.*contiguous",
    lambda D: (lambda o: lincomb("out", C3, three(D), out=o[0], extra=[o[1]]))(noncontig(D)))
add("lincomb-out-tensors1-noncontiguous", RuntimeError, r"tensors\[1\].*contiguous",
    lambda D: (lambda nc: lincomb("out", C3, [t(D), nc[0], t(D)], extra=[nc[1]]))(noncontig(D)))
add("lincomb-inplace-tensors1-noncontiguous", RuntimeError, r"tensors\[1\].*contiguous",
    lambda D: (lambda nc: lincomb("inplace", C3, [t(D), nc[0], t(D)], extra=[nc[1]]))(noncontig(D)))
add("lincomb-inplace-tensors0-noncontiguous", RuntimeError, r"tensors\[0\].*contiguous",
    lambda D: (lambda nc: lincomb("inplace", C3, [nc[0], t(D), t(D)], extra=[nc[1]]))(noncontig(D)))


def _lincomb_overlap(D, form):
    buf = t(D, N + 1, seed=4)
    if form == "out":  # out = buf[:-1] partially overlaps tensors[1] = buf[1:]
        return lincomb("out", C3, [t(D), buf[1:], t(D, seed=1)], out=buf[:-1], extra=[buf])
    return lincomb("inplace", C3, [buf[:-1], buf[1:], t(D, seed=1)], extra=[buf])


add("lincomb-out-partially-overlaps-tensors1", RuntimeError, r"overlaps tensors\[1\]",
    lambda D: _lincomb_overlap(D, "out"))
add("lincomb-inplace-partially-overlaps-tensors1", RuntimeError, r"overlaps tensors\[1\]",
    lambda D: _lincomb_overlap(D, "inplace"))


# -------------------------------------------------------------- multi_axpby_

def maxpby(outs, xs, ys, a=0.5, b=2.0, extra=()):
    listed = [v for lst in (outs, xs, ys) if isinstance(lst, (list, tuple)) for v in lst]
    return (lambda: ops.multi_axpby_(outs, a, xs, b, ys)), [*listed, *extra]


def lists3(D, seed=20):
    return ([t(D, seed=seed + i) for i in range(3)], [t(D, seed=seed + 3 + i) for i in range(3)],
            [t(D, seed=seed + 6 + i) for i in range(3)])


def _replace(lst, i, v):
    lst = list(lst)
    lst[i] = v
    return lst


def _ma(name, exc, match, factory, bug=None):
    add(f"multi_axpby-{name}", exc, match, lambda D: maxpby(*factory(D)), bug)


_ma("xs-shorter", ValueError, r"^xs\b", lambda D: (lambda o, x, y: (o, x[:2], y))(*lists3(D)))
_ma("ys-longer", ValueError, r"^ys\b", lambda D: (lambda o, x, y: (o, x, y + [t(D)]))(*lists3(D)))
_ma("outs-empty-xs-not", ValueError, r"^xs\b", lambda D: ([], [t(D)], [t(D)]))
_ma("xs1-dtype", TypeError, r"xs\[1\]",
    lambda D: (lambda o, x, y: (o, _replace(x, 1, t(other(D))), y))(*lists3(D)))
_ma("ys2-shape", ValueError, r"ys\[2\]",
    lambda D: (lambda o, x, y: (o, x, _replace(y, 2, t(D, N + 1))))(*lists3(D)))
_ma("ys1-meta", RuntimeError, r"ys\[1\]",
    lambda D: (lambda o, x, y: (o, x, _replace(y, 1, meta(D))))(*lists3(D)))
_ma("outs1-int", TypeError, r"outs\[1\]",
    lambda D: (lambda o, x, y: (_replace(o, 1, torch.zeros(N, dtype=torch.int32)),
                                _replace(x, 1, torch.zeros(N, dtype=torch.int32)),
                                _replace(y, 1, torch.zeros(N, dtype=torch.int32))))(*lists3(D)))
_ma("xs0-bool", TypeError, r"xs\[0\]",
    lambda D: (lambda o, x, y: (o, _replace(x, 0, torch.ones(N, dtype=torch.bool)), y))(*lists3(D)))
_ma("outs1-noncontiguous", RuntimeError, r"outs\[1\].*contiguous",
    lambda D: (lambda o, x, y, nc: (_replace(o, 1, nc[0]), x, y, 0.5, 2.0, [nc[1]]))(*lists3(D), noncontig(D)))
_ma("xs2-noncontiguous", RuntimeError, r"xs\[2\].*contiguous",
    lambda D: (lambda o, x, y, nc: (o, _replace(x, 2, nc[0]), y, 0.5, 2.0, [nc[1]]))(*lists3(D), noncontig(D)))
_ma("ys0-noncontiguous", RuntimeError, r"ys\[0\].*contiguous",
    lambda D: (lambda o, x, y, nc: (o, x, _replace(y, 0, nc[0]), 0.5, 2.0, [nc[1]]))(*lists3(D), noncontig(D)))
_ma("a-str", TypeError, r"^a\b", lambda D: (*lists3(D), "0.5"))
_ma("b-none", TypeError, r"^b\b", lambda D: (*lists3(D), 0.5, None))
_ma("outs-is-a-tensor", TypeError, r"^outs\b", lambda D: (t(D), [t(D)], [t(D)]))
_ma("xs1-float", TypeError, r"xs\[1\]", lambda D: (lambda o, x, y: (o, _replace(x, 1, 1.0), y))(*lists3(D)))
_ma("ys-none", TypeError, r"^ys\b", lambda D: (lambda o, x, y: (o, x, None))(*lists3(D)))


def _outs_overlap(D):
    buf = t(D, 2 * N, seed=30)
    o, x, y = lists3(D)
    return [buf[0:N], o[1], buf[N // 2:N // 2 + N]], x, y, 0.5, 2.0, [buf]


def _outs_duplicate(D):
    o, x, y = lists3(D)
    return [o[0], o[1], o[0]], x, y


def _xs_aliases_other_out(D):
    o, x, y = lists3(D)
    return o, [x[0], o[0], x[2]], y


def _xs_partially_overlaps_own_out(D):
    buf = t(D, N + 1, seed=31)
    o, x, y = lists3(D)
    return [buf[1:], o[1], o[2]], [buf[:-1], x[1], x[2]], y, 0.5, 2.0, [buf]


def _ys_partially_overlaps_other_out(D):
    buf = t(D, 2 * N, seed=32)
    o, x, y = lists3(D)
    return [o[0], buf[:N], o[2]], x, [y[0], y[1], buf[N - 2:2 * N - 2]], 0.5, 2.0, [buf]


_ma("outs-overlap-each-other", RuntimeError, r"outs\[0\] and outs\[2\] overlap", _outs_overlap)
_ma("outs-same-tensor-twice", RuntimeError, r"outs\[[02]\] and outs\[[02]\] overlap", _outs_duplicate)
_ma("xs1-is-outs0", RuntimeError, r"xs\[1\] overlaps outs\[0\]", _xs_aliases_other_out)
_ma("xs0-partially-overlaps-outs0", RuntimeError, r"xs\[0\] overlaps outs\[0\]",
    _xs_partially_overlaps_own_out)
_ma("ys2-partially-overlaps-outs1", RuntimeError, r"ys\[2\] overlaps outs\[1\]",
    _ys_partially_overlaps_other_out)


# Mixed dtypes: the Python layer groups the list by dtype; when a later group is
# bad, the earlier (valid) groups must not have been written either.
def _mixed(D, bad):
    OD = other(D)
    dts = [D, OD, D, OD]
    outs = [t(dt, seed=40 + i) for i, dt in enumerate(dts)]
    xs = [t(dt, seed=50 + i) for i, dt in enumerate(dts)]
    ys = [t(dt, seed=60 + i) for i, dt in enumerate(dts)]
    extra = []
    if bad == "shape":
        xs[3] = t(OD, N + 1)
    elif bad == "dtype":
        ys[3] = t(D)
    elif bad == "noncontiguous":
        ys[1], base = noncontig(OD)
        extra.append(base)
    elif bad == "int":
        outs[3] = xs[3] = ys[3] = torch.zeros(N, dtype=torch.int64)
    elif bad == "meta":
        xs[3] = meta(OD)
    return outs, xs, ys, 0.5, 2.0, extra


_ma("mixed-dtypes-later-group-shape", ValueError, r"xs\[3\]", lambda D: _mixed(D, "shape"))
_ma("mixed-dtypes-later-group-dtype", TypeError, r"ys\[3\]", lambda D: _mixed(D, "dtype"))
_ma("mixed-dtypes-later-group-noncontiguous", RuntimeError, r"ys\[1\].*contiguous",
    lambda D: _mixed(D, "noncontiguous"))
_ma("mixed-dtypes-later-group-int", TypeError, r"outs\[3\]", lambda D: _mixed(D, "int"))
_ma("mixed-dtypes-later-group-meta", RuntimeError, r"xs\[3\]", lambda D: _mixed(D, "meta"))


def _cross_group_overlap(D):
    """outs[0] (float32) and outs[1] (float64) are views of the same bytes."""
    buf = torch.zeros(2 * N, dtype=torch.float64)
    o32 = buf.view(torch.float32)[0:N]         # bytes [0, 4N)
    o64 = buf[N // 4:N // 4 + N]                # bytes [2N, 10N)
    xs = [t(torch.float32, seed=70), t(torch.float64, seed=71)]
    ys = [t(torch.float32, seed=72), t(torch.float64, seed=73)]
    return [o32, o64], xs, ys, 0.5, 2.0, [buf]


_ma("mixed-dtypes-outs-overlap-across-groups", RuntimeError, r"outs\[0\] and outs\[1\] overlap",
    _cross_group_overlap)


# -------------------------------------------------------------- multi_blend_

def mblend(targets, source, alphas=0.25, extra=()):
    listed = [v for v in targets if isinstance(v, torch.Tensor)] if isinstance(targets, list) else []
    if isinstance(source, torch.Tensor):
        listed.append(source)
    elif isinstance(source, list):
        listed += [v for v in source if isinstance(v, torch.Tensor)]
    return (lambda: ops.multi_blend_(targets, source, alphas)), [*listed, *extra]


def targets3(D, seed=80):
    return [t(D, seed=seed + i) for i in range(3)]


def _mb(name, exc, match, factory, bug=None):
    add(f"multi_blend-{name}", exc, match, lambda D: mblend(*factory(D)), bug)


_mb("sources-length", ValueError, r"^sources\b", lambda D: (targets3(D), targets3(D, 90)[:2]))
_mb("sources-empty-list", ValueError, r"^sources\b", lambda D: (targets3(D), []))
_mb("alphas-length", ValueError, r"^alphas\b", lambda D: (targets3(D), t(D), [0.1, 0.2]))
_mb("alphas-empty", ValueError, r"^alphas\b", lambda D: (targets3(D), t(D), []))
_mb("shared-source-dtype", TypeError, r"sources\[0\]", lambda D: (targets3(D), t(other(D))))
_mb("shared-source-shape", ValueError, r"sources\[0\]", lambda D: (targets3(D), t(D, N + 1)))
_mb("shared-source-meta", RuntimeError, r"sources\[0\]", lambda D: (targets3(D), meta(D)))
_mb("shared-source-int", TypeError, r"sources\[0\]", lambda D: (targets3(D), torch.zeros(N, dtype=torch.int32)))
_mb("sources1-dtype", TypeError, r"sources\[1\]",
    lambda D: (targets3(D), _replace(targets3(D, 90), 1, t(other(D)))))
_mb("sources1-meta", RuntimeError, r"sources\[1\]",
    lambda D: (targets3(D), _replace(targets3(D, 90), 1, meta(D))))
_mb("targets1-complex", TypeError, r"targets\[1\]",
    lambda D: (_replace(targets3(D), 1, torch.zeros(N, dtype=torch.complex64)),
               _replace(targets3(D, 90), 1, torch.zeros(N, dtype=torch.complex64))))
_mb("targets1-noncontiguous", RuntimeError, r"targets\[1\].*contiguous",
    lambda D: (lambda nc: (_replace(targets3(D), 1, nc[0]), t(D), 0.5, [nc[1]]))(noncontig(D)))
_mb("sources2-noncontiguous", RuntimeError, r"sources\[2\].*contiguous",
    lambda D: (lambda nc: (targets3(D), _replace(targets3(D, 90), 2, nc[0]), 0.5, [nc[1]]))(noncontig(D)))
_mb("shared-source-noncontiguous", RuntimeError, r"sources\[0\].*contiguous",
    lambda D: (lambda nc: (targets3(D), nc[0], 0.5, [nc[1]]))(noncontig(D)))
_mb("target-is-the-shared-source", RuntimeError, r"sources\[0\] overlaps targets\[1\]",
    lambda D: (lambda ts: (ts, ts[1]))(targets3(D)))


def _target_overlaps_shared_source(D):
    buf = t(D, 2 * N, seed=91)
    return [buf[:N], t(D)], buf[N // 2:N // 2 + N], 0.5, [buf]


def _targets_overlap(D):
    buf = t(D, 2 * N, seed=92)
    return [buf[:N], t(D), buf[N - 1:2 * N - 1]], targets3(D, 90), 0.5, [buf]


_mb("target-partially-overlaps-shared-source", RuntimeError, r"sources\[0\] overlaps targets\[0\]",
    _target_overlaps_shared_source)
_mb("targets-overlap-each-other", RuntimeError, r"targets\[0\] and targets\[2\] overlap", _targets_overlap)
_mb("sources1-is-targets0", RuntimeError, r"sources\[1\] overlaps targets\[0\]",
    lambda D: (lambda ts: (ts, [t(D), ts[0], t(D)]))(targets3(D)))
_mb("alphas-str", TypeError, r"^alphas\b", lambda D: (targets3(D), t(D), "0.5"))
_mb("alphas1-str", TypeError, r"alphas\[1\]", lambda D: (targets3(D), t(D), [0.5, "x", 0.5]))
_mb("alphas-none", TypeError, r"^alphas\b", lambda D: (targets3(D), t(D), None))
_mb("alphas-complex", TypeError, r"^alphas\b", lambda D: (targets3(D), t(D), 0.5j))
_mb("source-none", TypeError, r"^source\b", lambda D: (targets3(D), None))
_mb("source1-float", TypeError, r"source\[1\]", lambda D: (targets3(D), [t(D), 1.0, t(D)]))
_mb("targets-none", TypeError, r"^targets\b", lambda D: (None, t(D)))
_mb("targets-is-a-tensor", TypeError, r"^targets\b", lambda D: (t(D), t(D)))


def _mixed_blend(D, bad):
    OD = other(D)
    dts = [D, OD, D, OD]
    targets = [t(dt, seed=100 + i) for i, dt in enumerate(dts)]
    sources = [t(dt, seed=110 + i) for i, dt in enumerate(dts)]
    alphas, extra, source = 0.5, [], sources
    if bad == "noncontiguous":
        sources[3], base = noncontig(OD)
        extra.append(base)
    elif bad == "alphas":
        alphas = [0.1, 0.2, 0.3]
    elif bad == "shared-source":
        source = t(D)
    elif bad == "shape":
        sources[1] = t(OD, N - 1)
    return targets, source, alphas, extra


_mb("mixed-dtypes-later-group-noncontiguous", RuntimeError, r"sources\[3\].*contiguous",
    lambda D: _mixed_blend(D, "noncontiguous"))
_mb("mixed-dtypes-later-group-shape", ValueError, r"sources\[1\]", lambda D: _mixed_blend(D, "shape"))
_mb("mixed-dtypes-alphas-length", ValueError, r"^alphas\b", lambda D: _mixed_blend(D, "alphas"))
_mb("mixed-dtypes-shared-source", TypeError, r"sources\[0\]", lambda D: _mixed_blend(D, "shared-source"))


# ------------------------------------------------------------------- the test

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("factory, exc, match, bug", CASES)
def test_rejected_and_nothing_written(backend, request, dtype, factory, exc, match, bug):
    if bug and backend == "compiled":
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    call, tensors = factory(dtype)
    before = snapshot(tensors)
    with pytest.raises(exc, match=match):
        call()
    assert_unchanged(before)


@pytest.mark.parametrize("op", ["axpby_", "blend_", "lincomb_"])
def test_inplace_noncontiguous_target_message_names_the_target(backend, op):
    """A non-contiguous in-place target is reported under the caller's name for it."""
    x, base = noncontig(torch.float32)
    y = t(torch.float32)
    call, name = {
        "axpby_": (lambda: ops.axpby_(1.0, x, 2.0, y), r"^x\b"),
        "blend_": (lambda: ops.blend_(x, y, 0.5), r"^x\b"),
        "lincomb_": (lambda: ops.lincomb_([1.0, 2.0], [x, y]), r"^tensors\[0\]"),
    }[op]
    before = snapshot([base, y])
    with pytest.raises(RuntimeError, match=name + r".*contiguous"):
        call()
    assert_unchanged(before)


def test_multi_blend_single_target_is_the_shared_source(backend):
    """A shared source may not overlap any target, also when there is only one
    (the ops alone cannot tell a shared source from a one-entry source list)."""
    x = t(torch.float32)
    before = snapshot([x])
    with pytest.raises(RuntimeError, match=r"sources\[0\] overlaps targets\[0\]"):
        ops.multi_blend_([x], x, 0.3)
    assert_unchanged(before)


# ---------------------------- gradients are never silently dropped (D13)
# The out=, in-place and list forms are not differentiable: with grad mode on,
# any tensor of theirs that requires grad is an error naming it (as torch's own
# out= functions raise), before anything is written. Coefficients given as
# tensors that require grad would be taken as constants: rejected too.

def _leaf(n=N, seed=7):
    return t(torch.float32, n, seed=seed).requires_grad_()


def _f(n=N, seed=0):
    return t(torch.float32, n, seed=seed)


def _grad_cases():
    def case(name, match, build):
        return pytest.param(build, match, id=name)

    return [
        case("axpby-out-is-x-y-requires-grad", r"^y\b.*requires grad",
             lambda: (lambda x, leaf: ((lambda: ops.axpby(1.0, x, 1.0, leaf, out=x)), [x, leaf]))(_f(), _leaf())),
        case("axpby-out-x-requires-grad", r"^x\b.*requires grad",
             lambda: (lambda leaf, y, o: ((lambda: ops.axpby(1.0, leaf, 1.0, y, out=o)), [leaf, y, o]))(_leaf(), _f(seed=1), _f(seed=2))),
        case("axpby-out-requires-grad", r"^out\b.*requires grad",
             lambda: (lambda x, y, o: ((lambda: ops.axpby(1.0, x, 1.0, y, out=o)), [x, y, o]))(_f(), _f(seed=1), _leaf())),
        case("axpby_-y-requires-grad", r"^y\b.*requires grad",
             lambda: (lambda x, leaf: ((lambda: ops.axpby_(0.5, x, 2.0, leaf)), [x, leaf]))(_f(), _leaf())),
        case("axpby_-x-requires-grad", r"^x\b.*requires grad",
             lambda: (lambda leaf, y: ((lambda: ops.axpby_(0.5, leaf, 2.0, y)), [leaf, y]))(_leaf(), _f(seed=1))),
        case("blend-out-y-requires-grad", r"^y\b.*requires grad",
             lambda: (lambda x, leaf: ((lambda: ops.blend(x, leaf, 0.3, out=x)), [x, leaf]))(_f(), _leaf())),
        case("blend_-y-requires-grad", r"^y\b.*requires grad",
             lambda: (lambda x, leaf: ((lambda: ops.blend_(x, leaf, 0.3)), [x, leaf]))(_f(), _leaf())),
        case("lincomb-out-tensors1-requires-grad", r"^tensors\[1\].*requires grad",
             lambda: (lambda x, leaf, o: ((lambda: ops.lincomb([1.0, 2.0], [x, leaf], out=o)), [x, leaf, o]))(_f(), _leaf(), _f(seed=2))),
        case("lincomb_-tensors1-requires-grad", r"^tensors\[1\].*requires grad",
             lambda: (lambda x, leaf: ((lambda: ops.lincomb_([1.0, 2.0], [x, leaf], 0.5)), [x, leaf]))(_f(), _leaf())),
        case("multi_axpby-ys1-requires-grad", r"^ys\[1\].*requires grad",
             lambda: (lambda o, x, leaf: ((lambda: ops.multi_axpby_(o, 1.0, x, 1.0, [x[0], leaf])), [*o, *x, leaf]))(
                 [_f(), _f(seed=1)], [_f(seed=2), _f(seed=3)], _leaf())),
        case("multi_axpby-mixed-dtypes-ys3-requires-grad", r"^ys\[3\].*requires grad",
             lambda: (lambda o, x, y: ((lambda: ops.multi_axpby_(o, 1.0, x, 1.0, y)), [*o, *x, *y]))(
                 [t(dt, seed=k) for k, dt in enumerate([torch.float32, torch.float64] * 2)],
                 [t(dt, seed=10 + k) for k, dt in enumerate([torch.float32, torch.float64] * 2)],
                 [t(dt, seed=20 + k).requires_grad_(k == 3) for k, dt in enumerate([torch.float32, torch.float64] * 2)])),
        case("multi_blend-sources1-requires-grad", r"^sources\[1\].*requires grad",
             lambda: (lambda ts, leaf: ((lambda: ops.multi_blend_(ts, [ts[0].clone(), leaf], 0.5)), [*ts, leaf]))(
                 [_f(), _f(seed=1)], _leaf())),
        case("multi_blend-shared-source-requires-grad", r"^sources\[0\].*requires grad",
             lambda: (lambda ts, leaf: ((lambda: ops.multi_blend_(ts, leaf, 0.5)), [*ts, leaf]))([_f(), _f(seed=1)], _leaf())),
        case("multi_blend-single-target-shared-source-requires-grad", r"^sources\[0\].*requires grad",
             lambda: (lambda x, leaf: ((lambda: ops.multi_blend_([x], leaf, 0.5)), [x, leaf]))(_f(), _leaf())),
        case("multi_blend-targets1-requires-grad", r"^targets\[1\].*requires grad",
             lambda: (lambda ts, s: ((lambda: ops.multi_blend_(ts, s, 0.5)), [*ts, s]))([_f(), _leaf()], _f(seed=3))),
        case("blend_noise-best-requires-grad", r"^best\b.*requires grad",
             lambda: (lambda x, leaf: ((lambda: ops.blend_noise_(x, leaf, 0.5, 0.1, seed=1)), [x, leaf]))(_f(), _leaf())),
        case("multi_blend_noise-sources0-requires-grad", r"^sources\[0\].*requires grad",
             lambda: (lambda ts, leaf: ((lambda: ops.multi_blend_noise_(ts, leaf, 0.5, 0.1, seed=1, streams=[0, 1])),
                                     [*ts, leaf]))([_f(), _f(seed=1)], _leaf())),
        # coefficients given as tensors that require grad
        case("axpby-a-tensor-requires-grad", r"^a\b.*requires grad",
             lambda: (lambda x, y, a: ((lambda: ops.axpby(a, x, 1.0, y)), [x, y, a]))(
                 _f(), _f(seed=1), torch.tensor(2.0, requires_grad=True))),
        case("axpby_-b-tensor-requires-grad", r"^b\b.*requires grad",
             lambda: (lambda x, y, b: ((lambda: ops.axpby_(1.0, x, b, y)), [x, y, b]))(
                 _f(), _f(seed=1), torch.tensor(2.0, requires_grad=True))),
        case("blend-alpha-tensor-requires-grad", r"^alpha\b.*requires grad",
             lambda: (lambda x, y, w: ((lambda: ops.blend(x, y, w)), [x, y, w]))(
                 _f(), _f(seed=1), torch.tensor(0.3, requires_grad=True))),
        case("lincomb-coeffs1-tensor-requires-grad", r"^coeffs\[1\].*requires grad",
             lambda: (lambda x, y, c: ((lambda: ops.lincomb([1.0, c], [x, y])), [x, y, c]))(
                 _f(), _f(seed=1), torch.tensor(0.3, requires_grad=True))),
        case("lincomb-coeffs-tensor-requires-grad", r"^coeffs\b.*requires grad",
             lambda: (lambda x, y, c: ((lambda: ops.lincomb(c, [x, y])), [x, y, c]))(
                 _f(), _f(seed=1), torch.tensor([0.3, 0.5], requires_grad=True))),
        case("lincomb-bias-tensor-requires-grad", r"^bias\b.*requires grad",
             lambda: (lambda x, c: ((lambda: ops.lincomb([1.0], [x], c)), [x, c]))(
                 _f(), torch.tensor(0.3, requires_grad=True))),
        case("multi_blend-alphas-tensor-requires-grad", r"^alphas\b.*requires grad",
             lambda: (lambda ts, s, w: ((lambda: ops.multi_blend_(ts, s, w)), [*ts, s, w]))(
                 [_f(), _f(seed=1)], _f(seed=2), torch.tensor([0.3, 0.5], requires_grad=True))),
        case("multi_axpby-a-tensor-requires-grad", r"^a\b.*requires grad",
             lambda: (lambda o, x, a: ((lambda: ops.multi_axpby_(o, a, x, 1.0, x)), [*o, *x, a]))(
                 [_f()], [_f(seed=1)], torch.tensor(0.3, requires_grad=True))),
        case("blend_noise-weight-tensor-requires-grad", r"^weight\b.*requires grad",
             lambda: (lambda x, s, w: ((lambda: ops.blend_noise_(x, s, w, 0.1, seed=1)), [x, s, w]))(
                 _f(), _f(seed=1), torch.tensor(0.3, requires_grad=True))),
    ]


@pytest.mark.parametrize("build, match", _grad_cases())
def test_requires_grad_is_rejected_under_grad_mode(backend, build, match):
    call, tensors = build()
    before = snapshot(tensors)
    with pytest.raises(RuntimeError, match=match):
        call()
    assert_unchanged(before)
    with torch.no_grad():  # not an error there: nothing would be differentiated
        call()


def test_the_allocating_forms_stay_differentiable(backend):
    x, y = _leaf(seed=1), _leaf(seed=2)
    assert ops.axpby(1.0, x, 2.0, y).requires_grad
    assert ops.blend(x, y, 0.3).requires_grad
    assert ops.lincomb([1.0, 2.0], [x, y]).requires_grad
    # tensor coefficients that do not require grad are plain numbers
    z = ops.axpby(torch.tensor(2.0), x, torch.tensor(1.0, dtype=torch.float64), y)
    z.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


# --------------------------- the in-place forms name the caller's arguments (D14)
# axpby_(a, x, b, y) writes x; it never calls it "out" (nor blend_noise_ "self").

def _inplace_name_cases():
    F, D = torch.float32, torch.float64

    def case(name, exc, match, build):
        return pytest.param(exc, match, build, id=name)

    def buf(n=N + 1, seed=3):
        return t(F, n, seed=seed)

    cases = []
    for op, call in [("axpby_", lambda x, y: ops.axpby_(0.5, x, 2.0, y)),
                     ("blend_", lambda x, y: ops.blend_(x, y, 0.25)),
                     ("blend_noise_", lambda x, y: ops.blend_noise_(x, y, 0.25, 0.5, seed=3))]:
        second = "best" if op == "blend_noise_" else "y"
        cases += [
            case(f"{op}-x-int", TypeError, r"^x\b", (lambda c: lambda: (c, torch.arange(N, dtype=torch.int32), t(F)))(call)),
            case(f"{op}-x-dtype-vs-{second}", TypeError, rf"^{second} has dtype .* but x has dtype",
                 (lambda c: lambda: (c, t(D), t(F)))(call)),
            case(f"{op}-{second}-shape", ValueError, rf"^{second} has shape .* but x has shape",
                 (lambda c: lambda: (c, t(F), t(F, N + 1)))(call)),
            case(f"{op}-x-noncontiguous", RuntimeError, r"^x must be contiguous",
                 (lambda c: lambda: (c, *noncontig(F)[:1], t(F)))(call)),
            case(f"{op}-{second}-noncontiguous", RuntimeError, rf"^{second} must be contiguous",
                 (lambda c: lambda: (c, t(F), noncontig(F)[0]))(call)),
            case(f"{op}-x-partially-overlaps-{second}", RuntimeError, rf"^x partially overlaps {second}\b",
                 (lambda c: lambda: (lambda b: (c, b[1:], b[:-1]))(buf()))(call)),
            case(f"{op}-x-meta", RuntimeError, rf"^{second} is on cpu but x is on meta",
                 (lambda c: lambda: (c, meta(F), t(F)))(call)),
        ]
    lc = lambda ts: ops.lincomb_([1.0, -2.0, 0.5], ts, 0.5)  # noqa: E731
    cases += [
        case("lincomb_-tensors0-int", TypeError, r"^tensors\[0\]",
             lambda: (lc, [torch.arange(N), torch.arange(N), torch.arange(N)])),
        case("lincomb_-tensors1-dtype", TypeError, r"^tensors\[1\] has dtype .* but tensors\[0\]",
             lambda: (lc, [t(F), t(D), t(F)])),
        case("lincomb_-tensors2-shape", ValueError, r"^tensors\[2\] has shape .* but tensors\[0\]",
             lambda: (lc, [t(F), t(F), t(F, N + 1)])),
        case("lincomb_-tensors0-noncontiguous", RuntimeError, r"^tensors\[0\] must be contiguous",
             lambda: (lc, [noncontig(F)[0], t(F), t(F)])),
        case("lincomb_-tensors0-partially-overlaps-tensors1", RuntimeError,
             r"^tensors\[0\] partially overlaps tensors\[1\]", lambda: (lambda b: (lc, [b[:-1], b[1:], t(F)]))(buf())),
        case("lincomb_-tensors0-partially-overlaps-tensors2", RuntimeError,
             r"^tensors\[0\] partially overlaps tensors\[2\]", lambda: (lambda b: (lc, [b[1:], t(F), b[:-1]]))(buf())),
    ]
    ma = lambda outs, xs, ys: ops.multi_axpby_(outs, 0.5, xs, 2.0, ys)  # noqa: E731
    mb = lambda ts, src: ops.multi_blend_(ts, src, 0.5)  # noqa: E731
    mn = lambda ts, src: ops.multi_blend_noise_(ts, src, 0.5, 0.1, seed=1, streams=list(range(len(ts))))  # noqa: E731
    cases += [
        case("multi_axpby-xs1-dtype-vs-mixed-outs", TypeError, r"^xs\[1\] has dtype .* but outs\[1\]",
             lambda: (ma, [t(F), t(D)], [t(F), t(F)], [t(F), t(F)])),
        case("multi_axpby-xs1-shape", ValueError, r"^xs\[1\] has shape .* but outs\[1\]",
             lambda: (ma, [t(F), t(F)], [t(F), t(F, N + 1)], [t(F), t(F)])),
        case("multi_axpby-outs0-noncontiguous", RuntimeError, r"^outs\[0\] must be contiguous",
             lambda: (ma, [noncontig(F)[0], t(F)], [t(F), t(F)], [t(F), t(F)])),
        case("multi_axpby-outs0-partially-overlaps-own-xs0", RuntimeError, r"^xs\[0\] overlaps outs\[0\]",
             lambda: (lambda b: (ma, [b[1:]], [b[:-1]], [t(F)]))(buf())),
        case("multi_blend-targets1-dtype", TypeError, r"^sources\[0\] has dtype .* but targets\[1\]",
             lambda: (mb, [t(D), t(F)], t(D))),
        case("multi_blend-targets0-noncontiguous", RuntimeError, r"^targets\[0\] must be contiguous",
             lambda: (mb, [noncontig(F)[0]], t(F))),
        case("multi_blend-shared-source-shape", ValueError, r"^sources\[0\] has shape .* but targets\[0\]",
             lambda: (mb, [t(F)], t(F, N + 1))),
        case("multi_blend-single-target-overlaps-shared-source", RuntimeError, r"^sources\[0\] overlaps targets\[0\]",
             lambda: (lambda b: (mb, [b[1:]], b[:-1]))(buf())),
        case("multi_blend_noise-targets1-dtype", TypeError, r"^sources\[1\] has dtype .* but targets\[1\]",
             lambda: (mn, [t(F), t(F)], [t(F), t(D)])),
        case("multi_blend_noise-single-target-is-shared-source", RuntimeError, r"^sources\[0\] overlaps targets\[0\]",
             lambda: (lambda x: (mn, [x], x))(t(F))),
    ]
    return cases


@pytest.mark.parametrize("exc, match, build", _inplace_name_cases())
def test_inplace_errors_name_the_callers_argument(backend, exc, match, build):
    call, *args = build()
    tensors = [v for a in args for v in (a if isinstance(a, list) else [a])]
    before = snapshot(tensors + [v._base for v in tensors if v._base is not None])
    with pytest.raises(exc, match=match) as info:
        call(*args)
    message = str(info.value)
    assert not re.search(r"\b(out|self)\b(?!=)", message), message
    assert_unchanged(before)
