"""Elementwise optimizers on a [K, N] leaf are K independent optimizers on its rows:
checked for every class batched training accepts (not assumed), and the rest refused."""
from __future__ import annotations

import pytest
import torch

from nytorch_ext.train.batched_step import ELEMENTWISE, unsupported_optimizer

K, SHAPES = 3, [(4, 5), (5,), (2, 3)]

SETTINGS = {
    "SGD": [dict(lr=0.1), dict(lr=0.1, momentum=0.9, weight_decay=0.01),
            dict(lr=0.1, momentum=0.9, nesterov=True, dampening=0.0)],
    "Adam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, amsgrad=True)],
    "AdamW": [dict(lr=0.01, weight_decay=0.1)],
    "Adamax": [dict(lr=0.01, weight_decay=0.01)],
    "NAdam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.01, decoupled_weight_decay=True)],
    "RAdam": [dict(lr=0.01, weight_decay=0.01)],
    "RMSprop": [dict(lr=0.01), dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)],
    "Rprop": [dict(lr=0.01)],
    "Adagrad": [dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)],
    "Adadelta": [dict(lr=1.0, weight_decay=0.01)],
    "ASGD": [dict(lr=0.01, t0=1.0, weight_decay=0.01)],
}
CASES = [(cls, kw) for cls in ELEMENTWISE for kw in SETTINGS[cls.__name__]]


def test_every_accepted_class_is_tested():
    assert {c.__name__ for c in ELEMENTWISE} == set(SETTINGS)


@pytest.mark.parametrize("cls,kwargs", CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)])
def test_one_optimizer_on_rows_equals_k_optimizers(cls, kwargs):
    torch.manual_seed(0)
    sizes = [int(torch.Size(s).numel()) for s in SHAPES]
    n = sum(sizes) + 3  # a padding tail, as the layout's alignment leaves
    start = torch.randn(K, n)
    start[:, sum(sizes):] = 0
    leaf = start.clone().requires_grad_()
    batched = cls([leaf], **kwargs)
    members = []
    for i in range(K):
        params = [p.reshape(s).clone().requires_grad_() for p, s in zip(start[i, :sum(sizes)].split(sizes), SHAPES)]
        members.append((params, cls(params, **kwargs)))
    for _ in range(4):
        grads = torch.randn(K, n)
        grads[:, sum(sizes):] = 0
        leaf.grad = grads.clone()
        batched.step()
        for i, (params, opt) in enumerate(members):
            for p, g in zip(params, grads[i, :sum(sizes)].split(sizes)):
                p.grad = g.reshape(p.shape).clone()
            opt.step()
    for i, (params, _) in enumerate(members):
        row = torch.cat([p.detach().flatten() for p in params])
        # elementwise: the same operations on the same numbers (one tensor instead of
        # several may take another vectorized path: allow a few ulp)
        torch.testing.assert_close(leaf.detach()[i, :sum(sizes)], row, rtol=1e-6, atol=1e-7)
    assert torch.all(leaf.detach()[:, sum(sizes):] == 0), "padding must stay zero"


@pytest.mark.parametrize("cls,kwargs", CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)])
def test_one_optimizer_on_strided_parameter_views_equals_k_optimizers(cls, kwargs):
    """The leaves a batched swarm gives its optimizer: each parameter's [K, *shape] view of
    one [K, N] buffer (row stride N, not contiguous); the updates land in the buffer."""
    torch.manual_seed(1)
    sizes = [int(torch.Size(s).numel()) for s in SHAPES]
    offsets = [sum(sizes[:j]) for j in range(len(sizes))]
    buffer = torch.randn(K, sum(sizes) + 3)
    buffer[:, sum(sizes):] = 0
    start = buffer.clone()
    leaves = [buffer[:, o:o + n].view(K, *s).requires_grad_() for o, n, s in zip(offsets, sizes, SHAPES)]
    assert not leaves[1].is_contiguous() and leaves[0].data_ptr() == buffer.data_ptr()
    batched = cls(leaves, **kwargs)
    members = []
    for i in range(K):
        params = [p.reshape(s).clone().requires_grad_() for p, s in zip(start[i, :sum(sizes)].split(sizes), SHAPES)]
        members.append((params, cls(params, **kwargs)))
    for _ in range(4):
        grads = [torch.randn(K, *s) for s in SHAPES]
        for leaf, g in zip(leaves, grads):
            leaf.grad = g.clone()
        batched.step()
        for i, (params, opt) in enumerate(members):
            for p, g in zip(params, grads):
                p.grad = g[i].clone()
            opt.step()
    for i, (params, _) in enumerate(members):
        row = torch.cat([p.detach().flatten() for p in params])
        torch.testing.assert_close(buffer[i, :sum(sizes)], row, rtol=1e-6, atol=1e-7)
    assert torch.all(buffer[:, sum(sizes):] == 0), "padding must stay zero"


@pytest.mark.parametrize("make", [lambda p: torch.optim.LBFGS(p), lambda p: torch.optim.SparseAdam(p),
                                  lambda p: torch.optim.Adafactor(p)], ids=["LBFGS", "SparseAdam", "Adafactor"])
def test_non_elementwise_refused(make):
    opt = make([torch.zeros(2, 3, requires_grad=True)])
    assert "not one of the elementwise" in unsupported_optimizer(opt)


def test_subclass_and_several_groups_refused():
    class MySGD(torch.optim.SGD):
        pass

    a, b = torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 3, requires_grad=True)
    assert "MySGD" in unsupported_optimizer(MySGD([a], lr=0.1))
    assert "parameter groups" in unsupported_optimizer(torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1))
    assert unsupported_optimizer(torch.optim.Adam([a])) is None
