"""increment_versions and bump_versions (nytorch_ext/particles/storage.py, csrc/versions.cpp):
a write that bypassed the parameters' version counters is recorded on them."""
import pytest
import torch

from nytorch_ext.particles import storage
from particle_models import python_and_compiled


def _impls():
    return python_and_compiled(storage._python_increment_versions, "increment_versions")


@pytest.mark.parametrize("increment_versions", _impls())
def test_increment_versions_bumps_every_tensor_once_per_listing(increment_versions):
    a, b, c = torch.zeros(2), torch.zeros(3), torch.nn.Parameter(torch.zeros(1))
    before = [t._version for t in (a, b, c)]
    increment_versions([[a, b], (c,), [], [a]])  # lists and tuples; a listed twice
    assert [t._version - v for t, v in zip((a, b, c), before)] == [2, 1, 1]
    increment_versions([])
    with torch.inference_mode():
        frozen = torch.zeros(2)
    increment_versions([[frozen]])  # no counter: skipped, as torch does


@pytest.mark.parametrize("increment_versions", _impls())
def test_increment_versions_makes_a_pending_backward_refuse(increment_versions):
    w = torch.nn.Parameter(torch.randn(3))
    loss = (w * w).sum()
    with torch.no_grad():
        w.data.mul_(2.0)  # through .data: autograd does not see it
    increment_versions([[w]])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_compiled_increment_versions_rejects_bad_arguments_and_bumps_nothing():
    from nytorch_ext.ops._extension import _C
    if _C is None:
        pytest.skip("the compiled extension is not loaded")
    a = torch.zeros(1)
    version = a._version
    with pytest.raises(TypeError, match="a list of lists of tensors"):
        _C.increment_versions(([a],))
    with pytest.raises(TypeError, match=r"lists\[1\] is not a list or tuple"):
        _C.increment_versions([[a], a])
    with pytest.raises(TypeError, match=r"lists\[0\]\[1\] is not a tensor"):
        _C.increment_versions([[a, 1.0]])
    assert a._version == version  # checked before anything was bumped
