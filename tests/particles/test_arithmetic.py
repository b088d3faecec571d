"""ParticleArithmetic (nytorch_ext/arithmetic.py): the in-place blend_ between two
whole particles runs storage to storage; every other case goes through products."""
import pytest
import torch
from torch import nn

import nytorch_ext as nyto


class Net(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 4)
        self.inner = Inner()


class Inner(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(7))


def values(m):
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize("wrap", [False, True])
def test_blend_between_whole_particles(wrap):
    torch.manual_seed(0)
    a = Net()
    a = nyto.ParticleModule(a) if wrap else a
    b = a.randn()
    params, before, best = list(a.parameters()), values(a), values(b)
    lazy = a.product() * 2.0  # reads a's storage: must keep the old values
    assert a.blend_(b, 0.25) is a
    assert all(p is q for p, q in zip(a.parameters(), params))
    for p, x, y in zip(a.parameters(), before, best):
        torch.testing.assert_close(p.detach(), torch.lerp(x, y, 0.25))
    for p, x in zip(lazy.module().parameters(), before):
        torch.testing.assert_close(p.detach(), 2.0 * x)
    assert a.blend_(a, 0.5) is a  # self: unchanged values
    for p, x, y in zip(a.parameters(), before, best):
        torch.testing.assert_close(p.detach(), torch.lerp(x, y, 0.25))


def test_blend_of_a_submodule_blends_the_whole_particle_as_nytorch():
    """nytorch: an in-place op on a submodule changes the whole particle
    (docs/nytorch-1.1.0-behaviour.md); blend_ (the product path) does the same."""
    torch.manual_seed(0)
    a = Net()
    b = a.randn()
    before, best = values(a), values(b)
    a.inner.blend_(b.inner, 0.5)
    for p, x, y in zip(a.parameters(), before, best):
        torch.testing.assert_close(p.detach(), torch.lerp(x, y, 0.5))


def test_blend_bad_partners_raise_and_change_nothing():
    torch.manual_seed(0)
    a = Net()
    before = values(a)
    for bad in (Net(), nyto.ParticleModule(Net()), 3.0):
        with pytest.raises(nyto.SpeciesError):
            a.blend_(bad, 0.5)
    b = a.clone()
    with pytest.raises(ValueError, match="alpha must be finite"):
        a.blend_(b, float("inf"))
    b.double()
    with pytest.raises(ValueError, match="different layouts"):
        a.blend_(b, 0.5)
    assert all(torch.equal(p, q) for p, q in zip(values(a), before))


def _pending_backward(module):
    """A loss whose backward needs ``module``'s parameters as they are now."""
    out = module.fc(torch.randn(3, 5)).square().sum() + (module.inner.w * module.inner.w.detach()).sum()
    return out


@pytest.mark.parametrize("write", ["particle blend_", "product blend_"])
def test_in_place_blend_invalidates_a_pending_backward(write):
    # as an in-place write to a parameter in PyTorch: the backward of a graph that
    # saved the old values must refuse, not silently use the new ones
    torch.manual_seed(0)
    a = nyto.ParticleModule(Net())
    b = a.randn()
    loss = _pending_backward(a.root_module)
    if write == "particle blend_":
        a.blend_(b, 0.25)
    else:
        a.product().blend_(b.product(), 0.25)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    _pending_backward(b.root_module).backward()  # the partner was only read: its graph still runs
