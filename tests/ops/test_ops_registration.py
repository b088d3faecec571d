"""The ops as PyTorch operators: torch.library.opcheck, torch.compile, autograd,
version counters, backend reporting, and compiled/fallback agreement."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import nytorch_ext
from nytorch_ext import ops
from reference import (
    BACKENDS, DTYPES, FALLBACK_OPS, OPS, assert_bitwise_equal, assert_matches, assert_unchanged,
    dtype_id, make, make_list, ref_axpby, ref_blend, snapshot, use_backend,
)

requires_compiled = pytest.mark.skipif(not ops.is_compiled(), reason="compiled kernels not loaded")
lib = torch.ops.nytorch_ext if ops.is_compiled() else None


# ------------------------------------------------------------------- opcheck

def _opcheck_cases():
    """(op name, args builder(dtype, n) -> (args, kwargs))."""
    def xs(dtype, n, k=2, seed=0):
        return [make(n, dtype, seed=seed + j) for j in range(k)]

    def fresh(dtype, n):
        return torch.zeros(n, dtype=dtype)

    return [
        ("axpby", lambda d, n: ((2.0, *xs(d, n)[:1], -0.5, xs(d, n, seed=5)[0]), {})),
        ("axpby_out", lambda d, n: ((2.0, *xs(d, n)[:1], -0.5, xs(d, n, seed=5)[0]), {"out": fresh(d, n)})),
        ("axpby_out", lambda d, n: (lambda x, y: ((2.0, x, -0.5, y), {"out": x}))(*xs(d, n))),
        ("blend", lambda d, n: ((*xs(d, n), 0.3), {})),
        ("blend_out", lambda d, n: ((*xs(d, n), 0.7), {"out": fresh(d, n)})),
        ("blend_out", lambda d, n: (lambda x, y: ((x, y, 0.7), {"out": y}))(*xs(d, n))),
        ("lincomb", lambda d, n: (lambda x, y: (([1.0, -2.0, 0.5], [x, y, x], 0.25), {}))(*xs(d, n))),
        ("lincomb_out", lambda d, n: (([1.0, -2.0, 0.5], xs(d, n, 3), 0.25), {"out": fresh(d, n)})),
        ("lincomb_out", lambda d, n: (lambda t: (([1.0, 2.0, 3.0], t, 0.0), {"out": t[0]}))(xs(d, n, 3))),
        ("multi_axpby_", lambda d, n: (([fresh(d, n), fresh(d, 2 * n)], 2.0, [make(n, d), make(2 * n, d)],
                                        3.0, [make(n, d, seed=1), make(2 * n, d, seed=2)]), {})),
        ("multi_axpby_", lambda d, n: (lambda x, y: ((x, 2.0, x, 3.0, y), {}))(xs(d, n), xs(d, n, seed=7))),
        ("multi_blend_", lambda d, n: ((xs(d, n, 3), [make(n, d, seed=9)], [0.5]), {})),
        ("multi_blend_", lambda d, n: ((xs(d, n, 3), xs(d, n, 3, seed=9), [0.0, 0.5, 1.0]), {})),
        # a shared source with a single target; alphas outside [0, 1]
        ("multi_blend_", lambda d, n: (([make(n, d)], [make(n, d, seed=9)], [-0.75], True), {})),
        ("multi_blend_", lambda d, n: ((xs(d, n, 2), [make(n, d, seed=9)], [1.5, -3.0], True), {})),
        ("blend", lambda d, n: ((*xs(d, n), -0.5), {})),
        ("blend_out", lambda d, n: ((*xs(d, n), 2.5), {"out": fresh(d, n)})),
        ("lincomb", lambda d, n: (([0.5, -2.0], xs(d, n)), {})),  # bias left at its default
        ("lincomb_out", lambda d, n: (([0.5, -2.0], xs(d, n), 0.0), {"out": fresh(d, n)})),
        ("multi_scale_", lambda d, n: ((xs(d, n, 3), [0.5, -2.0, 0.0]), {})),
        ("multi_scale_", lambda d, n: (([make(n, d), make(2 * n, d, seed=3)], [1.5]), {})),  # one shared scale
    ]


@requires_compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("n", [1, 37])
@pytest.mark.parametrize("name, build", [pytest.param(name, build, id=f"{name}-{i}")
                                         for i, (name, build) in enumerate(_opcheck_cases())])
def test_opcheck(name, build, dtype, n):
    args, kwargs = build(dtype, n)
    torch.library.opcheck(getattr(lib, name).default, args, kwargs)


@requires_compiled
@pytest.mark.parametrize("name", ["axpby", "blend", "lincomb"])
def test_opcheck_with_autograd(name):
    x = make(29, torch.float64, seed=1).requires_grad_()
    y = make(29, torch.float64, seed=2).requires_grad_()
    args = {"axpby": (2.0, x, -3.0, y), "blend": (x, y, 0.3),
            "lincomb": ([1.0, 2.0, -0.5], [x, y, x], 0.5)}[name]
    torch.library.opcheck(getattr(lib, name).default, args)
    more = {"axpby": (0.0, x, 1.0, y), "blend": (x, y, -1.25), "lincomb": ([1.0, -2.0], [x, y])}[name]
    torch.library.opcheck(getattr(lib, name).default, more)  # lincomb: bias at its default


@requires_compiled
def test_registered_ops_and_schemas():
    expected = {
        "axpby": "axpby(float a, Tensor x, float b, Tensor y) -> Tensor",
        "axpby_out": "axpby_out(float a, Tensor x, float b, Tensor y, *, Tensor(a!) out) -> ()",
        "blend": "blend(Tensor x, Tensor y, float alpha) -> Tensor",
        "blend_out": "blend_out(Tensor x, Tensor y, float alpha, *, Tensor(a!) out) -> ()",
        "lincomb": "lincomb(float[] coeffs, Tensor[] tensors, float bias=0.) -> Tensor",
        "lincomb_out": "lincomb_out(float[] coeffs, Tensor[] tensors, float bias, *, Tensor(a!) out) -> ()",
        "multi_axpby_": "multi_axpby_(Tensor(a!)[] outs, float a, Tensor[] xs, float b, Tensor[] ys) -> ()",
        "multi_blend_": "multi_blend_(Tensor(a!)[] targets, Tensor[] sources, float[] alphas, "
                        "bool shared_source=False) -> ()",
        "multi_scale_": "multi_scale_(Tensor(a!)[] targets, float[] scales) -> ()",
    }
    for name, schema in expected.items():
        assert str(getattr(lib, name).default._schema) == "nytorch_ext::" + schema
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"nytorch_ext::{name}", "CPU") or \
            name in ("axpby", "blend", "lincomb")


@requires_compiled
def test_registered_multi_op_rejects_a_mixed_dtype_list():
    """The registered list ops take one (device, dtype) group; grouping is the
    Python layer's job. A mixed list is rejected before anything is written."""
    outs = [torch.zeros(4), torch.zeros(4, dtype=torch.float64)]
    xs = [torch.ones(4), torch.ones(4, dtype=torch.float64)]
    with pytest.raises(TypeError, match=r"outs\[1\]"):
        lib.multi_axpby_(outs, 1.0, xs, 1.0, xs)
    assert all(torch.equal(o, torch.zeros_like(o)) for o in outs)


# -------------------------------------------------------------- torch.compile

def _compiled_workload(x, y, ts, src):
    """Functional, out=, in-place and multi forms in one graph."""
    a = ops.axpby(2.0, x, -0.5, y)
    b = ops.blend(x, y, 0.25)
    c = ops.lincomb([1.0, 2.0, -1.0], [x, y, a], 0.5)
    d = x * 1.0
    ops.axpby_(0.5, d, 2.0, y)
    ops.blend_(d, y, 0.75)
    ops.lincomb_([1.0, 3.0], [d, y], 1.0)
    e = torch.empty_like(x)
    ops.blend(a, b, 0.6, out=e)
    ops.multi_blend_(ts, src, [0.1, 0.9])
    ops.multi_axpby_(ts, 2.0, ts, 1.0, [x, y])
    return a + 1.0, b, c, d, e


def _workload_inputs(dtype, n=1000):
    x, y, src = make(n, dtype, seed=1), make(n, dtype, seed=2), make(n, dtype, seed=3)
    return x, y, [make(n, dtype, seed=4), make(n, dtype, seed=5)], src


def _assert_same_as_eager(fn, inputs_fn, backend_name):
    eager_inputs, compiled_inputs = inputs_fn(), inputs_fn()
    expected = fn(*eager_inputs)
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True, backend=backend_name)(*compiled_inputs)
    for g, e in zip(got, expected):
        assert_bitwise_equal(g, e, what="compiled result")
    # the in-place effects on the list arguments too
    for g, e in zip(compiled_inputs[2], eager_inputs[2]):
        assert_bitwise_equal(g, e, what="compiled in-place list")


@requires_compiled
def test_torch_compile_inductor_fullgraph_matches_eager():
    _assert_same_as_eager(_compiled_workload, lambda: _workload_inputs(torch.float32), "inductor")


def _mixed_workload(outs, xs, ys, ts, srcs):
    ops.multi_axpby_(outs, 2.0, xs, -1.0, ys)
    ops.multi_blend_(ts, srcs, [0.25, 0.5, 0.75, 1.0])
    return outs, ts, ops.axpby(1.0, xs[1], 2.0, ys[1])


def _mixed_inputs():
    xs = [make(10 + i, dt, seed=i) for i, dt in enumerate(DTYPES)]
    ys = [make(10 + i, dt, seed=10 + i) for i, dt in enumerate(DTYPES)]
    return [torch.zeros_like(x) for x in xs], xs, ys, [x.clone() for x in xs], ys


# torch.compile needs the registered ops (with their fake implementations): the
# pure-PyTorch fallback validates with data_ptr() and does not trace fullgraph.

@requires_compiled
def test_torch_compile_aot_eager_single_dtype():
    _assert_same_as_eager(_compiled_workload, lambda: _workload_inputs(torch.bfloat16), "aot_eager")


@requires_compiled
def test_torch_compile_mixed_dtype_lists():
    def fn(outs, xs, ys, ts, srcs):
        out = _mixed_workload(outs, xs, ys, ts, srcs)
        return [*out[0], *out[1], out[2]]

    eager_inputs, compiled_inputs = _mixed_inputs(), _mixed_inputs()
    expected = fn(*eager_inputs)
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(*compiled_inputs)
    for g, e in zip(got, expected):
        assert_bitwise_equal(g, e, what="compiled mixed-dtype list")


# ------------------------------------------------------------------- autograd

@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_gradcheck(backend, layout):
    def inp(seed):
        t = make((5, 7), torch.float64, seed=seed)
        return (t.t() if layout == "transposed" else t).detach().requires_grad_()

    x, y, z = inp(1), inp(2), inp(3)
    assert torch.autograd.gradcheck(lambda x, y: ops.axpby(1.5, x, -0.25, y), (x, y))
    for w in (0.0, 0.3, 0.5, 0.8, 1.0):
        assert torch.autograd.gradcheck(lambda x, y, w=w: ops.blend(x, y, w), (x, y))
    assert torch.autograd.gradcheck(lambda x, y, z: ops.lincomb([1.0, -2.0, 0.5, 3.0], [x, y, z, x], 0.25),
                                    (x, y, z))
    assert torch.autograd.gradgradcheck(lambda x, y: ops.axpby(1.5, x, -0.25, y), (x, y))
    assert torch.autograd.gradgradcheck(lambda x, y: ops.blend(x, y, 0.3), (x, y))
    assert torch.autograd.gradgradcheck(lambda x, y: ops.lincomb([2.0, -1.0], [x, y], 1.0), (x, y))


def test_gradients_are_the_coefficients(backend):
    x = make(50, torch.float32, seed=1).requires_grad_()
    y = make(50, torch.float32, seed=2).requires_grad_()
    r = ops.axpby(3.0, x, -2.0, y)
    assert r.requires_grad
    r.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 3.0)) and torch.equal(y.grad, torch.full_like(y, -2.0))
    x.grad = y.grad = None
    ops.blend(x, y, 0.25).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 0.75)) and torch.equal(y.grad, torch.full_like(y, 0.25))
    x.grad = y.grad = None
    ops.lincomb([1.0, 2.0, 4.0], [x, y, x], 7.0).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 5.0)) and torch.equal(y.grad, torch.full_like(y, 2.0))


MUTATIONS = {
    "axpby_": lambda v: ops.axpby_(2.0, v, 1.0, torch.ones_like(v)),
    "blend_": lambda v: ops.blend_(v, torch.zeros_like(v), 0.5),
    "lincomb_": lambda v: ops.lincomb_([2.0], [v]),
    "axpby-out": lambda v: ops.axpby(2.0, torch.ones_like(v), 1.0, torch.ones_like(v), out=v),
    "blend-out": lambda v: ops.blend(torch.ones_like(v), torch.zeros_like(v), 0.5, out=v),
    "lincomb-out": lambda v: ops.lincomb([3.0], [torch.ones_like(v)], out=v),
    "multi_axpby_": lambda v: ops.multi_axpby_([v], 2.0, [v], 1.0, [torch.ones_like(v)]),
    "multi_blend_": lambda v: ops.multi_blend_([v], torch.zeros_like(v), 0.5),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_mutation_is_seen_by_autograd(backend, mutation):
    """Writing a tensor that autograd saved for backward bumps its version
    counter, so backward raises (as for torch's own in-place ops) instead of
    silently using the new values."""
    w = torch.ones(3, requires_grad=True)
    v = torch.ones(3)
    loss = (w * v).sum()  # saves v
    version = v._version
    MUTATIONS[mutation](v)
    assert v._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# ------------------------------------------------------------ backend report

def test_backend_info_and_is_compiled():
    info = ops.backend_info()
    assert set(info) >= {"cpu", "cuda", "cpu_simd", "cuda_runtime_version", "load_error"}
    assert nytorch_ext.is_compiled is ops.is_compiled and nytorch_ext.backend_info is ops.backend_info
    assert isinstance(ops.is_compiled(), bool)
    if ops.is_compiled():
        assert info["cpu"] == "compiled"
        assert info["load_error"] is None
        assert info["cpu_simd"] in ("DEFAULT", "AVX2", "AVX512")
        if info["cpu_simd"] != "DEFAULT":  # the same choice as PyTorch's own kernels
            assert info["cpu_simd"] == torch.backends.cpu.get_cpu_capability()
    else:
        assert info["cpu"] == "pytorch-fallback" and info["cuda"] == "pytorch-fallback"
        assert isinstance(info["load_error"], str) and info["load_error"]
    assert info["cuda"] in ("compiled", "pytorch-fallback")
    if info["cuda"] == "compiled":
        assert isinstance(info["cuda_runtime_version"], int) and info["cuda_runtime_version"] >= 11000
    else:
        assert info["cuda_runtime_version"] is None


def test_fallback_backend_fixture_swaps_every_implementation(monkeypatch):
    use_backend("fallback", monkeypatch)
    assert {op.name for op in FALLBACK_OPS} == set(vars(ops._impl))
    for op in FALLBACK_OPS:
        assert getattr(ops._impl, op.name) is op.python_impl


def test_a_stale_build_is_detected_by_its_missing_ops():
    from nytorch_ext.ops import _extension
    if ops.is_compiled():
        assert _extension.missing_ops() == []  # this build defines every op Python expects
    # without the extension (NYTORCH_EXT_DISABLE_C=1) no op is registered at all
    defined = ["no_such_op"] if ops.is_compiled() else ["blend", "no_such_op"]
    assert _extension.missing_ops(("blend", "no_such_op"), ()) == defined
    assert set(_extension.REQUIRED_OPS) >= {"blend_noise_", "multi_blend_noise_", "_views"}
    # the plain functions of _C count too (a build without them is as stale)
    assert set(_extension.REQUIRED_FUNCTIONS) >= {"views_in_place", "entries_are"}
    if ops.is_compiled():
        assert _extension.missing_ops((), ("views_in_place", "no_such_function")) == ["no_such_function"]


def test_disabled_extension_runs_on_the_fallback(tmp_path):
    """NYTORCH_EXT_DISABLE_C=1: import warns once, reports the fallback, and the
    ops still compute the right values."""
    script = textwrap.dedent("""
        import warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import torch
            from nytorch_ext import ops
        assert any("fallback" in str(w.message) for w in caught), [str(w.message) for w in caught]
        assert not ops.is_compiled()
        info = ops.backend_info()
        assert info["cpu"] == "pytorch-fallback", info
        assert info["load_error"] == "disabled by NYTORCH_EXT_DISABLE_C", info
        x, y = torch.arange(5.0), torch.ones(5)
        assert torch.equal(ops.axpby(2.0, x, 3.0, y), 2 * x + 3)
        assert torch.equal(ops.blend(x, y, 1.0), y)
        assert torch.equal(ops.lincomb([1.0, 1.0], [x, y], 1.0), x + 2)
        t = [x.clone()]
        ops.multi_blend_(t, y, 0.0)
        assert torch.equal(t[0], x)
        try:
            ops.axpby(1.0, x, 1.0, torch.ones(4))
        except ValueError as e:
            assert "y" in str(e)
        else:
            raise AssertionError("shape mismatch accepted")
        print("ok")
    """)
    env = dict(os.environ, NYTORCH_EXT_DISABLE_C="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


# -------------------------------------------- compiled and fallback agree

def _run_all(backend_name, monkeypatch, dtype):
    """Every op on fixed inputs: [(result, magnitude of its terms)]."""
    with monkeypatch.context() as m:
        use_backend(backend_name, m)
        results = []
        for op in OPS:
            inputs = [make(65537, dtype, seed=7 + k, offset=k % 2) for k in range(op.arity)]
            results.append((op.alloc(inputs), op.ref(inputs)[1] * op.factor))
        sizes, ws = [0, 5, 65537, 100], [0.0, 0.3, 0.6, 1.0]
        targets = make_list(sizes, dtype, seed=20, offset=1)
        sources = make_list(sizes, dtype, seed=30)
        mags = [ref_blend(t, s, w)[1] for t, s, w in zip(targets, sources, ws)]
        ops.multi_blend_(targets, sources, ws)
        results += zip(targets, mags)
        # fresh inputs: the blended targets already differ by rounding between backends
        xs = make_list(sizes, dtype, seed=50, offset=1)
        ys = make_list(sizes, dtype, seed=40)
        outs = [torch.empty_like(x) for x in xs]
        ops.multi_axpby_(outs, -1.5, xs, 0.25, ys)
        results += [(o, ref_axpby(-1.5, x, 0.25, y)[1]) for o, x, y in zip(outs, xs, ys)]
        return results


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_compiled_and_fallback_agree(monkeypatch, dtype):
    compiled = _run_all(BACKENDS[0], monkeypatch, dtype)
    fallback = _run_all(BACKENDS[1], monkeypatch, dtype)
    assert len(compiled) == len(fallback) == len(OPS) + 8
    for k, ((c, mag), (f, _)) in enumerate(zip(compiled, fallback)):
        # within rounding of each other: each is within rounding of the exact value
        assert_matches(c, (f.double(), 2 * mag), dtype, what=f"compiled vs fallback, result #{k}")


# ------------------------------------- autograd: every argument form (D1)

def _leaves(n=2, shape=(4, 3)):
    return [make(shape, torch.float64, seed=60 + k).requires_grad_() for k in range(n)]


@pytest.mark.parametrize("bias", ["default", 0.0, -0.0, 0.75, -3.0])
def test_lincomb_gradcheck_default_and_nonzero_bias(backend, bias):
    """The dispatcher drops arguments equal to their defaults (bias=0.) before
    autograd sees them: backward must return one gradient per argument passed."""
    x, y = _leaves()
    if bias == "default":
        def fn(x, y):
            return ops.lincomb([0.5, -2.0], [x, y])
    else:
        def fn(x, y):
            return ops.lincomb([0.5, -2.0], [x, y], bias)
    assert torch.autograd.gradcheck(fn, (x, y))
    assert torch.autograd.gradgradcheck(fn, (x, y))


def test_lincomb_backward_with_the_default_bias(backend):
    x, y = (make(6, torch.float32, seed=k).requires_grad_() for k in (1, 2))
    ops.lincomb([0.5, -2.0], [x, y]).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 0.5)) and torch.equal(y.grad, torch.full_like(y, -2.0))
    x.grad = y.grad = None
    ops.lincomb([0.5, -2.0], [x, y], bias=0.0).sum().backward()  # the default, passed explicitly
    assert torch.equal(x.grad, torch.full_like(x, 0.5))
    x.grad = None
    ops.lincomb([3.0], [x]).sum().backward()  # one tensor
    assert torch.equal(x.grad, torch.full_like(x, 3.0))


def test_lincomb_backward_when_only_some_tensors_require_grad(backend):
    x = make(6, torch.float64, seed=1).requires_grad_()
    c = make(6, torch.float64, seed=2)  # a constant
    ops.lincomb([2.0, -1.0, 4.0], [x, c, x]).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 6.0))
    assert torch.autograd.gradcheck(lambda x: ops.lincomb([2.0, -1.0], [x, c]), (x.detach().requires_grad_(),))


@pytest.mark.parametrize("a, b", [(1.5, -0.25), (1.0, 1.0), (0.0, -3.0), (-2.0, 0.0)])
def test_axpby_gradcheck(backend, a, b):
    x, y = _leaves()
    assert torch.autograd.gradcheck(lambda x, y: ops.axpby(a, x, b, y), (x, y))
    assert torch.autograd.gradgradcheck(lambda x, y: ops.axpby(a, x, b, y), (x, y))


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0, -0.5, 1.75, -3.0])
def test_blend_gradcheck(backend, alpha):
    x, y = _leaves()
    assert torch.autograd.gradcheck(lambda x, y: ops.blend(x, y, alpha), (x, y))
    assert torch.autograd.gradgradcheck(lambda x, y: ops.blend(x, y, alpha), (x, y))


# ------------------------------------ aliasing rules under torch.compile (D12)
# The fakes see the FakeTensors' storages, so a call the eager op rejects for
# its aliasing is rejected when torch.compile traces it too (at the real kernel
# it would be too late: functionalization hands it fresh copies of the outputs).

def _shared_is_target():
    ts = [make(8, torch.float32, seed=k) for k in range(3)]
    return (lambda ts: ops.multi_blend_(ts, ts[1], 0.5)), (ts,), r"sources\[0\] overlaps targets\[1\]"


def _single_target_is_shared_source():
    x = make(8, torch.float32, seed=1)
    return (lambda x: ops.multi_blend_([x], x, 0.3)), (x,), r"sources\[0\] overlaps targets\[0\]"


def _noise_shared_is_target():
    ts = [make(8, torch.float32, seed=k) for k in range(2)]
    return ((lambda ts: ops.multi_blend_noise_(ts, ts[0], 0.5, 0.1, seed=1, streams=[0, 1])), (ts,),
            r"sources\[0\] overlaps targets\[0\]")


def _out_partially_overlaps_x():
    buf, y = make(9, torch.float32, seed=1), make(8, torch.float32, seed=2)
    return (lambda buf, y: ops.axpby(1.0, buf[:-1], 2.0, y, out=buf[1:])), (buf, y), r"out partially overlaps x\b"


def _blend_inplace_partial():
    buf = make(9, torch.float32, seed=1)
    return (lambda buf: ops.blend_(buf[1:], buf[:-1], 0.3)), (buf,), r"^x partially overlaps y\b|\bx partially overlaps y\b"


def _lincomb_inplace_partial():
    buf, z = make(9, torch.float32, seed=1), make(8, torch.float32, seed=2)
    return ((lambda buf, z: ops.lincomb_([1.0, 2.0, 3.0], [buf[:-1], buf[1:], z])), (buf, z),
            r"tensors\[0\] partially overlaps tensors\[1\]")


def _noise_inplace_partial():
    buf = make(9, torch.float32, seed=1)
    return ((lambda buf: ops.blend_noise_(buf[1:], buf[:-1], 0.3, 0.1, seed=1)), (buf,),
            r"\bx partially overlaps best\b")


def _outs_overlap():
    buf = make(16, torch.float32, seed=1)
    xs = [make(8, torch.float32, seed=k) for k in (2, 3)]
    return ((lambda buf, xs: ops.multi_axpby_([buf[:8], buf[4:12]], 1.0, xs, 2.0, xs)), (buf, xs),
            r"outs\[0\] and outs\[1\] overlap")


def _xs_is_other_out():
    outs = [make(8, torch.float32, seed=k) for k in (1, 2)]
    ys = [make(8, torch.float32, seed=k) for k in (3, 4)]
    return ((lambda outs, ys: ops.multi_axpby_(outs, 1.0, [outs[1], outs[0]], 2.0, ys)), (outs, ys),
            r"xs\[0\] overlaps outs\[1\]")


COMPILE_ALIASING = {
    "multi_blend-shared-source-is-a-target": _shared_is_target,
    "multi_blend-single-target-is-the-shared-source": _single_target_is_shared_source,
    "multi_blend_noise-shared-source-is-a-target": _noise_shared_is_target,
    "axpby-out-partially-overlaps-x": _out_partially_overlaps_x,
    "blend_-partial-overlap": _blend_inplace_partial,
    "lincomb_-partial-overlap": _lincomb_inplace_partial,
    "blend_noise_-partial-overlap": _noise_inplace_partial,
    "multi_axpby-outs-overlap": _outs_overlap,
    "multi_axpby-xs-is-another-out": _xs_is_other_out,
}


def _flat_tensors(args):
    out = []
    for a in args:
        out += a if isinstance(a, list) else [a]
    return out


@requires_compiled
@pytest.mark.parametrize("fullgraph", [True, False], ids=["fullgraph", "graph-breaks-allowed"])
@pytest.mark.parametrize("case", list(COMPILE_ALIASING))
def test_torch_compile_rejects_what_eager_rejects(case, fullgraph):
    fn, args, match = COMPILE_ALIASING[case]()
    before = snapshot(_flat_tensors(args))
    with pytest.raises(RuntimeError, match=match):
        fn(*args)  # eager
    assert_unchanged(before)
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match=match):
        torch.compile(fn, backend="aot_eager", fullgraph=fullgraph)(*args)
    assert_unchanged(before)


@requires_compiled
def test_torch_compile_single_target_with_a_shared_source():
    """One target and a shared source that does not overlap it traces fullgraph
    (the op is told the source is shared; no data_ptr() in traced code)."""
    def fn(x, src):
        ops.multi_blend_([x], src, 0.25)
        ops.multi_blend_noise_([x], src, 0.5, 0.0, seed=1, streams=[0])
        return x

    def inputs():
        return make(40, torch.float32, seed=1), make(40, torch.float32, seed=2)

    expected = fn(*inputs())
    torch._dynamo.reset()
    got = torch.compile(fn, backend="aot_eager", fullgraph=True)(*inputs())
    assert_bitwise_equal(got, expected)
