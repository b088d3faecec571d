"""The CUDA kernels (csrc/cuda/kernels.cu) without a GPU: built with
-DNYT_CUDA_HOST_EMULATION, every launch runs block by block and thread by thread
on the host, through the same multi-tensor apply, chunking, alignment paths and
lincomb passes as on a device. The results must equal the compiled CPU kernels
bit for bit (noise: to rounding, the CPU draws with vectorized math).

Needs nvcc; marked slow (it compiles kernels.cu once, then emulates ~1,500 calls).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest
import torch

from nytorch_ext import ops

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc"),
    pytest.mark.skipif(not ops.is_compiled(), reason="compares with the compiled CPU kernels"),
]

CSRC = os.path.join(os.path.dirname(__file__), "..", "..", "csrc")
API = r"""
#include "cuda/launch.h"
extern "C" const char* emu_launch(nytorch_ext::ListCall* call, void* scratch) {
  call->scratch = nytorch_ext::cuda_launch::scratch_bytes(*call) ? scratch : nullptr;
  return nytorch_ext::cuda_launch::launch(*call, nullptr);
}
extern "C" long long emu_scratch_bytes(const nytorch_ext::ListCall* call) {
  return nytorch_ext::cuda_launch::scratch_bytes(*call);
}
"""


class ListCall(ctypes.Structure):  # csrc/list_call.h
    _fields_ = [("op", ctypes.c_int), ("dtype", ctypes.c_int), ("list_form", ctypes.c_bool),
                ("num_tensors", ctypes.c_int64), ("num_inputs", ctypes.c_int64),
                ("outs", ctypes.c_void_p), ("inputs", ctypes.c_void_p), ("sizes", ctypes.c_void_p),
                ("scalars", ctypes.c_void_p), ("num_scalars", ctypes.c_int64),
                ("weights", ctypes.c_void_p), ("num_weights", ctypes.c_int64),
                ("seed", ctypes.c_uint64), ("streams", ctypes.c_void_p), ("scratch", ctypes.c_void_p)]


AXPBY, BLEND, LINCOMB, NOISE, SCALE = range(5)  # ElementOp
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
DTYPES = list(DTYPE_CODES)
NOISE_TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2, torch.bfloat16: 1e-2}
lib_ops = torch.ops.nytorch_ext


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuda_emulation")
    api = d / "api.cu"
    api.write_text(API)
    so = d / "libemu.so"
    subprocess.run(["nvcc", "-std=c++17", "-O2", "-DNYT_CUDA_HOST_EMULATION", "-I", CSRC,
                    "-Xcompiler", "-fPIC,-ffp-contract=off", "-shared",
                    os.path.join(CSRC, "cuda", "kernels.cu"), str(api), "-o", str(so)],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    lib.emu_launch.restype = ctypes.c_char_p
    lib.emu_launch.argtypes = [ctypes.POINTER(ListCall), ctypes.c_void_p]
    lib.emu_scratch_bytes.restype = ctypes.c_longlong
    return lib


def array(ctype, values):
    return (ctype * max(1, len(values)))(*values)


def emulate(lib, op, outs, inputs, scalars=(), weights=(), seed=0, streams=None):
    """Runs one ListCall: outs written, inputs[k] one tensor per output or one shared."""
    n = len(outs)
    ptrs = [(lst[0] if len(lst) == 1 else lst[t]).data_ptr() for lst in inputs for t in range(n)]
    keep = [array(ctypes.c_void_p, [o.data_ptr() for o in outs]), array(ctypes.c_void_p, ptrs),
            array(ctypes.c_int64, [o.numel() for o in outs]), array(ctypes.c_double, list(scalars)),
            array(ctypes.c_double, list(weights)),
            array(ctypes.c_uint64, [s % 2**64 for s in streams or []])]
    p = [ctypes.cast(a, ctypes.c_void_p) for a in keep]
    call = ListCall(op, DTYPE_CODES[outs[0].dtype], n > 1, n, len(inputs), p[0], p[1], p[2], p[3],
                    len(scalars), p[4], len(weights), seed % 2**64, p[5] if streams else None, None)
    scratch = torch.empty(max(1, lib.emu_scratch_bytes(ctypes.byref(call))), dtype=torch.uint8)
    assert lib.emu_launch(ctypes.byref(call), scratch.data_ptr()) is None
    return scratch.numel()


def make(n, dtype, seed, offset=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n + offset, generator=g, dtype=torch.float64).to(dtype)[offset:]


def bits(t):
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_same_bits(got, want, what):
    assert torch.equal(bits(got), bits(want)), what


def assert_noise_close(got, want, dtype, what):
    tol = NOISE_TOL[dtype]
    torch.testing.assert_close(got.double(), want.double(), atol=tol, rtol=tol, msg=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [0, 1, 7, 9, 2047, 2049, 65537, 2_100_001])
def test_emulated_single_tensor_ops(emulator, dtype, n):
    """Lists of one: the vector path and the bounds-checked groups, aligned and not."""
    for offset in (0, 1):
        x, y = make(n, dtype, n, offset), make(n, dtype, n + 1, 1 - offset)
        want = torch.empty_like(x)
        lib_ops.axpby_out(0.7, x, 1.3, y, out=want)
        got = torch.full_like(x, float("nan"))
        emulate(emulator, AXPBY, [got], [[x], [y]], (0.7, 1.3))
        assert_same_bits(got, want, f"axpby offset={offset}")
        for w in (0.0, 0.3, 0.5, 1.0, -0.7, 1.5):
            want = torch.empty_like(x)
            lib_ops.blend_out(x, y, w, out=want)
            got = x.clone()
            emulate(emulator, BLEND, [got], [[got], [y]], (), (w,))
            assert_same_bits(got, want, f"blend w={w} offset={offset}")
        for s in (0.0, -1.75, 3.0):
            want = x.clone()
            lib_ops.multi_scale_([want], [s])
            got = x.clone()
            emulate(emulator, SCALE, [got], [[got]], (), (s,))
            assert_same_bits(got, want, f"multi_scale_ s={s} offset={offset}")
        for scale in (0.0, 0.25):
            want = x.clone()
            lib_ops.blend_noise_(want, y, 0.3, scale, 12345, 7)
            got = x.clone()
            emulate(emulator, NOISE, [got], [[got], [y]], (scale,), (0.3,), 12345, [7])
            if scale == 0.0:
                assert_same_bits(got, want, "blend_noise_ scale 0")
            else:
                assert_noise_close(got, want, dtype, "blend_noise_")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("k", [1, 15, 16, 17, 31, 46])
@pytest.mark.parametrize("out_index", [None, 0, 16, -1])
def test_emulated_lincomb_passes(emulator, dtype, k, out_index):
    """One pass per 16 inputs; an output read after the first pass comes from scratch."""
    tensors = [make(5003, dtype, 100 + j, j % 2) for j in range(k)]
    coeffs = [((j * 37) % 11 - 5) / 4 for j in range(k)]
    if out_index is not None and out_index >= k:
        pytest.skip("no such input")
    want = torch.empty_like(tensors[0])
    lib_ops.lincomb_out(coeffs, tensors, 0.375, out=want)
    if out_index is None:
        out = torch.full_like(tensors[0], float("nan"))
    else:
        out = tensors[out_index] = tensors[out_index].clone()
    scratch = emulate(emulator, LINCOMB, [out], [[t] for t in tensors], coeffs + [0.375])
    late = out_index is not None and (out_index % k) >= 16
    assert scratch == (out.numel() * out.element_size() if late else 1)
    assert_same_bits(out, want, f"lincomb K={k} out={out_index}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("count", [2, 111, 250])
def test_emulated_lists(emulator, dtype, count):
    """Several launches of up to a meta's capacity, empty tensors, shared sources,
    per-target weights and streams."""
    sizes = [(i * 7919) % 9000 if i % 5 else 0 for i in range(count)]
    sizes[0] = 70001
    xs = [make(s, dtype, 300 + i, i % 2) for i, s in enumerate(sizes)]
    ys = [make(s, dtype, 900 + i, (i + 1) % 2) for i, s in enumerate(sizes)]
    want = [torch.empty_like(x) for x in xs]
    lib_ops.multi_axpby_(want, 0.75, xs, -1.25, ys)
    got = [torch.full_like(x, float("nan")) for x in xs]
    emulate(emulator, AXPBY, got, [xs, ys], (0.75, -1.25))
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same_bits(g, w, f"multi_axpby_ outs[{i}]")

    ws = [(0.0, 1.0, 0.3, 0.5, 0.9, 0.05)[i % 6] for i in range(count)]
    want = [x.clone() for x in xs]
    lib_ops.multi_blend_(want, ys, ws)
    got = [x.clone() for x in xs]
    emulate(emulator, BLEND, got, [got, ys], (), ws)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same_bits(g, w, f"multi_blend_ targets[{i}]")

    src = make(257, dtype, 5)
    targets = [make(257, dtype, 700 + i, i % 2) for i in range(count)]
    want = [t.clone() for t in targets]
    lib_ops.multi_blend_(want, [src], [0.35], shared_source=True)
    got = [t.clone() for t in targets]
    emulate(emulator, BLEND, got, [got, [src]], (), (0.35,))
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same_bits(g, w, f"multi_blend_ shared source, targets[{i}]")

    scales = [(-2.0, 0.5, 0.0, 1.0, 3.25)[i % 5] for i in range(count)]
    want = [x.clone() for x in xs]
    lib_ops.multi_scale_(want, scales)
    got = [x.clone() for x in xs]
    emulate(emulator, SCALE, got, [got], (), scales)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_same_bits(g, w, f"multi_scale_ targets[{i}]")

    streams = [(i * 0x9E3779B97F4A7C15) % 2**63 for i in range(count)]
    want = [x.clone() for x in xs]
    lib_ops.multi_blend_noise_(want, ys, ws, 0.5, -3, streams)
    got = [x.clone() for x in xs]
    emulate(emulator, NOISE, got, [got, ys], (0.5,), ws, -3, streams)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_noise_close(g, w, dtype, f"multi_blend_noise_ targets[{i}]")
