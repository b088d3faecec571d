"""Out-of-place results of 4 MiB and more are written with non-temporal stores
(csrc/cpu/kernels.cpp): they must equal, bit for bit, the same op computed in
place (plain stores), at aligned and unaligned output offsets, in every CPU
capability this machine runs."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from nytorch_ext import ops

SCRIPT = textwrap.dedent("""
    import torch
    from nytorch_ext import ops
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for n in (1_048_576 + 3, 1_500_001):          # over 4 MiB in float32 and float64
            for offset in (0, 1, 3):                  # output starts unaligned: a scalar head
                x = torch.randn(n, dtype=dtype)
                y = torch.randn(n, dtype=dtype)
                buf = torch.full((n + offset,), float("nan"), dtype=dtype)
                out = buf[offset:]
                ops.blend(x, y, 0.3, out=out)
                assert torch.equal(out, ops.blend_(x.clone(), y, 0.3)), ("blend", dtype, n, offset)
                ops.axpby(0.7, x, -1.5, y, out=out)
                assert torch.equal(out, ops.axpby_(0.7, x.clone(), -1.5, y)), ("axpby", dtype, n, offset)
                ops.lincomb([0.5, 0.25, -2.0], [x, y, x], 1.0, out=out)
                assert torch.equal(out, ops.lincomb_([0.5, 0.25, -2.0], [x.clone(), y, x], 1.0)), ("lincomb", dtype, n, offset)
    print(ops.backend_info()["cpu_simd"], "ok")
""")


def supported_capabilities():
    caps = ["default"]
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " avx2 " in flags:
        caps.append("avx2")
    if " avx512f " in flags and " avx512bw " in flags and " avx512vl " in flags and " avx512dq " in flags:
        caps.append("avx512")
    return caps


@pytest.mark.skipif(not ops.is_compiled(), reason="the compiled kernels are not loaded")
@pytest.mark.parametrize("capability", supported_capabilities())
def test_streaming_stores_equal_plain_stores(capability):
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    assert proc.stdout.split()[0] == capability.upper()


def test_large_out_of_place_matches_torch():
    x, y = torch.randn(1_000_003), torch.randn(1_000_003)
    torch.testing.assert_close(ops.blend(x, y, 0.25), torch.lerp(x, y, 0.25))
