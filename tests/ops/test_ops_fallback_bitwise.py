"""The pure-PyTorch fallback computes what the compiled kernels compute, bit for bit, for
the ops without noise (the noise forms' normals come from another libm: see
test_ops_noise.py): the same formulas, the same roundings in the same precision. A blend
through torch.lerp would differ in the last bit on CPUs where its kernel fuses the
multiply and the add; the kernels never fuse."""
from __future__ import annotations

import pytest
import torch

from nytorch_ext import ops
from reference import DTYPES, make, use_backend

SIZES = (1, 15, 16, 17, 1000, 4099)
# both branches of the two-sided lerp, its branch point, the values next to it in float32,
# the end points and extrapolation
WEIGHTS = (0.0, 0.3, 0.49999997, 0.5, 0.50000006, 0.7, 1.0, -0.3, 1.7, -2.5, 1e-8)


def both(fn):
    """``fn()`` on the compiled backend and on the fallback."""
    results = {}
    for name in ("compiled", "fallback"):
        with pytest.MonkeyPatch.context() as m:
            use_backend(name, m)
            results[name] = fn()
    return results["compiled"], results["fallback"]


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(-1).view(_BITS[t.element_size()])


def assert_same_bits(compiled, fallback):
    for c, f in zip(compiled, fallback, strict=True):
        assert c.dtype == f.dtype and c.shape == f.shape
        assert torch.equal(bits(c), bits(f)), f"max |diff| {(c.double() - f.double()).abs().max().item()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("w", WEIGHTS)
def test_blend_forms_match_the_kernels_bit_for_bit(dtype, n, w):
    x, y = make(n, dtype, seed=1), make(n, dtype, seed=2)

    def every_form():
        alloc = ops.blend(x, y, w)
        out = torch.empty_like(x)
        ops.blend(x, y, w, out=out)
        inplace = ops.blend_(x.clone(), y, w)
        listed = ops.multi_blend_([x.clone(), x.clone()], y, [w, w])
        noiseless = ops.blend_noise_(x.clone(), y, w, 0.0, seed=3)
        return [alloc, out, inplace, *listed, noiseless]

    assert_same_bits(*both(every_form))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_axpby_and_lincomb_match_the_kernels_bit_for_bit(dtype, n):
    x, y, z = make(n, dtype, seed=1), make(n, dtype, seed=2), make(n, dtype, seed=3)

    def every_form():
        return [ops.axpby(0.3, x, -1.7, y), ops.axpby_(0.3, x.clone(), 2.5, y),
                ops.lincomb([0.3, -1.7, 2.1], [x, y, z], bias=0.25), ops.lincomb_([0.3, -1.7, 2.1], [x.clone(), y, z], 0.5),
                *ops.multi_axpby_([torch.empty_like(x)], 0.3, [x], 0.9, [y])]

    assert_same_bits(*both(every_form))
