"""member_vmap: torch.func.vmap with flat arguments, checked against torch.func.vmap
itself (values, gradients, random draws) and for its errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from nytorch_ext.swarm.member_vmap import FLAT, member_vmap


def layer(w, b, x, scale):
    return F.relu(F.linear(x, w, b)) * scale


def test_torch_still_has_the_pieces():
    assert FLAT  # on a torch without them member_vmap is torch.func.vmap: fine, but the fast path is gone


def test_values_and_gradients_equal_torch_func_vmap():
    torch.manual_seed(0)
    w = torch.randn(5, 3, 4, requires_grad=True)
    b = torch.randn(5, 3, requires_grad=True)
    x = torch.randn(7, 4)
    ours = member_vmap(layer, (0, 0, None, None))(w, b, x, 2.0)
    theirs = vmap(layer, in_dims=(0, 0, None, None))(w, b, x, 2.0)
    assert torch.equal(ours, theirs)
    g_ours = torch.autograd.grad(ours.square().sum(), (w, b))
    g_theirs = torch.autograd.grad(theirs.square().sum(), (w, b))
    assert all(torch.equal(a, c) for a, c in zip(g_ours, g_theirs))


def test_batched_on_another_dim_and_structured_unbatched_arguments():
    w = torch.randn(3, 4, 6)  # batched on dim 2

    def f(w, pair, table):
        return w @ pair[0] + table["shift"], w.sum()

    pair, table = (torch.randn(4, 2),), {"shift": torch.ones(2)}
    ours = member_vmap(f, (2, None, None))(w, pair, table)
    theirs = vmap(f, in_dims=(2, None, None))(w, pair, table)
    assert isinstance(ours, tuple) and all(torch.equal(a, c) for a, c in zip(ours, theirs))


def test_structured_outputs():
    def f(w):
        return {"a": w * 2, "b": [w.sum(), w.max()]}

    w = torch.randn(4, 3)
    ours = member_vmap(f, (0,))(w)
    theirs = vmap(f)(w)
    assert torch.equal(ours["a"], theirs["a"]) and all(torch.equal(a, c) for a, c in zip(ours["b"], theirs["b"]))


def test_unbatched_output_is_expanded():
    ours = member_vmap(lambda w, x: x * 1.0, (0, None))(torch.zeros(3, 2), torch.arange(2.0))
    assert ours.shape == (3, 2) and torch.equal(ours, torch.arange(2.0).expand(3, 2))


@pytest.mark.parametrize("randomness", ["different", "same"])
def test_random_draws_are_torch_func_vmaps(randomness):
    def f(w, x):
        return F.dropout(x, 0.5) * w

    w, x = torch.ones(6, 1), torch.ones(50)
    torch.manual_seed(3)
    ours = member_vmap(f, (0, None), randomness)(w, x)
    torch.manual_seed(3)
    theirs = vmap(f, in_dims=(0, None), randomness=randomness)(w, x)
    assert torch.equal(ours, theirs)
    rows_differ = not all(torch.equal(ours[0], r) for r in ours[1:])
    assert rows_differ == (randomness == "different")


def test_randomness_error_refuses_random_ops():
    with pytest.raises(RuntimeError, match="randomness"):
        member_vmap(lambda w: F.dropout(w, 0.5), (0,), "error")(torch.ones(3, 4))


def test_bad_uses_are_refused():
    w = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="randomness must be"):
        member_vmap(lambda w: w, (0,), "sometimes")
    with pytest.raises(ValueError, match="non-negative ints or None"):
        member_vmap(lambda w: w, (-1,))
    with pytest.raises(ValueError, match="at least one argument must be batched"):
        member_vmap(lambda w: w, (None,))
    with pytest.raises(TypeError, match="2 arguments for 1 in_dims"):
        member_vmap(lambda w: w, (0,))(w, w)
    with pytest.raises(ValueError, match="argument 1 must be a tensor with 3 entries on dim 0"):
        member_vmap(lambda a, b: a + b, (0, 0))(w, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="argument 1 must be a tensor"):
        member_vmap(lambda a, b: a, (0, 0))(w, 1.0)
    with pytest.raises(ValueError, match="must only return Tensors"):
        member_vmap(lambda a: (a, 1), (0,))(w)
