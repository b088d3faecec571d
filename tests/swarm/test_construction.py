"""Swarm.spawn's inits and Swarm.from_modules (nytorch_ext.swarm.construction)."""
import warnings

import pytest
import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext import GetNytoModule
from nytorch_ext.swarm import Swarm


class MLP(nyto.NytoModule):
    def __init__(self, hidden=32, dtype=torch.float32):
        super().__init__()
        self.fc1 = nn.Linear(30, hidden, dtype=dtype)
        self.bn = nn.BatchNorm1d(hidden, dtype=dtype)
        self.fc2 = nn.Linear(hidden, 2, dtype=dtype)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


class PlainMLP(nn.Module):
    """The same architecture as MLP, on a plain nn.Module."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(30, 32), nn.BatchNorm1d(32), nn.Linear(32, 2)


def weights(m) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.parameters()])


# ------------------------------------------------------------------ spawn: "default"


def test_default_is_pytorchs_init_not_randn():
    torch.manual_seed(0)
    swarm = Swarm.spawn(nyto.ParticleModule(MLP()), 9)
    torch.manual_seed(1)
    fresh = [MLP() for _ in range(8)]
    # Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); randn would give std 1
    for name, fan_in in (("fc1.weight", 30), ("fc1.bias", 30), ("fc2.weight", 32)):
        got = torch.stack([dict(m.root_module.named_parameters())[name].detach() for m in swarm[1:]])
        want = torch.stack([dict(m.named_parameters())[name].detach() for m in fresh])
        assert got.abs().max() <= fan_in ** -0.5 + 1e-6
        assert abs(got.std().item() - want.std().item()) < 0.15 * want.std().item()
    assert abs(swarm[1].fc1.weight.std().item() - 0.105) < 0.01  # not randn's 1.0
    for m in swarm[1:]:  # BatchNorm's reset: weight 1, bias 0
        assert torch.equal(m.bn.weight.detach(), torch.ones(32)) and torch.equal(m.bn.bias.detach(), torch.zeros(32))


def test_default_members_differ_and_are_reproducible():
    torch.manual_seed(3)
    a = Swarm.spawn(nyto.ParticleModule(MLP()), 4)
    torch.manual_seed(3)
    b = Swarm.spawn(nyto.ParticleModule(MLP()), 4)
    values = [weights(m) for m in a]
    for i in range(4):
        assert torch.equal(values[i], weights(b[i]))
        for j in range(i):
            assert not torch.equal(values[i].narrow(0, 0, 960), values[j].narrow(0, 0, 960))


def test_default_leaves_model_untouched_and_gives_members_their_own_buffers():
    model = nyto.ParticleModule(MLP())
    model.train()
    model(torch.randn(16, 30))  # running statistics away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    swarm = Swarm.spawn(model, 3)
    assert swarm[0] is model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    m1 = swarm[1]
    assert m1.bn.running_mean is not model.bn.running_mean
    assert torch.equal(m1.bn.running_mean, torch.zeros(32)) and int(m1.bn.num_batches_tracked) == 0
    m1(torch.randn(16, 30))
    assert torch.equal(model.bn.running_mean, before["root_module.bn.running_mean"])
    assert not torch.equal(m1.bn.running_mean, swarm[2].bn.running_mean)


def test_own_buffers_survive_structural_changes_of_the_species():
    swarm = Swarm.spawn(nyto.ParticleModule(MLP()), 3)
    swarm[1].train()
    swarm[1](torch.randn(8, 30))
    mean = swarm[1].bn.running_mean.clone()
    with GetNytoModule(swarm[0]) as root:
        root.head = nn.Linear(2, 2)
    swarm.apso_step([3.0, 2.0, 1.0], 0.5, replace=False)  # touches every member
    assert all(hasattr(m, "head") for m in swarm)
    assert torch.equal(swarm[1].bn.running_mean, mean)
    assert swarm[1].bn.running_mean is not swarm[0].bn.running_mean


def test_default_warns_about_parameters_no_reset_covers():
    class Scaled(nyto.NytoModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.scale = nn.Parameter(torch.tensor([2.0]))

    model = nyto.ParticleModule(Scaled())
    with pytest.warns(UserWarning, match=r"\['scale'\]"):
        swarm = Swarm.spawn(model, 2)
    assert torch.equal(swarm[1].scale.detach(), torch.tensor([2.0]))
    assert not torch.equal(swarm[1].fc.weight, model.fc.weight)


def test_default_resets_children_before_parents():
    calls = []

    class Child(nn.Linear):
        def reset_parameters(self):
            calls.append("child")
            super().reset_parameters()

    class Parent(nyto.NytoModule):
        def __init__(self):
            super().__init__()
            self.child = Child(2, 2)

        def reset_parameters(self):  # a parent's own init runs last, as in its constructor
            calls.append("parent")
            with torch.no_grad():
                self.child.weight.fill_(0.5)

    model = nyto.ParticleModule(Parent())
    calls.clear()
    swarm = Swarm.spawn(model, 2)
    assert calls == ["child", "parent"]
    assert torch.equal(swarm[1].child.weight.detach(), torch.full((2, 2), 0.5))


def test_default_on_a_bare_nytomodule():
    torch.manual_seed(0)
    model = MLP()
    swarm = Swarm.spawn(model, 3)
    assert swarm[0] is model and isinstance(swarm[1], MLP)
    assert not torch.equal(swarm[1].fc1.weight, model.fc1.weight)


# ------------------------------------------------------------------ spawn: other inits


def test_particle_method_inits_keep_nytorch_semantics():
    model = nyto.ParticleModule(MLP())
    clone = Swarm.spawn(model, 2, init="clone")
    assert torch.equal(weights(clone[1]), weights(model))
    assert clone[1].bn.running_mean is model.bn.running_mean  # shared, as nytorch's particles
    torch.manual_seed(0)
    randn = Swarm.spawn(model, 2, init="randn")
    assert abs(randn[1].fc1.weight.std().item() - 1.0) < 0.1


def test_callable_init_gets_the_users_module_and_the_index():
    model = nyto.ParticleModule(MLP())
    seen = []

    def init(module, index):
        seen.append((type(module), index, torch.is_grad_enabled()))
        module.fc1.weight.fill_(float(index))  # in place, no torch.no_grad() needed
        return module.fc1.weight  # ignored

    swarm = Swarm.spawn(model, 4, init=init)
    assert seen == [(MLP, 1, False), (MLP, 2, False), (MLP, 3, False)]
    for i in range(1, 4):
        assert torch.equal(swarm[i].fc1.weight.detach(), torch.full((32, 30), float(i)))
        assert torch.equal(swarm[i].fc2.weight, model.fc2.weight)  # the rest: a clone
        assert swarm[i].bn.running_mean is not model.bn.running_mean
    assert swarm.buffers()[0][2, 0].item() == 2.0  # written into the member's row


def test_callable_init_old_form_is_deprecated():
    model = nyto.ParticleModule(MLP())
    with pytest.warns(DeprecationWarning, match="init\\(module, index\\)"):
        swarm = Swarm.spawn(model, 3, init=lambda m: m.clone())
    assert len(swarm) == 3 and swarm[0] is model


@pytest.mark.parametrize("init, error, match", [
    ("zeros", ValueError, "init must be one of 'default', 'clone', 'randn', 'rand' or a callable"),
    (3, TypeError, "init must be a string or a callable"),
    (lambda: None, TypeError, r"init must take \(module, index\)"),
])
def test_spawn_rejects_bad_inits(init, error, match):
    model = nyto.ParticleModule(MLP())
    before = weights(model)
    with pytest.raises(error, match=match):
        Swarm.spawn(model, 3, init=init)
    assert torch.equal(weights(model), before)


def test_spawn_rejects_a_model_that_is_not_a_particle():
    with pytest.raises(TypeError, match="model: members must be ParticleModule or NytoModule"):
        Swarm.spawn(PlainMLP(), 3)
    with pytest.raises(ValueError, match="size must be a positive int"):
        Swarm.spawn(nyto.ParticleModule(MLP()), 0)


# ------------------------------------------------------------------ from_modules


def test_from_modules_adopts_independently_built_particles():
    torch.manual_seed(0)
    built = [nyto.ParticleModule(MLP()) for _ in range(4)]
    values = [weights(m) for m in built]
    swarm = Swarm.from_modules(built)
    assert len(swarm) == 4 and swarm[0] is built[0]
    for i, m in enumerate(swarm):
        assert torch.equal(weights(m), values[i])
        assert isinstance(m, nyto.ParticleModule)
    for m in built[1:]:  # the originals are left as they were
        assert m.fc1.weight.data_ptr() != swarm.buffers()[0].data_ptr()
    result = swarm.apso_step([4.0, 3.0, 2.0, 1.0], 0.5, replace=False)
    assert result.best == 3


def test_from_modules_keeps_member_order_and_the_template_first_particle():
    torch.manual_seed(0)
    plain, bare, wrapped = PlainMLP(), MLP(), nyto.ParticleModule(MLP())
    plain.train()
    plain.bn(torch.randn(8, 32))
    swarm = Swarm.from_modules([plain, bare, wrapped])
    assert swarm[1] is bare  # the template (the first particle) joins as it is
    assert isinstance(swarm[0], MLP) and isinstance(swarm[2], MLP)  # the template's kind
    for src, m in zip([plain, bare, wrapped], swarm):
        assert torch.equal(weights(m), weights(src))
    assert torch.equal(swarm[0].bn.running_mean, plain.bn.running_mean)
    assert swarm[0].bn.running_mean is not bare.bn.running_mean
    assert torch.equal(bare.bn.running_mean, torch.zeros(32))  # the template's untouched
    assert swarm.species is bare._particle_kernel.species


def test_from_modules_keeps_particles_of_the_template_species():
    model = nyto.ParticleModule(MLP())
    other = model.randn()
    swarm = Swarm.from_modules([model, other, model])
    assert swarm[0] is model and swarm[1] is other
    assert swarm[2] is not model and torch.equal(weights(swarm[2]), weights(model))


def test_from_modules_checks_dtypes():
    with pytest.raises(ValueError, match=r"modules\[1\] .*parameter 'fc1.weight' has dtype torch.float64"):
        Swarm.from_modules([nyto.ParticleModule(MLP()), MLP(dtype=torch.float64)])


class Shorter(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn = nn.Linear(30, 32), nn.BatchNorm1d(32)


class NoStats(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(30, 32), nn.Linear(32, 2)
        self.bn = nn.BatchNorm1d(32, track_running_stats=False)


@pytest.mark.parametrize("bad, match", [
    (lambda: MLP(hidden=16), r"modules\[2\] has another architecture than modules\[0\]: "
                             r"parameter 'fc1.weight' has shape \(16, 30\), modules\[0\]'s has \(32, 30\)"),
    (Shorter, r"modules\[2\] .*missing \['fc2.weight', 'fc2.bias'\]"),
    (NoStats, r"modules\[2\] .*missing \['bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked'\]"),
])
def test_from_modules_names_the_index_of_another_architecture(bad, match):
    good = [nyto.ParticleModule(MLP()), PlainMLP()]
    before = [weights(m) for m in good]
    with pytest.raises(ValueError, match=match):
        Swarm.from_modules(good + [bad()])
    for m, b in zip(good, before):
        assert torch.equal(weights(m), b)


def test_from_modules_bad_arguments():
    with pytest.raises(TypeError, match="modules must be a sequence of modules"):
        Swarm.from_modules(MLP())
    with pytest.raises(ValueError, match="modules is empty"):
        Swarm.from_modules([])
    with pytest.raises(TypeError, match=r"modules\[1\] must be an nn.Module, got int"):
        Swarm.from_modules([MLP(), 3])
    with pytest.raises(TypeError, match="at least one must be a particle"):
        Swarm.from_modules([PlainMLP(), PlainMLP()])


def test_from_modules_accepts_a_generator_and_an_unwrapped_root():
    pm = nyto.ParticleModule(MLP())
    swarm = Swarm.from_modules(m for m in [pm, pm.root_module])
    assert swarm[0] is pm and torch.equal(weights(swarm[1]), weights(pm))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Swarm.from_modules([pm, PlainMLP()])
