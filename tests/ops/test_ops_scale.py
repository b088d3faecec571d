"""ops.multi_scale_: targets[i] <- scale_i * targets[i], against a float64
reference (and torch.mul, bit for bit), on both backends, every dtype,
boundary sizes, shared and per-target scales, mixed-dtype lists, NaN/Inf,
aliasing and bad inputs (named, nothing written)."""
from __future__ import annotations

import pytest
import torch

from nytorch_ext import ops
from reference import (DTYPES, SIZES, assert_bitwise_equal, assert_matches, assert_unchanged, dtype_id,
                       make, ref_scale, snapshot, specials)

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n", SIZES)
def test_matches_the_float64_reference_and_torch_mul(backend, dtype, n):
    """Bit for bit torch.mul (the scale in opmath, one rounding). Not
    torch._foreach_mul_: on the CPU it rounds the scale to float16/bfloat16 first."""
    scales = [0.3, -2.0, 0.0]
    targets = [make(n, dtype, seed=s) for s in range(3)]
    expected = [ref_scale(s, t) for t, s in zip(targets, scales)]
    multiplied = [t * s for t, s in zip(targets, scales)]
    out = ops.multi_scale_(targets, scales)
    assert len(out) == len(targets) and all(o is t for o, t in zip(out, targets))
    for got, ref, mul in zip(targets, expected, multiplied):
        assert_matches(got, ref, dtype)
        assert_bitwise_equal(got, mul, what="against torch.mul")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_one_scale_is_shared_by_every_target(backend, dtype):
    targets = [make(n, dtype, seed=n) for n in (1, 7, 4099)]
    expected = [t.clone().mul_(-0.75) for t in targets]
    ops.multi_scale_(targets, -0.75)
    for got, ref in zip(targets, expected):
        assert_bitwise_equal(got, ref)
    ops.multi_scale_(targets, [2.0])  # a one-entry list is the same
    for got, ref in zip(targets, expected):
        assert_bitwise_equal(got, ref.mul_(2.0))


def test_a_tensor_of_scales_is_accepted(backend):
    targets = [make(5, torch.float32, seed=s) for s in range(2)]
    expected = [targets[0] * 2.0, targets[1] * -1.0]
    ops.multi_scale_(targets, torch.tensor([2.0, -1.0]))
    for got, ref in zip(targets, expected):
        assert_bitwise_equal(got, ref)


def test_mixed_dtypes_and_sizes_are_one_call(backend):
    targets = [make(10 + i, dt, seed=i) for i, dt in enumerate(DTYPES)] * 2
    targets = [t.clone() for t in targets]
    scales = [0.25 * (i + 1) for i in range(len(targets))]
    expected = [t.clone().mul_(s) for t, s in zip(targets, scales)]
    ops.multi_scale_(targets, scales)
    for got, ref in zip(targets, expected):
        assert_bitwise_equal(got, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_nan_and_inf_propagate_as_in_torch(backend, dtype):
    for scale in (0.0, -0.0, 2.0, float("inf"), float("nan")):
        t = specials(64, dtype, seed=3)
        expected = t.clone().mul_(scale)
        ops.multi_scale_([t], [scale])
        assert_bitwise_equal(t, expected, what=f"scale {scale}")


def test_empty_list_and_empty_tensors(backend):
    assert ops.multi_scale_([], [2.0]) == []
    e = torch.empty(0)
    ops.multi_scale_([e, torch.ones(3)], [2.0, 3.0])


def _bad(kind):
    x, y = torch.ones(8), torch.full((8,), 2.0)
    base = torch.ones(16)
    return {
        "scales-length": (ValueError, r"scales has 3 entries but targets has 2", ([x, y], [1.0, 2.0, 3.0])),
        "scales-empty": (ValueError, r"scales has 0 entries", ([x, y], [])),
        "not-a-tensor": (TypeError, r"targets\[1\] must be a tensor", ([x, 3.0], [1.0])),
        "integer": (TypeError, r"targets\[0\] must be float32", ([torch.ones(3, dtype=torch.int64)], [1.0])),
        "non-contiguous": (RuntimeError, r"targets\[0\] must be contiguous", ([base[::2]], [2.0])),
        "overlap": (RuntimeError, r"targets\[0\] and targets\[1\] overlap", ([base[:10], base[6:]], [2.0])),
        "same-twice": (RuntimeError, r"targets\[1\]", ([x, x], [2.0])),
        "scale-range": (ValueError, r"scales\[1\]", ([x, y], [1.0, 1e39])),
        "scale-type": (TypeError, r"scales", ([x, y], ["2"])),
    }[kind]


@pytest.mark.parametrize("kind", ["scales-length", "scales-empty", "not-a-tensor", "integer", "non-contiguous",
                                  "overlap", "same-twice", "scale-range", "scale-type"])
def test_bad_input_is_named_and_nothing_is_written(backend, kind):
    error, message, (targets, scales) = _bad(kind)
    snap = snapshot([t for t in targets if isinstance(t, torch.Tensor)])
    with pytest.raises(error, match=message):
        ops.multi_scale_(targets, scales)
    assert_unchanged(snap)


def test_refuses_a_target_that_requires_grad(backend):
    leaf = torch.ones(4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"targets\[0\]"):
        ops.multi_scale_([leaf], [2.0])
    with torch.no_grad():
        ops.multi_scale_([leaf], [2.0])
    assert torch.equal(leaf.detach(), torch.full((4,), 2.0))


def test_bumps_the_version_counter(backend):
    t = torch.ones(4)
    v = t._version
    ops.multi_scale_([t], [2.0])
    assert t._version > v
