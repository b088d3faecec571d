"""A ParticleModule stands in for the user's module: attribute forwarding to
``root_module`` and the state dict without the ``root_module.`` prefix."""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext import GetNytoModule, ParticleModule


class MLP(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 2)
        self.temperature = 2.0

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x)))) / self.temperature

    def logits_norm(self, x):
        return self(x).norm()

    @property
    def width(self):
        return self.fc1.out_features


class PlainMLP(nn.Module):
    """The user's class without nytorch: what an exported state loads into."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2)


# ------------------------------------------------------------------ attributes


def test_reads_forward_to_the_root_module():
    pm = ParticleModule(MLP())
    root = pm.root_module
    assert pm.fc1 is root.fc1 and pm.fc1.weight is root.fc1.weight
    assert pm.temperature == 2.0 and pm.width == 6
    x = torch.randn(3, 4)
    pm.eval()
    assert torch.equal(pm.logits_norm(x), root.logits_norm(x))
    assert "fc1" in dir(pm) and "logits_norm" in dir(pm)


def test_own_attributes_win_and_unknown_names_raise_naming_both():
    pm = ParticleModule(MLP())
    assert pm.forward.__self__ is pm and isinstance(pm.particle_kernel, object)
    assert [n for n, _ in pm.named_parameters()][0] == "root_module.fc1.weight"  # nn.Module's own view
    with pytest.raises(AttributeError, match=r"'ParticleModule' object and its root_module \(MLP\) "
                                             r"have no attribute 'nope'"):
        _ = pm.nope
    assert not hasattr(pm, "nope")
    with pytest.raises(AttributeError):
        _ = pm._is_nyto_module  # private names stay the wrapper's
    assert not isinstance(pm, nyto.NytoModule)


def test_assignments_reach_the_root_only_for_its_attributes():
    pm = ParticleModule(MLP())
    pm.temperature = 4.0
    assert pm.root_module.temperature == 4.0 and "temperature" not in pm.__dict__
    pm.note = "mine"  # unknown to the root: the wrapper's own
    assert pm.__dict__["note"] == "mine" and not hasattr(pm.root_module, "note")
    pm.training = False
    assert pm.__dict__["training"] is False
    with pytest.raises(RuntimeError, match="GetNytoModule"):
        pm.fc1 = nn.Linear(4, 6)  # a structural change of the root, as before
    with GetNytoModule(pm) as root:
        root.fc1 = nn.Linear(4, 6)
    assert pm.fc1 is pm.root_module.fc1


def test_forwarding_keeps_copy_pickle_and_the_particle_api():
    pm = ParticleModule(MLP())
    twin = copy.deepcopy(pm)
    assert twin.fc1 is twin.root_module.fc1 and twin.fc1 is not pm.fc1
    loaded = pickle.loads(pickle.dumps(pm))
    assert torch.equal(loaded.fc2.weight, pm.fc2.weight)
    other = pm.randn()
    mid = 0.5 * pm + 0.5 * other
    assert isinstance(mid, ParticleModule)
    torch.testing.assert_close(mid.fc1.weight, 0.5 * pm.fc1.weight + 0.5 * other.fc1.weight)
    assert mid.temperature == 2.0  # plain attributes are shared with the source (nytorch)


def test_subclass_attributes_stay_its_own():
    class Counting(ParticleModule):
        def __init__(self, root):
            super().__init__(root)
            self.calls = 0

    pm = Counting(MLP())
    assert pm.calls == 0 and not hasattr(pm.root_module, "calls")
    assert pm.fc2 is pm.root_module.fc2


# ------------------------------------------------------------------ state dicts


def test_module_state_dict_loads_into_the_users_class():
    pm = ParticleModule(MLP())
    pm.train()
    pm(torch.randn(8, 4))  # running statistics
    state = pm.module_state_dict()
    assert list(state) == list(pm.root_module.state_dict())
    assert not any(k.startswith("root_module") for k in state)
    plain = PlainMLP()
    plain.load_state_dict(state)  # strict
    for k, v in plain.state_dict().items():
        assert torch.equal(v, state[k]), k
    plain.eval()
    pm.eval()
    x = torch.randn(5, 4)
    torch.testing.assert_close(plain.fc2(torch.relu(plain.bn(plain.fc1(x)))) / 2.0, pm(x))


def test_module_state_dict_keeps_metadata_and_keep_vars():
    pm = ParticleModule(MLP())
    state = pm.module_state_dict()
    assert state._metadata[""] == pm.root_module.state_dict()._metadata[""]
    assert state._metadata["bn"]["version"] == nn.BatchNorm1d._version
    kept = pm.module_state_dict(keep_vars=True)
    assert kept["fc1.weight"] is pm.fc1.weight


def test_load_module_state_dict_in_place():
    pm = ParticleModule(MLP())
    weight = pm.fc1.weight
    plain = PlainMLP()
    pm.load_module_state_dict(plain.state_dict())
    assert pm.fc1.weight is weight and torch.equal(weight, plain.fc1.weight)
    with pytest.raises(RuntimeError, match="Missing key"):
        pm.load_module_state_dict({"fc1.weight": plain.fc1.weight})


def test_a_swarm_members_export_is_compact():
    swarm = nyto.Swarm.spawn(ParticleModule(MLP()), 4)
    state = swarm[2].module_state_dict()
    assert torch.equal(state["fc1.weight"], swarm[2].fc1.weight)
    assert state["fc1.weight"].untyped_storage().nbytes() == 24 * 4  # a copy, not the [K, N] buffer
    buf = io.BytesIO()
    torch.save(state, buf)
    plain = PlainMLP()
    plain.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    assert torch.equal(plain.fc2.bias, swarm[2].fc2.bias)
