"""The list forms over lists of several (device, dtype) groups: one fused call per
group, decided up front (no op call is ever made with a mixed list), and work
linear in the list length: the argument checks (in particular the aliasing
checks) must not be quadratic (D8: 30k tensors in two dtypes took 84 s).

The cost is measured by counting the Python lines the package executes, not by
timing: a quadratic check shows as 4x the lines for 2x the tensors."""
from __future__ import annotations

import os
import sys

import pytest
import torch

import nytorch_ext
from nytorch_ext import ops
from reference import make

_PKG = os.path.dirname(os.path.abspath(nytorch_ext.__file__)) + os.sep


def lines_executed(fn) -> int:
    """How many Python lines of nytorch_ext itself ``fn()`` executes."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(_PKG) else None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(old)
    return count


DTYPE_PAIRS = [(torch.float32, torch.float64), (torch.float32,)]


def _lists(n, dtypes, k, seed=0):
    return [[make(3, dtypes[i % len(dtypes)], seed=seed + 1000 * j + i) for i in range(n)] for j in range(k)]


def _calls(name, n, dtypes):
    if name == "multi_axpby_":
        outs, xs, ys = _lists(n, dtypes, 3)
        return lambda: ops.multi_axpby_(outs, 0.5, xs, 2.0, ys)
    if name == "multi_axpby_-aliased":
        xs, ys = _lists(n, dtypes, 2)
        return lambda: ops.multi_axpby_(xs, 0.5, xs, 2.0, ys)
    if name == "multi_blend_":
        ts, srcs = _lists(n, dtypes, 2)
        alphas = [0.1 * (i % 10) for i in range(n)]
        return lambda: ops.multi_blend_(ts, srcs, alphas)
    if name == "multi_blend_noise_":
        ts, srcs = _lists(n, dtypes, 2)
        return lambda: ops.multi_blend_noise_(ts, srcs, 0.5, 0.1, seed=1, streams=list(range(n)))
    raise AssertionError(name)


NAMES = ["multi_axpby_", "multi_axpby_-aliased", "multi_blend_", "multi_blend_noise_"]


@pytest.mark.parametrize("dtypes", DTYPE_PAIRS, ids=["two-dtypes", "one-dtype"])
@pytest.mark.parametrize("name", NAMES)
def test_list_forms_do_linear_python_work(backend, name, dtypes):
    small, large = 250, 1000
    lines_small = lines_executed(_calls(name, small, dtypes))
    lines_large = lines_executed(_calls(name, large, dtypes))
    # linear: about 4x the lines for 4x the tensors (a quadratic check: 16x)
    assert lines_large <= 5 * lines_small + 200, (lines_small, lines_large)
    assert lines_large <= 500 * large, (lines_small, lines_large)  # quadratic: millions


@pytest.mark.parametrize("name", ["multi_axpby_", "multi_blend_", "multi_blend_noise_"])
def test_mixed_lists_are_grouped_before_any_op_call(backend, monkeypatch, name):
    """One op call per (device, dtype) group, each with one dtype: the grouping is
    decided before calling (not by trying the whole list and catching its error)."""
    real = getattr(ops._impl, name)
    seen = []

    def spy(targets, *args, **kwargs):
        seen.append(sorted({str(t.dtype) for t in targets}))
        return real(targets, *args, **kwargs)

    monkeypatch.setattr(ops._impl, name, spy)
    dtypes = (torch.float32, torch.float64, torch.bfloat16)
    _calls(name, 7, dtypes)()
    assert sorted(seen) == [["torch.bfloat16"], ["torch.float32"], ["torch.float64"]]
    seen.clear()
    _calls(name, 7, (torch.float16,))()
    assert seen == [["torch.float16"]]

