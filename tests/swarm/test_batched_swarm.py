"""BatchedSwarm: the members' forward in one vmap over leaves that share the [K, N]
buffers, the static refusals, and the optimizer-state conversion to and from K
per-member state_dicts."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nytorch_ext import NytoModule, ParticleModule
from nytorch_ext.swarm import Swarm
from nytorch_ext.swarm.batched import (BatchedSwarm, batched_optimizer_state, load_member_optimizer_states,
                                       member_optimizer_states, unsupported_model)


class MLP(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Conv(NytoModule):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


class Normed(NytoModule):
    def __init__(self, track=True):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4, track_running_stats=track)

    def forward(self, x):
        return self.bn(self.fc(x))


def swarm_of(cls, k=4, seed=0):
    torch.manual_seed(seed)
    return Swarm.spawn(ParticleModule(cls()), k)


@pytest.mark.parametrize("cls,shape", [(MLP, (7, 6)), (Conv, (5, 1, 4, 4))])
def test_forward_is_every_members_forward(cls, shape):
    swarm = swarm_of(cls)
    model = BatchedSwarm(swarm)
    x = torch.randn(*shape)
    out = model.forward(x)
    assert out.shape[0] == len(swarm)
    for i, m in enumerate(swarm):
        # batched matmul / convolution: another summation order than the member's own call
        torch.testing.assert_close(out[i], m(x), rtol=1e-5, atol=1e-6)


def test_leaves_share_the_buffers_and_optimizer_writes_reach_the_members():
    swarm = swarm_of(MLP)
    storages = swarm.storages()
    model = BatchedSwarm(swarm)
    (buffer,) = swarm.buffers()
    # one leaf per parameter, member.parameters() order: its [K, *shape] view of the buffer
    params = list(swarm[0].parameters())
    assert [tuple(leaf.shape) for leaf in model.leaves] == [(len(swarm), *p.shape) for p in params]
    for leaf, slot in zip(model.leaves, model.slots):
        assert leaf.data_ptr() == buffer.data_ptr() + slot.offset * buffer.element_size()
        assert leaf.stride(0) == buffer.stride(0)
    assert all(leaf.is_leaf and leaf.requires_grad for leaf in model.leaves)
    before = [[p.detach().clone() for p in m.parameters()] for m in swarm]
    x = torch.randn(8, 6)
    model.forward(x).square().sum().backward()
    opt = torch.optim.SGD(model.leaves, lr=0.1)
    grads = [leaf.grad.clone() for leaf in model.leaves]
    with model.writing():
        opt.step()
    for i, m in enumerate(swarm):
        row = torch.cat([p.detach().flatten() for p in m.parameters()])
        want = torch.cat([p.flatten() for p in before[i]])
        got_step = want - row
        assert got_step.abs().max() > 0
        # the step each member saw is its own gradient row
        lr_grad = 0.1 * torch.cat([g[i].flatten() for g in grads])
        torch.testing.assert_close(got_step, lr_grad, rtol=1e-5, atol=1e-7)
    # the members are where the swarm keeps them: same storages, nothing re-adopted
    assert all(swarm.storages()[i] is st for i, st in storages.items())
    assert model.current()


def test_members_stay_ordinary_modules():
    swarm = swarm_of(MLP)
    model = BatchedSwarm(swarm)
    x = torch.randn(3, 6)
    with torch.no_grad(), model.writing():
        model.leaves[0][2].mul_(0.5)
    torch.testing.assert_close(swarm[2](x), model.forward(x)[2].detach(), rtol=1e-5, atol=1e-6)


def test_unsupported_models():
    assert "running statistics" in unsupported_model(swarm_of(Normed))
    assert unsupported_model(swarm_of(lambda: Normed(track=False))) is None
    frozen = swarm_of(MLP)
    for m in frozen:
        m.root_module.fc1.bias.requires_grad_(False)
    assert "requires no gradient" in unsupported_model(frozen)
    with pytest.raises(ValueError, match="running statistics"):
        BatchedSwarm(swarm_of(Normed))


def test_shared_buffers_are_not_batched_own_buffers_are():
    class Scaled(NytoModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.register_buffer("scale", torch.tensor(2.0))

        def forward(self, x):
            return self.fc(x) * self.scale

    for init in ("default", "clone"):  # own buffers, shared buffers
        torch.manual_seed(0)
        swarm = Swarm.spawn(ParticleModule(Scaled()), 3, init=init)
        swarm[1].root_module.scale.fill_(3.0)
        x = torch.randn(4, 3)
        out = BatchedSwarm(swarm).forward(x)
        for i, m in enumerate(swarm):
            torch.testing.assert_close(out[i], m(x), rtol=1e-5, atol=1e-6)


def adam_on(model, steps=2, x=None):
    opt = torch.optim.Adam(model.leaves, lr=0.01, weight_decay=0.1)
    x = torch.randn(5, 6) if x is None else x
    for _ in range(steps):
        opt.zero_grad()
        model.forward(x).square().sum().backward()
        opt.step()
    return opt


def test_member_states_are_what_member_optimizers_save():
    swarm = swarm_of(MLP, k=3)
    model = BatchedSwarm(swarm)
    opt = adam_on(model)
    states = member_optimizer_states(opt, model)
    assert len(states) == 3
    for s, m in zip(states, swarm):
        params = list(m.parameters())
        own = torch.optim.Adam(params, lr=0.01, weight_decay=0.1).state_dict()
        assert s["param_groups"][0].keys() == own["param_groups"][0].keys()
        assert s["param_groups"][0]["params"] == own["param_groups"][0]["params"]
        assert sorted(s["state"]) == list(range(len(params)))
        for j, p in enumerate(params):
            assert s["state"][j]["exp_avg"].shape == p.shape
            assert float(s["state"][j]["step"]) == 2.0
        # loads into the member's own optimizer, as a sequential run's state would
        torch.optim.Adam(params, lr=0.01, weight_decay=0.1).load_state_dict(s)


def test_states_round_trip_and_mismatches_are_refused():
    swarm = swarm_of(MLP, k=3)
    model = BatchedSwarm(swarm)
    opt = adam_on(model)
    want = {n: v.clone() for n, v in opt.state[model.leaves[0]].items()}
    states = member_optimizer_states(opt, model)
    fresh = torch.optim.Adam(model.leaves, lr=0.01, weight_decay=0.1)
    load_member_optimizer_states(fresh, model, states)
    for n, v in fresh.state[model.leaves[0]].items():
        torch.testing.assert_close(v, want[n], rtol=0, atol=0)
    bad_step = [dict(s, state={j: dict(e) for j, e in s["state"].items()}) for s in states]
    bad_step[1]["state"][0]["step"] = torch.tensor(5.0)
    with pytest.raises(ValueError, match="must agree across members"):
        batched_optimizer_state(fresh, model, bad_step)
    bad_lr = [dict(s, param_groups=[dict(s["param_groups"][0])]) for s in states]
    bad_lr[2]["param_groups"][0]["lr"] = 0.5
    with pytest.raises(ValueError, match=r"optimizer\[2\]: its settings differ"):
        batched_optimizer_state(fresh, model, bad_lr)
    with pytest.raises(ValueError, match="one per member"):
        batched_optimizer_state(fresh, model, states[:2])
    # nothing was loaded by the refused calls
    for n, v in fresh.state[model.leaves[0]].items():
        torch.testing.assert_close(v, want[n], rtol=0, atol=0)
