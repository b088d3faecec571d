"""Swarm.storages' one-pass check (StorageCheck): once every member has been checked,
a step of a swarm whose members have not changed takes no per-member catch-up; any
change to a member (its parameters' data, its structure, its device or dtype, the
species' configuration) fails the check, and the step handles it as before."""
import pytest
import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext.swarm import Swarm, container
from nytorch_ext.swarm.members import StorageCheck


class Net(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make_swarm(k=6):
    torch.manual_seed(0)
    first = nyto.ParticleModule(Net())
    return Swarm([first] + [first.randn() for _ in range(k - 1)])


def values(swarm):
    return [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in swarm]


def expected_step(before, result, alpha):
    out = [v.clone() for v in before]
    for i, w in result.blended.items():
        out[i] = (1 - w) * before[i] + w * before[result.best]
    return out


def count_full_checks(monkeypatch):
    calls = []
    real = container.member_storages
    monkeypatch.setattr(container, "member_storages", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def step(swarm, seed=0):
    return swarm.apso_step(torch.arange(len(swarm), dtype=torch.float32).tolist(), 0.5, 4, replace=False,
                           generator=torch.Generator().manual_seed(seed))


def test_an_unchanged_swarm_is_checked_in_one_pass(monkeypatch):
    swarm = make_swarm()
    swarm.storages()  # the full check, which makes the one-pass check
    calls = count_full_checks(monkeypatch)
    for seed in range(3):
        before = values(swarm)
        result = step(swarm, seed)
        for got, want in zip(values(swarm), expected_step(before, result, 0.5)):
            torch.testing.assert_close(got, want)
    assert calls == []
    assert isinstance(swarm.__dict__["_check"], StorageCheck)


def replace_data(swarm):
    p = swarm[2].root_module.fc1.weight
    p.data = p.data.clone()  # out of its row


def replace_parameter(swarm):
    with nyto.GetNytoModule(swarm[1]) as m:
        m.fc2.bias = nn.Parameter(torch.zeros(2))  # a new Parameter object (a structural change)


def move_member(swarm):
    swarm[3].to(torch.float64)  # another dtype: a new layout for the member


def change_config(swarm):
    with nyto.GetNytoModule(swarm[0]) as m:
        m.set_param_config(clone=True, name="fc1")  # the parameters stay operational


def add_module(swarm):
    with nyto.GetNytoModule(swarm[4]) as m:
        m.extra = nn.Linear(2, 2)  # a structural change, replayed by every member


@pytest.mark.parametrize("change", [replace_data, replace_parameter, move_member, change_config, add_module])
def test_every_change_fails_the_check_and_the_step_handles_it(monkeypatch, change):
    swarm = make_swarm()
    step(swarm)
    check = swarm.__dict__["_check"]
    assert check.holds(swarm._base)
    change(swarm)
    assert not check.holds(swarm._base)
    calls = count_full_checks(monkeypatch)
    try:
        before = values(swarm)
    except RuntimeError:  # a member of another dtype: torch.cat refuses mixing, compare after the step
        before = None
    if change is move_member:
        with pytest.raises(ValueError, match="different flat layout"):
            step(swarm, 1)
        return
    result = step(swarm, 1)
    assert calls, "the full check ran"
    if change in (replace_data, change_config):  # structural changes replay on every member: values differ
        for got, want in zip(values(swarm), expected_step(before, result, 0.5)):
            torch.testing.assert_close(got, want)
    # every member is in its row again, and the next step takes the one-pass check
    assert swarm.__dict__["_check"].holds(swarm._base)
    for i, m in enumerate(swarm):
        row = swarm.buffers()[0][i]
        assert all(p.data_ptr() >= row.data_ptr() for p in m.parameters() if p.dtype == row.dtype)


def test_a_repacked_swarm_makes_a_new_check():
    swarm = make_swarm()
    step(swarm)
    old = swarm.__dict__["_check"]
    swarm.to(torch.float64)  # every member: new [K, N] buffers
    assert not old.holds(swarm._base)
    before = values(swarm)
    result = step(swarm, 2)
    for got, want in zip(values(swarm), expected_step(before, result, 0.5)):
        torch.testing.assert_close(got, want)
    assert swarm.__dict__["_check"] is not old and swarm.__dict__["_check"].holds(swarm._base)


def test_subset_storages_come_from_the_check(monkeypatch):
    swarm = make_swarm()
    full = swarm.storages()
    calls = count_full_checks(monkeypatch)
    part = swarm.storages([4, 1])
    assert list(part) == [4, 1] and all(part[i] is full[i] for i in part) and calls == []
