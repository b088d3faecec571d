"""blend_noise_ / multi_blend_noise_: the blend with Gaussian noise drawn inside
the fused pass (Philox4x32-10 + Box-Muller, csrc/philox.h), against the
plain-torch reference nytorch_ext.ops.philox, on both backends.

Tolerance. The Philox words are checked exactly (known-answer vectors, and the
words recovered from the kernel's float64 normals). The normals themselves go
through log, sin and cos, which differ by a few units in the last place between
the kernels (at::vec: Sleef, 1 ulp log and 3.5 ulp sin/cos in float32; CUDA's
libdevice) and the reference (torch's CPU math): about 3 ulp of the opmath type
observed. So the noise is compared with a relative bound of 8 ulp of opmath
plus one rounding of the result dtype (NOISE_ULPS below), and whole results with
reference.assert_matches (TOL[dtype] relative to |reference| + magnitude, where
the magnitude includes |noise_scale * z|; for float32 TOL is about 8 ulp).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from nytorch_ext import ops
from nytorch_ext.ops import philox as _philox
from reference import (
    DTYPES, assert_bitwise_equal, assert_matches, assert_unchanged, dtype_id,
    make, make_list, place, ref_blend, snapshot, specials,
)

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
requires_compiled = pytest.mark.skipif(not ops.is_compiled(), reason="compiled kernels not loaded")

SEED, STREAM = 0x0123456789ABCDEF, 42
NOISE_ULPS = 8


def opmath(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def ref_noise(t, best, weight, scale, seed, stream):
    """float64 reference (value, magnitude) of blend_noise_(t, best, ...)."""
    value, mag = ref_blend(t, best, weight)
    z = _philox.philox_normal(t.numel(), seed, stream, opmath(t.dtype)).double().view(t.shape)
    return value + scale * z, mag + abs(scale) * z.abs()


def kernel_noise(n, dtype, seed, stream, device="cpu", offset=0):
    """The normals the op adds, read back through it: zero target, weight 0, scale 1."""
    t = place(torch.zeros(n, dtype=dtype, device=device), offset)
    ops.blend_noise_(t, place(torch.ones(n, dtype=dtype, device=device), offset), 0.0, 1.0,
                     seed=seed, stream=stream)
    return t


def assert_noise_close(got, expected, what="noise"):
    """Within NOISE_ULPS of opmath plus one rounding of the dtype, relative to |z|
    (and exactly zero where the reference is)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    g, e = got.cpu().double(), expected.cpu().double()
    bound = (NOISE_ULPS * torch.finfo(opmath(got.dtype)).eps + torch.finfo(got.dtype).eps) * e.abs()
    bad = (g - e).abs() > bound
    if bad.any():
        i = bad.nonzero()[0].item()
        raise AssertionError(f"{what}: {int(bad.sum())} of {g.numel()} off; first at {i}: "
                             f"{g[i].item()!r} vs {e[i].item()!r}")


# ------------------------------------------------------------------- Philox

# Random123's kat_vectors: counter words, key words, philox4x32_10 output.
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


def test_philox_reference_known_answers():
    for counter, key, expected in KAT:
        assert _philox.philox4x32(torch.tensor(counter), key).tolist() == expected
    # batched, with a key per row
    counters = torch.tensor([c for c, _, _ in KAT])
    keys = torch.tensor([k for _, k, _ in KAT])
    assert _philox.philox4x32(counters, keys).tolist() == [e for _, _, e in KAT]


def words_from_normals(z: torch.Tensor) -> torch.Tensor:
    """The Philox words behind float64 normals, by inverting Box-Muller:
    u0 = exp(-(z0^2 + z1^2)/2), u1 = atan2(z1, z0)/(2 pi) mod 1, x = u*2^32 - 1/2
    (accurate to far below one unit of x in float64)."""
    pairs = z.double().cpu().view(-1, 2)
    u0 = torch.exp(-(pairs ** 2).sum(1) / 2)
    u1 = torch.remainder(torch.atan2(pairs[:, 1], pairs[:, 0]) / (2 * math.pi), 1.0)
    words = torch.stack([u0, u1], 1) * 2.0 ** 32 - 0.5
    assert (words - words.round()).abs().max() < 1e-2
    return words.round().long().view(-1, 4)


def test_philox_known_answer_through_the_kernel(backend):
    """Element block 0 of seed 0, stream 0 is Philox counter 0, key 0 (KAT row 0);
    with the key and the stream words of KAT row 2, blocks 0..3 match the
    reference's words. Recovered from float64 output, so exactly the bits."""
    assert words_from_normals(kernel_noise(4, torch.float64, 0, 0))[0].tolist() == KAT[0][2]
    k0, k1 = KAT[2][1]
    c2, c3 = KAT[2][0][2:]
    seed, stream = k0 | k1 << 32, c2 | c3 << 32
    got = words_from_normals(kernel_noise(16, torch.float64, seed, stream))
    counters = torch.tensor([[b, 0, c2, c3] for b in range(4)])
    assert got.tolist() == _philox.philox4x32(counters, [k0, k1]).tolist()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=dtype_id)
def test_kernel_noise_is_philox_normal(backend, dtype):
    """Zero target, weight 0, noise_scale 1: the op writes philox_normal itself."""
    n = 4099
    assert_noise_close(kernel_noise(n, dtype, SEED, STREAM), _philox.philox_normal(n, SEED, STREAM, dtype))


# --------------------------------------------------------- against reference

SIZES = [0, 1, 3, 4, 5, 7, 8, 15, 16, 17, 1023, 4096 + 3]  # larger: the thread-count test


@dtypes
@pytest.mark.parametrize("n", SIZES)
def test_blend_noise_matches_reference(backend, dtype, n):
    """Sizes around the 4-element Philox block, the vector widths and the batch;
    the target unaligned (a view one element into its buffer) for odd n, else
    the best tensor."""
    offset = n % 2
    t = make(n, dtype, seed=n, offset=offset)
    best = make(n, dtype, seed=n + 1, offset=1 - offset)
    w, s = (0.3, 0.05) if n % 2 else (0.7, 1.5)  # both lerp branches
    expected = ref_noise(t, best, w, s, SEED, STREAM)
    keep = snapshot([best])
    assert ops.blend_noise_(t, best, w, s, seed=SEED, stream=STREAM) is t
    assert_matches(t, expected, dtype, what=f"n={n}")
    assert_unchanged(keep)


@dtypes
@pytest.mark.parametrize("source", ["shared", "per-target"])
def test_multi_blend_noise_matches_reference(backend, dtype, source):
    sizes = [3, 0, 1, 127, 4, 4099, 31, 17]
    targets = make_list(sizes, dtype, seed=5, offset=1)
    streams = [7 * i + (1 << 40) for i in range(len(sizes))]
    weights = [0.0, 0.25, 0.5, 0.75, 1.0, 0.1, 0.9, 0.6]
    if source == "shared":  # one source for targets of one size
        targets = make_list([4099] * 3, dtype, seed=5, offset=1)
        streams, weights = streams[:3], weights[:3]
        src = make(4099, dtype, seed=6)
        sources = [src] * 3
    else:
        src = sources = make_list(sizes, dtype, seed=6)
    expected = [ref_noise(t, x, w, 0.125, SEED, st) for t, x, w, st in zip(targets, sources, weights, streams)]
    ops.multi_blend_noise_(targets, src, weights, 0.125, seed=SEED, streams=streams)
    for i, (t, e) in enumerate(zip(targets, expected)):
        assert_matches(t, e, dtype, what=f"targets[{i}]")


@dtypes
def test_multi_equals_single_calls(backend, dtype):
    """multi_blend_noise_ is bit for bit blend_noise_ per target with its stream,
    also for a list mixing dtypes (grouped by the Python layer)."""
    sizes = [5, 0, 4099, 1, 300]
    dts = [dtype, torch.float64, dtype, torch.float32, dtype]
    targets = [make(n, d, seed=10 + i, offset=i % 2) for i, (n, d) in enumerate(zip(sizes, dts))]
    sources = [make(n, d, seed=20 + i) for i, (n, d) in enumerate(zip(sizes, dts))]
    streams = [3, 2 ** 64 - 1, 2 ** 32, -5, 0]
    weights = [0.2, 0.4, 0.6, 0.8, 1.0]
    singles = [t.clone() for t in targets]
    ops.multi_blend_noise_(targets, sources, weights, 0.3, seed=SEED, streams=streams)
    for t, x, w, st in zip(singles, sources, weights, streams):
        ops.blend_noise_(t, x, w, 0.3, seed=SEED, stream=st)
    for i, (a, b) in enumerate(zip(targets, singles)):
        assert_bitwise_equal(a, b, what=f"targets[{i}]")


# ----------------------------------------------------------- reproducibility

def test_noise_depends_only_on_seed_stream_and_index(backend):
    """Same (seed, stream): bitwise the same, and a shorter tensor gets a prefix
    of a longer one's noise (whatever the batch and thread boundaries)."""
    long = kernel_noise(70001, torch.float32, SEED, STREAM)
    assert_bitwise_equal(kernel_noise(70001, torch.float32, SEED, STREAM), long)
    for m in [1, 3, 5, 127, 128, 129, 32768 + 1]:
        assert_bitwise_equal(kernel_noise(m, torch.float32, SEED, STREAM, offset=m % 2), long[:m],
                             what=f"prefix {m}")


@requires_compiled
def test_noise_does_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernel_noise(300_001, torch.float32, SEED, STREAM)
    finally:
        torch.set_num_threads(threads)
    assert_bitwise_equal(kernel_noise(300_001, torch.float32, SEED, STREAM), one)


def test_seeds_and_streams_are_64_bit(backend):
    base = kernel_noise(64, torch.float32, 1, 0)
    for seed, stream in [(2, 0), (1 + 2 ** 32, 0), (1, 1), (1, 2 ** 32), (1, 2 ** 63)]:
        other = kernel_noise(64, torch.float32, seed, stream)
        assert not torch.equal(other, base), (seed, stream)
        assert (other != base).float().mean() > 0.9, (seed, stream)
    # Python ints in [-2**63, 2**64) name uint64 bit patterns: -1 is 2**64 - 1.
    assert_bitwise_equal(kernel_noise(64, torch.float32, -1, -2), kernel_noise(64, torch.float32, 2 ** 64 - 1, 2 ** 64 - 2))
    assert_bitwise_equal(kernel_noise(64, torch.float32, 2 ** 63, 0), kernel_noise(64, torch.float32, -(2 ** 63), 0))


# ------------------------------------------------------------- distribution

@requires_compiled
def test_distribution_is_standard_normal():
    """2^20 draws: mean, variance and kurtosis within 5 standard errors of 0, 1
    and 3; neighbours, the four lanes of a block, the same lane of consecutive
    blocks and two streams uncorrelated within 5 standard errors."""
    n = 1 << 20
    z = kernel_noise(n, torch.float64, SEED, STREAM)
    assert torch.isfinite(z).all()
    se = 1 / math.sqrt(n)
    assert abs(z.mean().item()) < 5 * se
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2) * se
    assert abs((z ** 4).mean().item() - 3) < 5 * math.sqrt(96) * se
    assert abs((z.abs() > 3).double().mean().item() - 0.0026998) < 5 * math.sqrt(0.0027 / n)

    def corr(a, b):
        return torch.corrcoef(torch.stack([a, b]))[0, 1].item()

    assert abs(corr(z[:-1], z[1:])) < 5 * se
    lanes = z.view(-1, 4)
    block_se = 1 / math.sqrt(lanes.shape[0])
    for i in range(4):
        assert abs(corr(lanes[:-1, i], lanes[1:, i])) < 5 * block_se, f"lane {i}, next block"
        for j in range(i + 1, 4):
            assert abs(corr(lanes[:, i], lanes[:, j])) < 5 * block_se, f"lanes {i}, {j}"
            assert abs(corr(lanes[:, i] ** 2, lanes[:, j] ** 2)) < 5 * block_se, f"lanes {i}, {j} squared"
    other = kernel_noise(n, torch.float64, SEED, STREAM + 1)
    assert abs(corr(z, other)) < 5 * se


# ------------------------------------------------------------- edge values

@dtypes
@pytest.mark.parametrize("w", [0.0, 0.3, 0.5, 1.0])
def test_zero_noise_scale_is_blend(backend, dtype, w):
    """noise_scale == 0 is blend_ bit for bit (signed zeros included)."""
    t, best = make(4099, dtype, seed=1, offset=1), make(4099, dtype, seed=2)
    t[:3] = -0.0
    want = ops.blend_(t.clone(), best, w)
    assert_bitwise_equal(ops.blend_noise_(t.clone(), best, w, 0.0, seed=SEED), want)
    ts = [t.clone()]
    ops.multi_blend_noise_(ts, [best], w, 0.0, seed=SEED, streams=[1])
    assert_bitwise_equal(ts[0], want)


@dtypes
def test_nan_and_inf_propagate(backend, dtype):
    t, best = specials(1029, dtype, seed=31), specials(1029, dtype, seed=32)
    for w in (0.0, 0.25, 0.75, 1.0):
        expected = ref_noise(t, best, w, 0.5, SEED, STREAM)
        assert expected[0].isnan().any() and (expected[0].isinf().any() or w in (0.0, 1.0))
        assert_matches(ops.blend_noise_(t.clone(), best, w, 0.5, seed=SEED, stream=STREAM), expected, dtype)


@dtypes
def test_best_may_be_the_target(backend, dtype):
    """blend(x, x, w) is x: only the noise is added."""
    x = make(1000, dtype, seed=3, offset=1)
    expected = ref_noise(x, x, 0.4, 2.0, SEED, STREAM)
    assert_matches(ops.blend_noise_(x, x, 0.4, 2.0, seed=SEED, stream=STREAM), expected, dtype)


def test_empty_lists(backend):
    assert ops.multi_blend_noise_([], [], 0.5, 1.0, seed=1, streams=[]) == []
    assert ops.multi_blend_noise_([], torch.ones(3), 0.5, 1.0, seed=1, streams=[]) == []
    with pytest.raises(ValueError, match="streams"):
        ops.multi_blend_noise_([], [], 0.5, 1.0, seed=1, streams=[1])


# -------------------------------------------------------------- bad inputs

N = 8


def _t(dtype=torch.float32, n=N, seed=0):
    return make(n, dtype, seed=seed)


def _single(x=None, best=None, weight=0.5, noise_scale=0.1, seed=1, stream=0):
    def factory():
        t = _t() if x is None else x()
        b = _t(seed=1) if best is None else best()
        return (lambda: ops.blend_noise_(t, b, weight, noise_scale, seed=seed, stream=stream)), [t, b]
    return factory


def _multi(targets=None, source=None, weights=0.5, noise_scale=0.1, seed=1, streams=None):
    def factory():
        ts = targets() if targets else [_t(seed=2), _t(seed=3)]
        src = source(ts) if source else [_t(seed=4), _t(seed=5)]
        st = [0, 1] if streams is None else streams
        held = ts + (src if isinstance(src, list) else [src])
        return (lambda: ops.multi_blend_noise_(ts, src, weights, noise_scale, seed=seed, streams=st)), held
    return factory


def _overlapping_targets():
    buf = _t(n=2 * N)
    return [buf[:N], buf[N // 2:N // 2 + N]]


def _offset_source():
    buf = _t(n=2 * N)
    return buf[:N], buf[1:N + 1]


BAD = [
    ("weight-nan", ValueError, r"\bweight\b", _single(weight=math.nan)),
    ("weight-inf", ValueError, r"\bweight\b", _single(weight=math.inf)),
    ("noise_scale-nan", ValueError, r"\bnoise_scale\b", _single(noise_scale=math.nan)),
    ("noise_scale-inf", ValueError, r"\bnoise_scale\b", _single(noise_scale=-math.inf)),
    ("best-dtype", TypeError, r"\bbest\b", _single(best=lambda: _t(torch.float64))),
    ("best-shape", ValueError, r"\bbest\b", _single(best=lambda: _t(n=N + 1))),
    ("best-partial-overlap", RuntimeError, r"\bbest\b", lambda: (lambda x, y: (
        lambda: ops.blend_noise_(x, y, 0.5, 0.1, seed=1), [x, y]))(*_offset_source())),
    ("x-noncontiguous", RuntimeError, r"\bx\b", lambda: (lambda b: (
        lambda: ops.blend_noise_(b[::2], _t(n=N // 2), 0.5, 0.1, seed=1), [b]))(_t(n=N))),
    ("x-int", TypeError, r"\bx\b", lambda: (lambda x: (
        lambda: ops.blend_noise_(x, x, 0.5, 0.1, seed=1), [x]))(torch.arange(N))),
    ("seed-too-large", ValueError, r"\bseed\b", _single(seed=2 ** 64)),
    ("seed-too-small", ValueError, r"\bseed\b", _single(seed=-(2 ** 63) - 1)),
    ("seed-float", TypeError, r"\bseed\b", _single(seed=1.0)),
    ("stream-bool", TypeError, r"\bstream\b", _single(stream=True)),
    ("weights-nan", ValueError, r"weights\[1\]", _multi(weights=[0.5, math.nan])),
    ("weights-length", ValueError, r"\bweights\b", _multi(weights=[0.5, 0.5, 0.5])),
    ("multi-noise_scale-inf", ValueError, r"\bnoise_scale\b", _multi(noise_scale=math.inf)),
    ("streams-short", ValueError, r"\bstreams\b", _multi(streams=[0])),
    ("streams-long", ValueError, r"\bstreams\b", _multi(streams=[0, 1, 2])),
    ("streams-entry", ValueError, r"streams\[1\]", _multi(streams=[0, 2 ** 64])),
    ("streams-not-a-list", TypeError, r"\bstreams\b", _multi(streams=3)),
    ("sources-dtype", TypeError, r"sources\[1\]", _multi(source=lambda ts: [_t(), _t(torch.float64)])),
    ("sources-shape", ValueError, r"sources\[0\]", _multi(source=lambda ts: [_t(n=N + 1), _t()])),
    ("targets-overlap", RuntimeError, r"targets\[0\]", _multi(targets=_overlapping_targets)),
    ("shared-source-is-a-target", RuntimeError, r"sources\[0\]", _multi(source=lambda ts: ts[1])),
    ("shared-source-is-the-only-target", RuntimeError, r"sources\[0\]",
     _multi(targets=lambda: [_t()], source=lambda ts: ts[0], streams=[0])),
    ("source-aliases-other-target", RuntimeError, r"sources\[0\]", _multi(source=lambda ts: [ts[1], ts[0]])),
]


@pytest.mark.parametrize("factory, exc, match", [pytest.param(f, e, m, id=i) for i, e, m, f in BAD])
def test_rejected_and_nothing_written(backend, factory, exc, match):
    call, tensors = factory()
    keep = snapshot(tensors)
    with pytest.raises(exc, match=match):
        call()
    assert_unchanged(keep)


@pytest.mark.parametrize("form", ["single", "multi"])
def test_requires_grad_target_under_grad_mode(backend, form):
    """Not differentiable: writing a tensor that requires grad is an error naming
    it while grad mode is on (nothing written), fine under no_grad."""
    x = _t().requires_grad_()
    best = _t(seed=1)
    keep = snapshot([x, best])
    with pytest.raises(RuntimeError, match=r"\bx\b|\bself\b|targets\[0\]"):
        if form == "single":
            ops.blend_noise_(x, best, 0.5, 0.1, seed=1)
        else:
            ops.multi_blend_noise_([x], [best], 0.5, 0.1, seed=1, streams=[0])
    assert_unchanged(keep)
    with torch.no_grad():
        ops.blend_noise_(x, best, 0.5, 0.1, seed=1)
    assert not torch.equal(x.detach(), keep[0][1])


def test_mutation_bumps_the_version_counter(backend):
    w = torch.ones(3, requires_grad=True)
    v = torch.ones(3)
    loss = (w * v).sum()
    ops.multi_blend_noise_([v], torch.zeros(3), 0.5, 1.0, seed=1, streams=[0])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# ------------------------------------------------------ as PyTorch operators

@requires_compiled
@pytest.mark.parametrize("dtype, case", [
    (torch.float32, "single"), (torch.bfloat16, "single"), (torch.float32, "single-best-is-self"),
    (torch.float32, "multi-shared"), (torch.float32, "multi-list"), (torch.bfloat16, "multi-list"),
    (torch.float64, "multi-alias")], ids=str)
def test_opcheck(dtype, case):
    lib = torch.ops.nytorch_ext
    n = 37
    xs = [make(n, dtype, seed=k) for k in range(3)]
    if case == "single":
        torch.library.opcheck(lib.blend_noise_.default, (xs[0], xs[1], 0.3, 0.5, 7, -3))
    elif case == "single-best-is-self":
        torch.library.opcheck(lib.blend_noise_.default, (xs[0], xs[0], 0.3, 0.5, -7, 3))
    elif case == "multi-shared":
        torch.library.opcheck(lib.multi_blend_noise_.default,
                              (xs[:2], [make(n, dtype, seed=9)], [0.5], 0.25, 11, [1, 2]))
    elif case == "multi-list":
        torch.library.opcheck(lib.multi_blend_noise_.default,
                              (xs, [make(n, dtype, seed=9 + k) for k in range(3)], [0.0, 0.5, 1.0], 0.25, 11, [0, 1, 2]))
    else:  # every source is its own target
        torch.library.opcheck(lib.multi_blend_noise_.default, (xs, xs, [0.7], 1.0, 11, [5, 6, 7]))


@requires_compiled
def test_registered_schemas():
    lib = torch.ops.nytorch_ext
    assert str(lib.blend_noise_.default._schema) == (
        "nytorch_ext::blend_noise_(Tensor(a!) x, Tensor best, float weight, float noise_scale, "
        "int seed, int stream) -> ()")
    assert str(lib.multi_blend_noise_.default._schema) == (
        "nytorch_ext::multi_blend_noise_(Tensor(a!)[] targets, Tensor[] sources, float[] weights, "
        "float noise_scale, int seed, int[] streams, bool shared_source=False) -> ()")


@dtypes
def test_compiled_and_fallback_agree(monkeypatch, dtype):
    from reference import use_backend
    results = []
    for name in ("compiled", "fallback"):
        with monkeypatch.context() as m:
            use_backend(name, m)
            targets = make_list([4099, 5, 0, 100], dtype, seed=1, offset=1)
            sources = make_list([4099, 5, 0, 100], dtype, seed=2)
            mags = [ref_noise(t, x, 0.3, 0.7, SEED, i)[1] for i, (t, x) in enumerate(zip(targets, sources))]
            ops.multi_blend_noise_(targets, sources, 0.3, 0.7, seed=SEED, streams=[0, 1, 2, 3])
            results.append(list(zip(targets, mags)))
    for k, ((c, mag), (f, _)) in enumerate(zip(*results)):
        assert_matches(c, (f.double(), 2 * mag), dtype, what=f"compiled vs fallback #{k}")


@requires_compiled
def test_torch_compile_fullgraph_matches_eager():
    def step(x, best, ts):
        ops.blend_noise_(x, best, 0.25, 0.5, seed=SEED, stream=3)
        ops.multi_blend_noise_(ts, best, [0.1, 0.9], 0.5, seed=SEED, streams=[4, 5])
        return x, ts

    def inputs():
        return make(1000, torch.float32, seed=1), make(1000, torch.float32, seed=2), \
            [make(1000, torch.float32, seed=3), make(1000, torch.float32, seed=4)]

    x, ts = step(*inputs())
    torch._dynamo.reset()
    cx, cts = torch.compile(step, fullgraph=True, backend="aot_eager")(*inputs())
    assert_bitwise_equal(cx, x)
    for a, b in zip(cts, ts):
        assert_bitwise_equal(a, b)


@requires_compiled
@pytest.mark.parametrize("capability", ["DEFAULT", "AVX2"])
def test_other_cpu_capabilities(capability):
    """The kernels of every instruction set draw the same noise (checked in a
    subprocess, since the choice is made once per process)."""
    if not sys.platform.startswith("linux") or os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("x86 capabilities")
    script = textwrap.dedent(f"""
        import torch
        from nytorch_ext import ops
        from nytorch_ext.ops import philox as _philox
        assert ops.backend_info()["cpu_simd"] == "{capability}", ops.backend_info()
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            n = 4099
            t = torch.zeros(n, dtype=dtype)
            ops.blend_noise_(t, torch.ones(n, dtype=dtype), 0.0, 1.0, seed=5, stream=6)
            ref = _philox.philox_normal(n, 5, 6, dtype).double()
            op = torch.float64 if dtype == torch.float64 else torch.float32
            bound = ({NOISE_ULPS} * torch.finfo(op).eps + torch.finfo(dtype).eps) * ref.abs()
            assert ((t.double() - ref).abs() <= bound).all(), dtype
        print("ok")
    """)
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability.lower())
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


# -------------------------------------------------------------------- CUDA

def cuda_test(fn):
    """Marked ``cuda`` and skipped without a GPU, as in test_ops_cuda.py."""
    for mark in [
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(),
                           reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
        pytest.mark.filterwarnings("ignore:nytorch_ext was built without CUDA kernels:RuntimeWarning"),
    ]:
        fn = mark(fn)
    return fn


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n", [1, 5, 4099, 3 * 65536 + 7])
@pytest.mark.parametrize("offset", [0, 1, 2], ids=["aligned", "unaligned-1", "unaligned-2"])
def test_cuda_noise_matches_cpu_reference(backend, dtype, n, offset):
    """Vector (aligned) and scalar (unaligned) paths draw philox_normal, computed
    on the CPU."""
    got = kernel_noise(n, dtype, SEED, STREAM, device="cuda", offset=offset)
    assert_noise_close(got, _philox.philox_normal(n, SEED, STREAM, dtype))


@cuda_test
@dtypes
def test_cuda_blend_noise_matches_reference(backend, dtype):
    t = make(100_003, dtype, seed=1, device="cuda", offset=1)
    best = make(100_003, dtype, seed=2, device="cuda")
    expected = ref_noise(t, best, 0.7, 0.5, SEED, STREAM)
    assert_matches(ops.blend_noise_(t, best, 0.7, 0.5, seed=SEED, stream=STREAM), expected, dtype)


@cuda_test
@dtypes
def test_cuda_multi_matches_reference(backend, dtype):
    """More tensors than one launch's table holds, and a tensor over several launches."""
    sizes = [3, 0, 1, 127, 4, 5, 31, 17, 300] * 6 + [448 * 65536 + 9]
    targets = make_list(sizes, dtype, seed=7, device="cuda", offset=1)
    sources = make_list(sizes, dtype, seed=8, device="cuda")
    streams = list(range(len(sizes)))
    weights = [(i % 11) / 10 for i in range(len(sizes))]
    expected = [ref_noise(t, x, w, 0.25, SEED, st) for t, x, w, st in zip(targets, sources, weights, streams)]
    ops.multi_blend_noise_(targets, sources, weights, 0.25, seed=SEED, streams=streams)
    for i, (t, e) in enumerate(zip(targets, expected)):
        assert_matches(t, e, dtype, what=f"targets[{i}]")


@cuda_test
def test_cuda_shared_source_and_same_noise_as_cpu(backend):
    """CPU and CUDA kernels draw the same noise (within NOISE_ULPS) for the same
    seed and streams."""
    ts = make_list([5, 4099], torch.float32, seed=9)
    gpu = [t.cuda() for t in ts]
    src = make(5, torch.float32, seed=10)
    cpu_ts = [ts[0].clone()]
    ops.multi_blend_noise_(cpu_ts, src, 0.5, 1.0, seed=SEED, streams=[3])
    ops.multi_blend_noise_(gpu[:1], src.cuda(), 0.5, 1.0, seed=SEED, streams=[3])
    assert_noise_close(gpu[0].cpu(), cpu_ts[0])


@pytest.mark.parametrize("numel, exc", [(-1, ValueError), (-(2**40), ValueError), (2.5, TypeError),
                                        ("4", TypeError), (True, TypeError), (None, TypeError)])
def test_philox_normal_rejects_a_bad_numel(numel, exc):
    with pytest.raises(exc, match=r"^numel\b"):
        ops.philox_normal(numel, 1)


def test_philox_normal_numel_zero_and_integral_types():
    assert ops.philox_normal(0, 1).shape == (0,)
    import numpy as np
    assert torch.equal(ops.philox_normal(np.int64(5), 1), ops.philox_normal(5, 1))
