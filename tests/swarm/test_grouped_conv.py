"""The members' conv2d as one grouped, channels-last convolution: checked against
torch.func.vmap's own batching rule (values, gradients, output layout), for the calls
it must leave alone, and inside a batched swarm."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import vmap

import nytorch_ext.swarm.grouped_conv as grouped_conv
from nytorch_ext import NytoModule, ParticleModule
from nytorch_ext.swarm import Swarm
from nytorch_ext.swarm.batched import BatchedSwarm
from nytorch_ext.swarm.grouped_conv import AVAILABLE, MemberConvMode, member_conv_mode

K, B = 3, 5
# another summation order (channels-last oneDNN kernels): agreement to float32 rounding
ATOL, RTOL = 1e-5, 1e-5


@pytest.fixture
def calls(monkeypatch):
    """How many conv2d calls the mode sent to the grouped convolution."""
    seen = []
    real = grouped_conv.grouped_channels_last_conv2d

    def counted(*args):
        seen.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(grouped_conv, "grouped_channels_last_conv2d", counted)
    return seen


def with_mode(fn):
    def inner(*args):
        with MemberConvMode():
            return fn(*args)
    return inner


def test_torch_still_has_the_pieces():
    assert AVAILABLE


def grads(out, tensors):
    g = torch.randn_like(out, generator=torch.Generator().manual_seed(3))
    return torch.autograd.grad(out, tensors, g, allow_unused=True)


CASES = [
    dict(),
    dict(stride=2),
    dict(padding=1),
    dict(padding=(2, 0), stride=(1, 2)),
    dict(dilation=2, padding=2),
    dict(padding="same"),
    dict(padding="valid"),
    dict(groups=2),
    dict(groups=4, padding=1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's, for 2x3
@pytest.mark.parametrize("kernel", [(3, 3), (1, 1), (2, 3)], ids=["3x3", "1x1", "2x3"])
@pytest.mark.parametrize("kwargs", CASES, ids=[str(c) or "defaults" for c in CASES])
@pytest.mark.parametrize("bias", ["member", "shared", None])
@pytest.mark.parametrize("x_dim", [0, 1, 3])
def test_equals_the_batching_rule(kernel, kwargs, bias, x_dim, calls):
    torch.manual_seed(0)
    groups = kwargs.get("groups", 1)
    c, o = 4, 6 if groups != 4 else 8
    x = torch.randn(K, B, c, 7, 6).movedim(0, x_dim).requires_grad_()
    w = torch.randn(K, o, c // groups, *kernel, requires_grad=True)
    b = {"member": torch.randn(K, o), "shared": torch.randn(o), None: None}[bias]
    if b is not None:
        b.requires_grad_()
    b_dim = 0 if bias == "member" else None

    def conv(x, w, b):
        return F.conv2d(x, w, b, **kwargs)

    theirs = vmap(conv, in_dims=(x_dim, 0, b_dim))(x, w, b)
    ours = vmap(with_mode(conv), in_dims=(x_dim, 0, b_dim))(x, w, b)
    assert len(calls) == 1
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
    assert ours.stride() == theirs.stride()  # the layout the model's code would see
    wrt = [t for t in (x, w, b) if t is not None]
    for a, e in zip(grads(ours, wrt), grads(theirs, wrt)):
        torch.testing.assert_close(a, e, atol=ATOL, rtol=RTOL)


def test_each_member_sees_the_layout_of_the_batching_rule(calls):
    x, w = torch.randn(K, B, 2, 5, 5), torch.randn(K, 3, 2, 3, 3)
    seen = {}

    def conv(tag):
        def f(x, w):
            out = F.conv2d(x, w, padding=1)
            seen[tag] = out.is_contiguous()
            return out.view(out.shape[0], -1)  # a model's flatten by view still works
        return f

    theirs = vmap(conv("rule"))(x, w)
    ours = vmap(with_mode(conv("mode")))(x, w)
    assert len(calls) == 1 and seen["mode"] == seen["rule"]
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)


def test_calls_it_does_not_cover_run_the_batching_rule_unchanged(calls):
    torch.manual_seed(1)
    x, w, b = torch.randn(K, B, 2, 5, 5), torch.randn(K, 3, 2, 3, 3), torch.randn(K, 3)
    shared_x = x[0]
    cases = [
        (lambda w: F.conv2d(shared_x, w), (w,), (0,)),  # the input is shared: the rule's one convolution
        (lambda x: F.conv2d(x, w[0]), (x,), (0,)),  # the weight is shared
        (lambda x, w: F.conv2d(x, w), (x.double(), w.double()), (0, 0)),  # not float32
        (lambda x, w: F.conv2d(x[0], w), (x, w), (0, 0)),  # a 3-d (unbatched) input per member
        (lambda x, w: F.conv1d(x.flatten(-2), w[..., 0]), (x, w), (0, 0)),  # not conv2d
        # a vmap inside the model: tensors batched at another level
        (lambda x, w: vmap(lambda xi: F.conv2d(xi, w))(x.unsqueeze(0).expand(2, *x.shape)), (x, w), (0, 0)),
    ]
    for fn, args, dims in cases:
        expected = vmap(fn, in_dims=dims)(*args)
        assert torch.equal(vmap(with_mode(fn), in_dims=dims)(*args), expected)
    assert calls == []
    # no vmap at all
    with MemberConvMode():
        assert torch.equal(F.conv2d(x[0], w[0], b[0]), torch.conv2d(x[0], w[0], b[0]))
    assert calls == []


def test_bad_shapes_raise_torch_errors_and_change_nothing(calls):
    x, w = torch.randn(K, B, 2, 5, 5), torch.randn(K, 3, 4, 3, 3)  # 2 input channels, weight wants 4
    before = (x.clone(), w.clone())
    with pytest.raises(RuntimeError, match="channels"):
        vmap(with_mode(lambda x, w: F.conv2d(x, w)))(x, w)
    with pytest.raises(TypeError):
        vmap(with_mode(lambda x, w: F.conv2d(x, w, None, 1, 0, 1, 1, 7)))(x, w)
    assert calls == [] and torch.equal(x, before[0]) and torch.equal(w, before[1])


class Conv(NytoModule):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect")
        self.fc = nn.Linear(6 * 3 * 3, 10)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.conv1(x)), 2)
        out = F.relu(self.conv2(out))
        return self.fc(out.view(out.size(0), -1))


class MLP(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def test_a_batched_swarm_of_convnets_uses_it_and_matches_its_members(calls):
    torch.manual_seed(2)
    swarm = Swarm.from_modules([ParticleModule(Conv()) for _ in range(K)])
    model = BatchedSwarm(swarm)
    x = torch.randn(B, 1, 6, 6)
    out = model.forward(x)
    assert len(calls) == 1  # conv2: conv1's input is shared
    for i in range(K):
        torch.testing.assert_close(out[i], swarm[i](x), atol=ATOL, rtol=RTOL)
    out.square().sum().backward()
    for i in range(K):
        member = list(swarm[i].parameters())
        expected = torch.autograd.grad(swarm[i](x).square().sum(), member)
        for leaf, g in zip(model.leaves, expected):
            torch.testing.assert_close(leaf.grad[i], g, atol=1e-4, rtol=1e-4)


def test_only_models_with_a_conv2d_pay_for_the_mode():
    assert isinstance(member_conv_mode(Conv()), MemberConvMode)
    assert not isinstance(member_conv_mode(MLP()), MemberConvMode)
