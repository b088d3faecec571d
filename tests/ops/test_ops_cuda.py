"""nytorch_ext.ops on CUDA: the correctness tests of test_ops.py on CUDA tensors,
the CUDA-specific paths (vector/scalar paths by alignment, multi-pass lincomb,
multi-tensor launch splitting, streams, graphs, 64-bit indexing) and CPU<->CUDA
parity. Every test is marked ``cuda`` and skipped without a GPU.

On a build without CUDA kernels, the registered ops run CUDA tensors on the
pure-PyTorch fallback (with a RuntimeWarning, filtered here), so the same tests
then check that path.
"""
from __future__ import annotations

import pytest
import torch

from nytorch_ext import ops
from reference import (
    DTYPES, ENDPOINT_FORMS, NAN, OPS, SIZES, assert_bitwise_equal, assert_list_matches,
    assert_matches, assert_unchanged, blend_at, blend_spec, check_forms, dtype_id, f64,
    inputs_for, lincomb_coeffs, list_sizes, make, make_list, no_zeros, ref_axpby, ref_blend,
    ref_lincomb, snapshot, specials,
)

CUDA = "cuda"

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
    pytest.mark.filterwarnings("ignore:nytorch_ext was built without CUDA kernels:RuntimeWarning"),
]

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
all_ops = pytest.mark.parametrize("op", OPS, ids=repr)
requires_compiled = pytest.mark.skipif(not ops.is_compiled(), reason="compiled kernels not loaded")


def on_cuda(tensors):
    return [t.to(CUDA) for t in tensors]


# ------------------------------------------------------------ single-tensor ops

@all_ops
@dtypes
@pytest.mark.parametrize("n", SIZES)
def test_cuda_matches_reference(backend, op, dtype, n):
    check_forms(op, inputs_for(op, n, dtype, seed=n, device=CUDA), dtype)


@all_ops
@dtypes
@pytest.mark.parametrize("n", [1, 5, 127, 65537])
@pytest.mark.parametrize("offsets", [(1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 2, 2), (0, 4, 8)],
                         ids=["all", "first", "others", "out", "all-by-2", "mixed"])
def test_cuda_unaligned_views(backend, op, dtype, n, offsets):
    """16-byte vector loads only when every pointer is aligned: any misaligned
    pointer (one element, or 2/4/8 elements = 8/16 bytes for some dtypes) takes
    the scalar path, and both give the reference."""
    first, others, out = offsets
    inputs = inputs_for(op, n, dtype, seed=3, offsets=[first] + [others] * (op.arity - 1), device=CUDA)
    check_forms(op, inputs, dtype, out_offset=out)


@pytest.mark.parametrize("op, k", [pytest.param(op, k, id=f"{op!r}-out=input{k}")
                                   for op in OPS for k in range(op.arity)])
@dtypes
def test_cuda_out_aliases_an_input(backend, op, k, dtype):
    inputs = inputs_for(op, 100_003, dtype, seed=17, offsets=[k % 2] * op.arity, device=CUDA)
    expected = op.ref(inputs)
    others = snapshot([t for j, t in enumerate(inputs) if j != k])
    assert op.out(inputs, inputs[k]) is inputs[k]
    assert_matches(inputs[k], expected, dtype, factor=op.factor)
    assert_unchanged(others)


@all_ops
@dtypes
def test_cuda_one_tensor_for_every_argument(backend, op, dtype):
    x = make(100_003, dtype, seed=19, device=CUDA)
    expected = op.ref([x] * op.arity)
    assert_matches(op.alloc([x] * op.arity), expected, dtype, factor=op.factor)
    assert op.inplace([x] * op.arity) is x
    assert_matches(x, expected, dtype, factor=op.factor, what="in place with x is y")


@all_ops
@dtypes
def test_cuda_nan_and_inf_propagate(backend, op, dtype):
    inputs = [specials(1029, dtype, seed=31 + k, device=CUDA) for k in range(op.arity)]
    check_forms(op, inputs, dtype)


@dtypes
def test_cuda_zero_times_inf_is_nan(backend, dtype):
    n = 1029
    inf = torch.full((n,), float("inf"), dtype=dtype, device=CUDA)
    zeros = torch.zeros(n, dtype=dtype, device=CUDA)
    for name, r in {
        "axpby": ops.axpby(0.0, inf, 1.0, zeros),
        "axpby_": ops.axpby_(0.0, inf.clone(), 1.0, zeros),
        "lincomb": ops.lincomb([1.0, 0.0], [zeros, inf]),
        "lincomb K=20": ops.lincomb([1.0] * 19 + [0.0], [zeros] * 19 + [inf]),
        "multi_axpby_": ops.multi_axpby_([torch.empty_like(zeros)], 0.0, [inf], 1.0, [zeros])[0],
        "multi_blend_": ops.multi_blend_([inf.clone()], zeros, 1.0)[0],
    }.items():
        assert r.isnan().all(), name


@dtypes
@pytest.mark.parametrize("w", [0.0, 1.0])
@pytest.mark.parametrize("form", ENDPOINT_FORMS)
@pytest.mark.parametrize("offset", [0, 1])
def test_cuda_blend_endpoints_are_bit_exact(backend, dtype, w, form, offset):
    x = no_zeros(make(100_003, dtype, seed=37, offset=offset, scale=1e3, device=CUDA))
    y = no_zeros(make(100_003, dtype, seed=41, offset=offset, scale=1e-3, device=CUDA))
    assert_bitwise_equal(blend_at(form, x, y, w), x if w == 0 else y, what=f"blend {form} at {w}")


@pytest.mark.parametrize("w", [-0.5, 0.25, 0.5, 0.75, 1.5])
def test_cuda_blend_weights(backend, w):
    op = blend_spec(w)
    check_forms(op, inputs_for(op, 4099, torch.float32, seed=11, device=CUDA), torch.float32)


# ------------------------------------------------- lincomb: passes of 16 inputs

@dtypes
@pytest.mark.parametrize("k", [1, 2, 15, 16, 17, 20, 31, 32, 46])
@pytest.mark.parametrize("mode", ["alloc", "out", "out=first", "out=17th", "out=last", "inplace", "repeats"])
def test_cuda_lincomb_many_inputs(backend, dtype, k, mode):
    """One pass per 16 inputs on CUDA (later passes read the partial sum back from
    out); out may be any input, also one read in a later pass, and repeated."""
    index = {"out=first": 0, "out=17th": 16, "out=last": k - 1}.get(mode)
    if index is not None and index >= k:
        pytest.skip(f"K={k} has no input {index}")
    coeffs = lincomb_coeffs(k)
    tensors = [make(65537, dtype, seed=100 + j, offset=j % 2 if mode != "out" else 0, device=CUDA)
               for j in range(k)]
    if mode == "repeats":  # tensors[0] also at every 8th position, written in place
        tensors = [tensors[0] if j % 8 == 0 else t for j, t in enumerate(tensors)]
    expected = ref_lincomb(coeffs, tensors, 0.375)
    factor = max(1.0, k / 4)
    if mode == "alloc":
        result = ops.lincomb(coeffs, tensors, 0.375)
    elif mode == "out":
        result = torch.full_like(tensors[0], NAN)
        assert ops.lincomb(coeffs, tensors, 0.375, out=result) is result
    elif mode in ("inplace", "repeats"):
        result = ops.lincomb_(coeffs, tensors, 0.375)
        assert result is tensors[0]
    else:
        result = tensors[index]
        others = snapshot([t for j, t in enumerate(tensors) if j != index])
        assert ops.lincomb(coeffs, tensors, 0.375, out=result) is result
        assert_unchanged(others)
    assert_matches(result, expected, dtype, factor=factor, what=f"lincomb K={k} {mode}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_cuda_lincomb_scratch_from_the_caching_allocator(backend, dtype):
    """An output read again after lincomb's first pass of 16 inputs is copied to
    scratch memory first: it comes from PyTorch's caching allocator on the current
    stream (one more allocation there), and is back in its pool afterwards."""
    k = 20
    coeffs = lincomb_coeffs(k)
    tensors = [make(65537, dtype, seed=500 + j, device=CUDA) for j in range(k)]
    tensors[17] = tensors[0]  # out=tensors[0] is also read by the second pass
    expected = ref_lincomb(coeffs, tensors, 0.25)
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()
    ops.lincomb_(coeffs, tensors, 0.25)
    torch.cuda.synchronize()
    after = torch.cuda.memory_stats()
    assert_matches(tensors[0], expected, dtype, factor=k / 4, what="lincomb_ K=20, out read twice")
    if backend == "compiled" and ops.backend_info()["cuda"] == "compiled":
        assert after["allocation.all.allocated"] >= before["allocation.all.allocated"] + 1
        assert after["allocated_bytes.all.current"] == before["allocated_bytes.all.current"]


# ---------------------------------------------------------- multi-tensor ops

COUNTS = [1, 12, 111, 1000]


@dtypes
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("alias", ["fresh", "out=x", "out=y"])
def test_cuda_multi_axpby(backend, dtype, count, alias):
    sizes = list_sizes(count)
    xs = make_list(sizes, dtype, seed=43, offset=count % 2, device=CUDA)
    ys = make_list(sizes, dtype, seed=47, device=CUDA)
    expected = [ref_axpby(-0.7, x, 1.3, y) for x, y in zip(xs, ys)]
    outs = {"fresh": [torch.full_like(x, NAN) for x in xs], "out=x": xs, "out=y": ys}[alias]
    assert all(r is o for r, o in zip(ops.multi_axpby_(outs, -0.7, xs, 1.3, ys), outs))
    assert_list_matches(outs, expected, dtype)


@dtypes
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("source", ["shared", "per-target"])
@pytest.mark.parametrize("alphas", ["shared", "per-target"])
def test_cuda_multi_blend(backend, dtype, count, source, alphas):
    sizes = [257] * count if source == "shared" else list_sizes(count)
    targets = make_list(sizes, dtype, seed=53, offset=1, device=CUDA)
    if source == "shared":
        src = make(sizes[0], dtype, seed=59, device=CUDA)
        sources = [src] * count
    else:
        src = sources = make_list(sizes, dtype, seed=59, device=CUDA)
    ws = [(0.0, 1.0, 0.3, 0.5, 0.9, 0.05)[i % 6] for i in range(count)] if alphas == "per-target" else 0.35
    per = ws if isinstance(ws, list) else [ws] * count
    expected = [ref_blend(t, s, w) for t, s, w in zip(targets, sources, per)]
    ops.multi_blend_(targets, src, ws)
    assert_list_matches(targets, expected, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("layout", ["one-tensor-over-a-full-block-map", "more-blocks-and-slots-than-a-launch"])
def test_cuda_multi_launch_splitting(backend, dtype, layout):
    """A launch takes at most a kernel argument's worth of tensors (about 90 of
    them, fewer for blend with noise) in chunks sized for about 1024 blocks: a
    tensor of hundreds of chunks among small ones, and a list spanning several
    launches with empty tensors between."""
    if layout == "one-tensor-over-a-full-block-map":
        sizes = [5, 448 * 65536 + 7, 3]
    else:
        sizes = [5 * 65536 + 1, 0, 17] * 100  # 700 chunks of 200 non-empty tensors
    xs = make_list(sizes, dtype, seed=61, device=CUDA)
    ys = make_list(sizes, dtype, seed=67, device=CUDA)
    outs = [torch.full_like(x, NAN) for x in xs]
    ops.multi_axpby_(outs, 1.25, xs, -0.5, ys)
    assert_list_matches(outs, [ref_axpby(1.25, x, -0.5, y) for x, y in zip(xs, ys)], dtype)
    ws = [0.1 * (i % 11) for i in range(len(sizes))]
    expected = [ref_blend(x, y, w) for x, y, w in zip(xs, ys, ws)]
    ops.multi_blend_(xs, ys, ws)
    assert_list_matches(xs, expected, dtype)


@pytest.mark.parametrize("count", [12, 111])
def test_cuda_multi_mixed_dtypes_and_devices(backend, count):
    """dtypes and devices (CPU and CUDA) mixed in one list: grouped by the Python
    layer, each group on its own device."""
    sizes = list_sizes(count)
    dts = [DTYPES[i % len(DTYPES)] for i in range(count)]
    devs = ["cpu" if i % 3 == 0 else CUDA for i in range(count)]
    xs = [make(n, dt, seed=73 + i, device=d) for i, (n, dt, d) in enumerate(zip(sizes, dts, devs))]
    ys = [make(n, dt, seed=79 + i, device=d) for i, (n, dt, d) in enumerate(zip(sizes, dts, devs))]
    outs = [torch.empty_like(x) for x in xs]
    ops.multi_axpby_(outs, 1.5, xs, -0.25, ys)
    for i, (o, x, y) in enumerate(zip(outs, xs, ys)):
        assert o.device == x.device
        assert_matches(o, ref_axpby(1.5, x, -0.25, y), dts[i], what=f"outs[{i}]")
    ws = [0.1 * (i % 11) for i in range(count)]
    expected = [ref_blend(x, y, w) for x, y, w in zip(xs, ys, ws)]
    ops.multi_blend_(xs, ys, ws)
    for i, (t, e) in enumerate(zip(xs, expected)):
        assert_matches(t, e, dts[i], what=f"targets[{i}]")


# ------------------------------------------------------------ CPU <-> CUDA parity

def assert_parity(cpu_results, cuda_results, mags, dtype, what):
    """The CUDA results agree with the CPU ones within rounding."""
    assert len(cpu_results) == len(cuda_results) == len(mags)
    for i, (c, g, m) in enumerate(zip(cpu_results, cuda_results, mags)):
        assert g.device.type == "cuda" and c.device.type == "cpu"
        assert_matches(g, (f64(c), 2 * m), dtype, what=f"{what}[{i}] CUDA vs CPU")


@all_ops
@dtypes
def test_cuda_cpu_parity_single(backend, op, dtype):
    inputs = inputs_for(op, 1_000_003, dtype, seed=5)
    mag = op.ref(inputs)[1] * op.factor
    assert_parity([op.alloc(inputs)], [op.alloc(on_cuda(inputs))], [mag], dtype, op.name)
    cpu_t, gpu_t = inputs[0].clone(), inputs[0].to(CUDA)
    op.inplace([cpu_t] + inputs[1:])
    op.inplace([gpu_t] + on_cuda(inputs[1:]))
    assert_parity([cpu_t], [gpu_t], [mag], dtype, op.name + " in place")


@dtypes
@pytest.mark.parametrize("k", [20, 46])
def test_cuda_cpu_parity_lincomb_many_inputs(backend, dtype, k):
    coeffs = lincomb_coeffs(k)
    tensors = [make(100_003, dtype, seed=200 + j) for j in range(k)]
    mag = ref_lincomb(coeffs, tensors, 0.5)[1] * max(1.0, k / 4)
    cpu = ops.lincomb(coeffs, tensors, 0.5)
    gpu = ops.lincomb(coeffs, on_cuda(tensors), 0.5)
    assert_parity([cpu], [gpu], [mag], dtype, f"lincomb K={k}")
    cpu_t, gpu_t = tensors[0].clone(), tensors[0].to(CUDA)
    ops.lincomb_(coeffs, [cpu_t] + tensors[1:], 0.5)
    ops.lincomb_(coeffs, [gpu_t] + on_cuda(tensors[1:]), 0.5)
    assert_parity([cpu_t], [gpu_t], [mag], dtype, f"lincomb_ K={k}")


@dtypes
@pytest.mark.parametrize("shared", [True, False], ids=["one-scale", "per-target"])
def test_cuda_multi_scale_equals_torch_mul_bit_for_bit(backend, dtype, shared):
    """1000 tensors of many sizes (several launches, aligned and not) and the
    specials: CUDA gives torch.mul's bits, as the CPU does."""
    sizes = list_sizes(1000)
    targets = on_cuda(make_list(sizes, dtype, seed=700)) + [specials(64, dtype, seed=9, device=CUDA)]
    scales = [0.3] if shared else [(-2.0, 0.3, 0.0, 1.0, 3.25)[i % 5] for i in range(len(targets))]
    want = [t * scales[0 if shared else i] for i, t in enumerate(targets)]
    ops.multi_scale_(targets, scales)
    for i, (g, w) in enumerate(zip(targets, want)):
        assert_bitwise_equal(g, w, what=f"targets[{i}]")


@dtypes
@pytest.mark.parametrize("source", ["shared", "per-target"])
def test_cuda_cpu_parity_multi_1000_tensors(backend, dtype, source):
    sizes = list_sizes(1000)
    xs = make_list(sizes, dtype, seed=300)
    ys = make_list(sizes, dtype, seed=400)
    outs_cpu = [torch.empty_like(x) for x in xs]
    outs_gpu = [torch.empty_like(x) for x in on_cuda(xs)]
    ops.multi_axpby_(outs_cpu, 0.75, xs, -1.25, ys)
    ops.multi_axpby_(outs_gpu, 0.75, on_cuda(xs), -1.25, on_cuda(ys))
    mags = [ref_axpby(0.75, x, -1.25, y)[1] for x, y in zip(xs, ys)]
    assert_parity(outs_cpu, outs_gpu, mags, dtype, "multi_axpby_")

    if source == "shared":
        sizes = [129] * 1000
        targets = make_list(sizes, dtype, seed=500)
        src_cpu = make(129, dtype, seed=600)
        src_gpu, sources = src_cpu.to(CUDA), [src_cpu] * 1000
    else:
        targets = make_list(sizes, dtype, seed=500)
        src_cpu = sources = make_list(sizes, dtype, seed=600)
        src_gpu = on_cuda(src_cpu)
    ws = [i / 999 for i in range(1000)]
    mags = [ref_blend(t, s, w)[1] for t, s, w in zip(targets, sources, ws)]
    targets_gpu = on_cuda(targets)
    ops.multi_blend_(targets, src_cpu, ws)
    ops.multi_blend_(targets_gpu, src_gpu, ws)
    assert_parity(targets, targets_gpu, mags, dtype, "multi_blend_")


# ------------------------------------------------------------------ bad inputs

def _device_cases():
    def t(n=8, device=CUDA, seed=0):
        return make(n, torch.float32, seed=seed, device=device)

    cpu = "cpu"
    return [
        ("axpby-y-on-cpu", r"\by\b", lambda x, y, o: ops.axpby(1.0, x, 2.0, y.cpu())),
        ("axpby-out-on-cpu", r"\bout\b", lambda x, y, o: ops.axpby(1.0, x, 2.0, y, out=o.cpu())),
        ("axpby_-y-on-cpu", r"\by\b", lambda x, y, o: ops.axpby_(1.0, x, 2.0, y.cpu())),
        ("blend-out-on-cpu", r"\bout\b", lambda x, y, o: ops.blend(x, y, 0.5, out=o.cpu())),
        ("lincomb-tensors1-on-cpu", r"tensors\[1\]", lambda x, y, o: ops.lincomb([1.0, 2.0], [x, y.cpu()])),
        ("lincomb_-tensors1-on-cpu", r"tensors\[1\]", lambda x, y, o: ops.lincomb_([1.0, 2.0], [x, y.cpu()])),
        ("multi_axpby-xs1-on-cpu", r"xs\[1\]",
         lambda x, y, o: ops.multi_axpby_([o, x], 1.0, [y, t(device=cpu)], 1.0, [x.clone(), y])),
        ("multi_blend-shared-source-on-cpu", r"sources\[0\]", lambda x, y, o: ops.multi_blend_([x, o], y.cpu(), 0.5)),
        ("multi_blend-sources1-on-cpu", r"sources\[1\]",
         lambda x, y, o: ops.multi_blend_([x, o], [y, t(device=cpu)], 0.5)),
    ]


@pytest.mark.parametrize("name, match, call", [pytest.param(*c, id=c[0]) for c in _device_cases()])
def test_cuda_device_mismatch_rejected(backend, name, match, call):
    x, y, o = (make(8, torch.float32, seed=s, device=CUDA) for s in (1, 2, 3))
    before = snapshot([x, y, o])
    with pytest.raises(RuntimeError, match=match):
        call(x, y, o)
    assert_unchanged(before)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_two_devices(backend):
    """Tensors on a non-current GPU run there; a mix of GPUs is rejected."""
    dev = f"cuda:{torch.cuda.device_count() - 1}"
    x, y = make(65537, torch.float32, seed=1, device=dev), make(65537, torch.float32, seed=2, device=dev)
    assert torch.cuda.current_device() == 0
    r = ops.axpby(2.0, x, -1.0, y)
    assert r.device == x.device
    assert_matches(r, ref_axpby(2.0, x, -1.0, y), torch.float32)
    ts = [x.clone(), y.clone()]
    ops.multi_blend_(ts, [y, x], 0.25)
    assert_matches(ts[0], ref_blend(x, y, 0.25), torch.float32)
    before = snapshot([x])
    with pytest.raises(RuntimeError, match=r"\by\b"):
        ops.axpby_(1.0, x, 1.0, y.to("cuda:0"))
    assert_unchanged(before)


@pytest.mark.parametrize("op", ["axpby", "blend", "lincomb", "multi"])
def test_cuda_noncontiguous_and_overlap_rejected(backend, op):
    buf = make(33, torch.float32, seed=1, device=CUDA)
    y = make(16, torch.float32, seed=2, device=CUDA)
    before = snapshot([buf, y])
    with pytest.raises(RuntimeError, match="contiguous"):
        {"axpby": lambda: ops.axpby(1.0, buf[:32:2], 1.0, y, out=torch.empty_like(y)),
         "blend": lambda: ops.blend_(buf[:32:2], y, 0.5),
         "lincomb": lambda: ops.lincomb([1.0, 1.0], [y, buf[:32:2]], out=torch.empty_like(y)),
         "multi": lambda: ops.multi_blend_([y, buf[:32:2]], y.clone(), 0.5)}[op]()
    with pytest.raises(RuntimeError, match="overlap"):
        {"axpby": lambda: ops.axpby(1.0, buf[:16], 1.0, y, out=buf[1:17]),
         "blend": lambda: ops.blend(y, buf[:16], 0.5, out=buf[8:24]),
         "lincomb": lambda: ops.lincomb([1.0, 1.0], [y, buf[:16]], out=buf[2:18]),
         "multi": lambda: ops.multi_axpby_([buf[:16], buf[15:31]], 1.0, [y, y], 1.0, [y, y])}[op]()
    assert_unchanged(before)


# ------------------------------------------------------ streams, graphs, size

def test_cuda_runs_on_the_current_stream(backend):
    """The kernels are ordered on PyTorch's current stream: a kernel queued on a
    side stream after a long-running one sees its inputs' final values."""
    n = 1 << 20
    src = make(n, torch.float32, seed=1, device=CUDA)
    y = make(n, torch.float32, seed=2, device=CUDA)
    x = torch.zeros(n, device=CUDA)
    targets = [torch.zeros(n, device=CUDA), torch.zeros(n, device=CUDA)]
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # keeps the side stream busy for a while
        x.copy_(src)
        r = ops.axpby(2.0, x, -1.0, y)
        ops.blend_(x, y, 0.25)
        ops.multi_axpby_(targets, 1.0, [x, x], 1.0, [y, y])
    side.synchronize()
    assert_matches(r, ref_axpby(2.0, src, -1.0, y), torch.float32)
    blended = ref_blend(src, y, 0.25)
    assert_matches(x, blended, torch.float32)
    for t in targets:
        assert_matches(t, (blended[0] + f64(y), blended[1] + f64(y).abs()), torch.float32, factor=2)


def test_cuda_graph_capture_and_replay(backend):
    n = 100_003
    x = make(n, torch.float32, seed=1, device=CUDA)
    y = make(n, torch.float32, seed=2, device=CUDA)
    ts = [make(n, torch.float32, seed=3, device=CUDA), make(1000, torch.float32, seed=4, device=CUDA)]
    srcs = [y, make(1000, torch.float32, seed=5, device=CUDA)]
    out = torch.empty_like(x)

    def step():
        ops.axpby(0.5, x, 0.5, y, out=out)
        ops.lincomb_([1.0] * 20, [x] + [y] * 19, 0.0)
        ops.multi_blend_(ts, srcs, [0.5, 0.25])

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up, as torch.cuda.graphs recommends
        step()
    torch.cuda.current_stream().wait_stream(side)
    x0, t0 = x.clone(), [t.clone() for t in ts]

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    x.copy_(x0)
    for t, v in zip(ts, t0):
        t.copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    assert_matches(out, ref_axpby(0.5, x0, 0.5, y), torch.float32)
    assert_matches(x, ref_lincomb([1.0] * 20, [x0] + [y] * 19, 0.0), torch.float32, factor=5)
    for t, v, s, w in zip(ts, t0, srcs, [0.5, 0.25]):
        assert_matches(t, ref_blend(v, s, w), torch.float32)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["axpby_", "blend", "multi_blend_"])
def test_cuda_more_than_2_to_the_31_elements(backend, op):
    """64-bit indexing: the last elements of a 2**31 + 9 element bfloat16 tensor."""
    n = 2**31 + 9
    # x, y, a result and a bool mask; the fallback also makes float32 temporaries
    need = (8 if backend == "compiled" else 20) * n + (1 << 30)
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free GPU memory, has {free / 2**30:.1f}")
    x = torch.ones(n, dtype=torch.bfloat16, device=CUDA)
    y = torch.full((n,), 2.0, dtype=torch.bfloat16, device=CUDA)
    tail_x, tail_y = make(64, torch.bfloat16, seed=1), make(64, torch.bfloat16, seed=2)
    x[-64:], y[-64:] = tail_x.to(CUDA), tail_y.to(CUDA)
    if op == "axpby_":
        r, want, tail = ops.axpby_(2.0, x, 0.5, y), 3.0, ref_axpby(2.0, tail_x, 0.5, tail_y)
    elif op == "blend":
        r, want, tail = ops.blend(x, y, 0.75), 1.75, ref_blend(tail_x, tail_y, 0.75)
    else:
        r, want, tail = ops.multi_blend_([x], [y], 0.75)[0], 1.75, ref_blend(tail_x, tail_y, 0.75)
    assert bool((r[:-64] == want).all())
    assert_matches(r[-64:], tail, torch.bfloat16)


# ------------------------------------------------------- registration on CUDA

def test_cuda_backend_info():
    info = ops.backend_info()
    if info["cuda"] == "compiled":
        assert isinstance(info["cuda_runtime_version"], int) and info["cuda_runtime_version"] >= 11000
    for name in ("axpby_out", "blend_out", "lincomb_out", "multi_axpby_", "multi_blend_"):
        if ops.is_compiled():
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"nytorch_ext::{name}", "CUDA"), name


@requires_compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=dtype_id)
def test_cuda_opcheck(dtype):
    lib = torch.ops.nytorch_ext
    x, y, z = (make(1029, dtype, seed=s, device=CUDA) for s in (1, 2, 3))
    torch.library.opcheck(lib.axpby.default, (2.0, x, -1.0, y))
    torch.library.opcheck(lib.blend_out.default, (x, y, 0.3), {"out": torch.empty_like(x)})
    torch.library.opcheck(lib.lincomb.default, ([1.0] * 20, [x, y, z] * 6 + [x, y], 0.5))
    torch.library.opcheck(lib.lincomb_out.default, ([1.0] * 20, [x, y, z] * 6 + [x, y], 0.5),
                          {"out": torch.empty_like(x)})
    torch.library.opcheck(lib.multi_axpby_.default, ([x.clone(), y.clone()], 2.0, [x, y], 1.0, [y, z]))
    torch.library.opcheck(lib.multi_blend_.default, ([x.clone(), y.clone()], [z], [0.25, 0.75]))
    torch.library.opcheck(lib.multi_scale_.default, ([x.clone(), y.clone()], [0.25, -3.0]))


def test_cuda_gradcheck(backend):
    x = make((6, 5), torch.float64, seed=1, device=CUDA).t().requires_grad_()
    y = make((5, 6), torch.float64, seed=2, device=CUDA).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: ops.axpby(1.5, x, -0.25, y), (x, y))
    assert torch.autograd.gradcheck(lambda x, y: ops.blend(x, y, 0.3), (x, y))
    assert torch.autograd.gradcheck(lambda x, y: ops.lincomb([1.0] * 17 + [2.0], [x, y] * 9, 0.5), (x, y))


@requires_compiled
def test_cuda_torch_compile_matches_eager():
    def fn(x, y, ts):
        a = ops.axpby(2.0, x, -0.5, y)
        b = ops.lincomb([1.0] * 18, [x, y] * 9, 0.5)
        ops.blend_(a, y, 0.75)
        ops.multi_axpby_(ts, 2.0, ts, 1.0, [x, y])
        return a, b

    def inputs():
        return (make(4099, torch.float32, seed=1, device=CUDA), make(4099, torch.float32, seed=2, device=CUDA),
                [make(4099, torch.float32, seed=3, device=CUDA), make(4099, torch.float32, seed=4, device=CUDA)])

    e_in, c_in = inputs(), inputs()
    expected = fn(*e_in)
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(*c_in)
    for g, e in zip(list(got) + c_in[2], list(expected) + e_in[2]):
        assert_bitwise_equal(g, e, what="compiled vs eager on CUDA")
