"""Particle kernels: flat storage invariants, staleness (re-flattening), optimizers,
state_dict, train/eval, BatchNorm buffers, and structural versions (touch)."""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext import SpeciesError
from particle_models import (MyModel, Big, Inner, Lin, Mixed, Net, Outer, as_lists, assert_values, inside, species,
                       python_and_compiled, storage_ptr, values)


def _groups(module):
    """(dtype, device) -> set of storage pointers of the module's parameters."""
    out = {}
    for p in module.parameters():
        out.setdefault((p.dtype, p.device), set()).add(storage_ptr(p))
    return out


def _assert_flat(module):
    """All operational params of a particle share one storage per (dtype, device) group,
    and that storage is the particle's flat buffer."""
    P = module.product()
    groups = _groups(module)
    assert len(P.buffers()) == len(groups)
    for buf in P.buffers():
        ptrs = groups[(buf.dtype, buf.device)]
        assert ptrs == {storage_ptr(buf)}
    for p in module.parameters():
        assert any(inside(p, buf) for buf in P.buffers())


# ----------------------------------------------------------------- flat storage

@pytest.mark.parametrize("model", [Lin, Net, Mixed, Big, Outer])
def test_one_storage_per_group(model):
    torch.manual_seed(0)
    a = model()
    a.touch()
    _assert_flat(a)
    for r in (a + 1, a * a, a.clone(), a.randn(), -a, (a.product() * 0.5 + 1).module()):
        _assert_flat(r)
    a += 1
    _assert_flat(a)


def test_mixed_model_has_one_storage_per_dtype():
    a = Mixed()
    a.product()  # flattens
    g = _groups(a)
    assert set(g) == {(torch.float32, torch.device("cpu")), (torch.float64, torch.device("cpu"))}
    assert all(len(ptrs) == 1 for ptrs in g.values())
    assert len({storage_ptr(p) for p in a.parameters()}) == 2


def test_particles_have_separate_storages():
    a = Net()
    b = a + 1
    c = a.clone()
    ptrs = [storage_ptr(next(m.parameters())) for m in (a, b, c)]
    assert len(set(ptrs)) == 3


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.1),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: torch.optim.Adam(ps, lr=0.05),
], ids=["sgd", "sgd-momentum", "adam"])
def test_views_survive_optimizer_steps(make_opt):
    torch.manual_seed(0)
    a = Net()
    a.touch()
    buf_ptr = a.product().buffers()[0].data_ptr()
    opt = make_opt(a.parameters())
    x = torch.randn(8, 2)
    for _ in range(3):
        before = values(a)
        opt.zero_grad()
        a(x).pow(2).sum().backward()
        opt.step()
        assert any(not torch.equal(before[n], t) for n, t in values(a).items())
    # still views of the same flat buffer: no re-flattening needed
    assert a.product().buffers()[0].data_ptr() == buf_ptr
    _assert_flat(a)
    # an operation uses the updated values
    now = values(a)
    r = a * 2 + 1
    for n, t in values(r).items():
        torch.testing.assert_close(t, now[n] * 2 + 1, rtol=0, atol=0)
    # an in-place op then more steps: the optimizer still drives the module's parameters
    a += 0.5
    opt.zero_grad()
    a(x).pow(2).sum().backward()
    mid = values(a)
    opt.step()
    assert all(p is q for p, q in zip(opt.param_groups[0]["params"], a.parameters()))
    assert any(not torch.equal(mid[n], t) for n, t in values(a).items())


# ------------------------------------------------------- staleness: re-flattening

def _check_reflattened(a, params, opt):
    """After a storage replacement: the next op uses current values, and the optimizer's
    Parameter objects are still the module's parameters."""
    now = values(a)
    r = a + 1
    for n, t in values(r).items():
        torch.testing.assert_close(t, now[n] + 1, rtol=0, atol=0)
        assert t.dtype == now[n].dtype
    assert all(p is q for p, q in zip(a.parameters(), params))
    assert all(p is q for p, q in zip(opt.param_groups[0]["params"], a.parameters()))
    _assert_flat(a)
    a *= 2
    assert all(p is q for p, q in zip(a.parameters(), params))
    for n, t in values(a).items():
        torch.testing.assert_close(t, now[n] * 2, rtol=0, atol=0)


@pytest.mark.parametrize("convert", ["double", "to_float64", "data_assign", "half_then_float"])
def test_storage_replacement_is_detected(convert):
    torch.manual_seed(0)
    a = Net()
    a + 0.0  # flatten
    params = list(a.parameters())
    opt = torch.optim.SGD(a.parameters(), lr=0.1)
    if convert == "double":
        a.double()
    elif convert == "to_float64":
        a.to(torch.float64)
    elif convert == "data_assign":
        a.fc.weight.data = torch.full_like(a.fc.weight, 5.0)
        a.scale.data = torch.zeros_like(a.scale)
    else:
        a.half()
        a.float()
    _check_reflattened(a, params, opt)
    if convert in ("double", "to_float64"):
        assert a.fc.weight.dtype == torch.float64 and (a + 1).fc.weight.dtype == torch.float64
    if convert == "data_assign":
        assert (a * 1.5).fc.weight.unique().tolist() == [15.0]  # (5*2)*1.5
    # a step of the old optimizer after re-flattening still works
    opt.zero_grad()
    a(torch.randn(4, 2, dtype=a.fc.weight.dtype)).sum().backward()
    before = values(a)
    opt.step()
    assert any(not torch.equal(before[n], t) for n, t in values(a).items())


def test_conversion_only_affects_that_particle():
    a = Net()
    b = a.clone()
    a.double()
    assert b.fc.weight.dtype == torch.float32
    assert (b + 1).fc.weight.dtype == torch.float32
    r = a + b  # different layouts: per parameter with torch promotion
    assert r.fc.weight.dtype == torch.float64
    torch.testing.assert_close(r.fc.weight.detach(), a.fc.weight.detach() + b.fc.weight.detach().double())
    r2 = b + a
    assert r2.fc.weight.dtype == torch.float64


def test_inplace_with_a_double_particle_keeps_own_dtype():
    """Ours: in-place ops write into the particle's own storage (torch's in-place
    semantics); nytorch would rebind the data and turn the parameters float64."""
    a = Lin()
    b = a.clone()
    b.double()
    w = a.weight
    a += b
    assert a.weight is w and a.weight.dtype == torch.float32
    assert_values(a, {"weight": [4.0], "bias": [2.0]})


def test_load_state_dict_assign_on_own_parameters():
    a = Lin()
    a + 0
    a.load_state_dict({"weight": torch.tensor([7.0]), "bias": torch.tensor([8.0])}, assign=True)
    assert_values(a + 1, {"weight": [8.0], "bias": [9.0]})
    _assert_flat(a)




def test_load_state_dict_assign_with_plain_children():
    class OnlyLinear(nyto.NytoModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    n = OnlyLinear()
    n + 0
    n.load_state_dict({"fc.weight": torch.full((2, 2), 7.0), "fc.bias": torch.zeros(2)}, assign=True)
    r = n + 1
    assert r.fc.weight is not n.fc.weight
    assert r.fc.weight.unique().tolist() == [8.0]


def test_replacing_a_plain_child_parameter():
    n = Net()
    n + 0
    n.fc.weight = nn.Parameter(torch.full((2, 2), 7.0))
    r = n + 1
    assert r.fc.weight.unique().tolist() == [8.0]


@pytest.mark.parametrize("change", ["transpose", "square-transpose", "narrow"])
def test_same_address_shape_change_is_detected(change):
    class M(nyto.NytoModule):
        def __init__(self):
            super().__init__()
            rows = 3 if change == "square-transpose" else 2
            self.weight = nn.Parameter(torch.arange(3.0 * rows).reshape(rows, 3))
            self.bias = nn.Parameter(torch.tensor([1.0, 2.0]))

    a = M()
    a + 0
    if change != "narrow":  # same address; for a square one, the same shape too
        a.weight.data = a.weight.data.t()
    else:
        a.bias.data = a.bias.data[:1]
    r = a * 2
    assert r.weight.shape == a.weight.shape
    assert r.bias.shape == a.bias.shape
    torch.testing.assert_close(r.weight.detach(), a.weight.detach() * 2)
    torch.testing.assert_close(r.bias.detach(), a.bias.detach() * 2)


def test_incompatible_shapes_raise_and_change_nothing():
    a = Inner(2)
    b = a.clone()
    b.bias.data = torch.zeros(3)  # same species, bias now (3,) against (2,): layouts differ
    before_a, before_b = values(a), values(b)
    for call in (lambda: a + b, lambda: b - a, lambda: a * b, lambda: a.blend(b, 0.5),
                 lambda: (a.product() + b.product()).module()):
        with pytest.raises(RuntimeError, match="size"):
            call()
    with pytest.raises(RuntimeError, match="size"):
        a += b
    with pytest.raises(RuntimeError, match="size"):
        b -= a
    assert_values(a, before_a)
    assert_values(b, before_b)
    # a shape-preserving op on each alone still works with the right shapes
    assert (b + 1).bias.tolist() == [1.0, 1.0, 1.0]
    assert (a + 1).bias.tolist() == [1.5, 1.5]


def test_broadcastable_layouts_follow_torch_broadcasting():
    """As nytorch (p op q per parameter): a (1,) bias against a (3,) bias broadcasts."""
    a = Lin()
    b = a.clone()
    b.bias.data = torch.zeros(3)
    assert_values(a + b, {"weight": [4.0], "bias": [1.0, 1.0, 1.0]})
    assert_values(b - a, {"weight": [0.0], "bias": [-1.0, -1.0, -1.0]})


# ------------------------------------------------------------------ state_dict

def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = Net()
    sd = a.state_dict()
    assert list(sd) == ["scale", "fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean",
                        "bn.running_var", "bn.num_batches_tracked"]
    b = a.randn()
    params = list(b.parameters())
    ptrs = [p.data_ptr() for p in params]
    b.load_state_dict(sd)
    assert as_lists(b) == as_lists(a)
    assert all(p is q for p, q in zip(b.parameters(), params))
    assert [p.data_ptr() for p in b.parameters()] == ptrs  # copied into the flat views
    assert_values(b + 1, {n: t + 1 for n, t in values(a).items()})
    c = Net()  # another species accepts the state too
    c.load_state_dict(b.state_dict())
    assert as_lists(c) == as_lists(a)


def test_state_dict_tensors_survive_particle_death_and_buffer_reuse():
    """state_dict() values are views of the flat buffer: the pool must not recycle it."""
    a = Net()
    tmp = a * 3
    sd = tmp.state_dict()
    kept = {k: v.clone() for k, v in sd.items()}
    del tmp
    x = a
    for _ in range(20):
        x = 0.5 * x + 1  # pooled buffers of the same size are recycled here
    for k, v in sd.items():
        assert torch.equal(v, kept[k]), k


def test_views_held_by_the_user_survive_buffer_reuse():
    a = Net()
    p = (a * 2).fc.weight  # the particle dies, the Parameter (a view) survives
    kept = p.detach().clone()
    x = a
    for _ in range(20):
        x = x * 0.5 + 1
    assert torch.equal(p.detach(), kept)


class Picklable(nyto.NytoModule):  # module level: picklable by reference
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)
        self.scale = nn.Parameter(torch.tensor([3.0]))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_whole_particle_can_be_saved_and_loaded(how):
    a = Picklable()
    a + 1
    if how == "torch.save":
        buf = io.BytesIO()
        torch.save(a, buf)
        buf.seek(0)
        b = torch.load(buf, weights_only=False)
    else:
        b = pickle.loads(pickle.dumps(a))
    assert as_lists(b) == as_lists(a)
    assert_values(b * 2, {n: t * 2 for n, t in values(a).items()})


def test_deepcopy_is_a_new_species():
    a = Net()
    a + 0
    c = copy.deepcopy(a)
    assert species(c) is not species(a)
    assert as_lists(c) == as_lists(a)
    assert c.fc.weight is not a.fc.weight and storage_ptr(c.fc.weight) != storage_ptr(a.fc.weight)
    assert_values(c + 1, {n: t + 1 for n, t in values(a).items()})
    with pytest.raises(SpeciesError):
        a + c


# -------------------------------------------------------------- train / eval

def test_train_eval_flags_are_copied_to_results():
    a = Net()
    a.eval()
    r = a + 1
    assert r.training is False and r.bn.training is False
    a.train()
    r = a * 2
    assert r.training is True and r.bn.training is True
    r.eval()  # independent module objects
    assert a.training is True and a.bn.training is True


def test_eval_forward_is_deterministic_and_uses_running_stats():
    torch.manual_seed(0)
    a = Net()
    a.eval()
    x = torch.randn(4, 2)
    y1, y2 = a(x), a(x)
    assert torch.equal(y1, y2)
    assert a.bn.num_batches_tracked.item() == 0
    r = a * 1.0 + 0.0
    assert torch.equal(r(x), y1)


# ----------------------------------------------------------------- BatchNorm

def test_batchnorm_buffers_are_shared_between_particles_made_by_operations():
    torch.manual_seed(0)
    a = Net()
    made = [a + 1, a.clone(), a.randn(), -a, a.product().module()]
    for m in made:
        assert m.bn.running_mean is a.bn.running_mean
        assert m.bn.running_var is a.bn.running_var
        assert m.bn.num_batches_tracked is a.bn.num_batches_tracked
    mean0 = a.bn.running_mean.clone()
    a.train()
    a(torch.randn(6, 2) * 3 + 1)  # running stats update in forward
    assert not torch.equal(a.bn.running_mean, mean0)
    assert a.bn.num_batches_tracked.item() == 1
    for m in made:
        assert torch.equal(m.bn.running_mean, a.bn.running_mean)
    made[0](torch.randn(6, 2))  # a training forward on a descendant updates all
    assert a.bn.num_batches_tracked.item() == 2
    # buffers are not operated on
    r = a * 10
    assert torch.equal(r.bn.running_var, a.bn.running_var)
    assert "bn.running_mean" in r.state_dict()


def test_batchnorm_buffers_are_not_parameters_of_the_flat_storage():
    a = Net()
    P = a.product()
    assert len(P.params) == 5
    assert storage_ptr(a.bn.running_mean) != storage_ptr(P.buffers()[0])


# ------------------------------------------------------------------- versions

def test_added_parameter_reaches_another_particle_at_touch():
    a = Lin()
    b = a.clone()
    a.extra = nn.Parameter(torch.tensor([9.0]))
    assert not hasattr(b, "extra")  # not before touch
    with torch.no_grad():
        a.extra.fill_(77.0)  # the value at touch time is what arrives
    assert b.touch() is b
    assert b.extra is not a.extra  # a clone
    assert b.extra.tolist() == [77.0] and b.extra.requires_grad
    assert [n for n, _ in b.named_parameters()] == ["weight", "bias", "extra"]
    assert_values(a + b, {"weight": [4.0], "bias": [2.0], "extra": [154.0]})
    _assert_flat(b)


def test_added_frozen_parameter_keeps_requires_grad_on_touch():
    a = Lin()
    b = a.clone()
    a.frozen = nn.Parameter(torch.tensor([1.0]), requires_grad=False)
    b.touch()
    assert b.frozen.requires_grad is False


def test_added_submodule_and_buffers_reach_other_particles():
    a = Lin()
    b = a.clone()
    a.sub = nn.Linear(1, 1)
    a.inner = Inner(2)
    a.register_buffer("buf", torch.tensor([5.0]))
    a.register_buffer("tmp", torch.tensor([6.0]), persistent=False)
    b.touch()
    assert isinstance(b.sub, nn.Linear) and b.sub is not a.sub
    assert b.sub.weight is not a.sub.weight and torch.equal(b.sub.weight, a.sub.weight)
    assert isinstance(b.inner, Inner) and b.inner is not a.inner
    assert b.inner.weight is not a.inner.weight and torch.equal(b.inner.weight, a.inner.weight)
    assert b.buf is a.buf and b.tmp is a.tmp  # buffers: the same tensor objects
    assert "buf" in b.state_dict() and "tmp" not in b.state_dict()
    r = a + b
    assert_values(r, {"weight": [4.0], "bias": [2.0], "sub.weight": 2 * a.sub.weight.detach(),
                      "sub.bias": 2 * a.sub.bias.detach(), "inner.weight": 2 * a.inner.weight.detach(),
                      "inner.bias": 2 * a.inner.bias.detach()})
    assert r.buf is a.buf


def test_buffer_reassignment_reaches_other_particles():
    a = Net()
    b = a.clone()
    a.register_buffer("buf", torch.zeros(2))
    b.touch()
    new = torch.ones(2)
    a.buf = new
    b.touch()
    assert b.buf is new


def test_removed_parameter_and_module_disappear_on_touch():
    a = Net()
    b = a.clone()
    c = a * 2
    del a.scale
    del a.bn
    assert hasattr(b, "scale")
    b.touch()
    assert not hasattr(b, "scale") and not hasattr(b, "bn")
    assert [n for n, _ in b.named_parameters()] == ["fc.weight", "fc.bias"]
    r = c - a  # c is stale: the operation touches it
    assert not hasattr(c, "scale") and [n for n, _ in r.named_parameters()] == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(r.fc.weight.detach(), a.fc.weight.detach())


@pytest.mark.parametrize("what", ["parameter", "module"])
def test_attribute_set_to_none_propagates_as_none(what):
    class M(nyto.NytoModule):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.tensor([2.0]))
            self.bias = nn.Parameter(torch.tensor([1.0]))
            self.sub = nn.Linear(1, 1)

        def forward(self, x):
            y = x * self.weight if self.bias is None else x * self.weight + self.bias
            return y if self.sub is None else self.sub(y)

    a = M()
    b = a.clone()
    name = "bias" if what == "parameter" else "sub"
    setattr(a, name, None)
    b.touch()
    assert getattr(b, name) is None
    assert torch.equal(b(torch.ones(1)), a(torch.ones(1)))
    r = b + 1
    assert getattr(r, name) is None and r.weight.tolist() == [3.0]


def test_operations_touch_automatically():
    a = Lin()
    b = a.clone()
    c = a.clone()
    a.extra = nn.Parameter(torch.tensor([2.0]))
    r = b + 1  # b catches up inside the operation
    assert r.extra.tolist() == [3.0] and hasattr(b, "extra")
    r2 = a + c  # the right operand catches up too
    assert hasattr(c, "extra")
    assert_values(r2, {"weight": [4.0], "bias": [2.0], "extra": [4.0]})
    d = a.clone()
    a.extra2 = nn.Parameter(torch.tensor([1.0]))
    a.extra3 = nn.Parameter(torch.tensor([2.0]))
    d *= 2  # in place, also touches; pending versions apply in order
    assert [n for n, _ in d.named_parameters()] == ["weight", "bias", "extra", "extra2", "extra3"]
    assert_values(d, {"weight": [4.0], "bias": [2.0], "extra": [4.0], "extra2": [2.0], "extra3": [4.0]})


def test_replaced_parameter_with_another_shape_reaches_the_species():
    a = Lin()
    b = a.clone()
    a.weight = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    r = a + b  # b catches up (a clone of the new (3,) weight): shapes agree
    assert r.weight.tolist() == [2.0, 4.0, 6.0]
    assert b.weight.shape == (3,) and b.weight is not a.weight
    _assert_flat(b)


def test_replaced_parameter_keeps_its_position_on_other_particles():
    a = Lin()
    b = a.clone()
    a.weight = nn.Parameter(torch.tensor([5.0]))
    b.touch()
    assert [n for n, _ in b.named_parameters()] == [n for n, _ in a.named_parameters()] == ["weight", "bias"]
    assert list(b.state_dict()) == list(a.state_dict())


def test_structure_changes_on_submodules_are_versioned():
    o = Outer()
    b = o.clone()
    o.inner.extra = nn.Parameter(torch.tensor([4.0]))
    b.touch()
    assert b.inner.extra.tolist() == [4.0] and b.inner.extra is not o.inner.extra
    assert (o + b).inner.extra.tolist() == [8.0]


def test_get_param_id_and_config_follow_structure_changes():
    a = Lin()
    b = a.clone()
    a.extra = nn.Parameter(torch.tensor([1.0]))
    pid = a.get_param_id(a.extra)
    b.touch()
    assert b.get_param_id(b.extra) == pid  # touched by get_param_id; same id on both
    a.set_param_config(operational=False, name="extra")
    r = b + 10
    assert r.extra.tolist() == [1.0] and r.weight.tolist() == [12.0]


# ------------------------------------------------ copying the module tree (C and Python)

class _Tied(nyto.NytoModule):
    """Nested NytoModules, plain children, a tied parameter, None entries, buffers
    and a frozen parameter: every kind of entry the tree copy handles."""

    def __init__(self):
        super().__init__()
        self.outer = Outer()
        self.fc = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)
        self.tied = self.fc.weight
        self.register_parameter("absent", None)
        self.empty = None
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)


def _copy_tree_with(impl, root):
    from nytorch_ext.particles import kernel as kernel_module
    k = root._particle_kernel
    k.touch()
    mids, pnames, pindex, cnames, cindex, nyto_ids = k.build_plan()
    new = kernel_module.ParticleKernel(k.species, k.species.version)
    params = [nn.Parameter(p.detach().clone(), p.requires_grad) for p in k.params.values()]
    modules, places = impl([k.modules[m] for m in mids], pnames, pindex, cnames, cindex, params,
                           nyto_ids, new, new.cell)
    return k, mids, params, new, modules, places


def _tree_copy_impls():
    from nytorch_ext.particles import kernel as kernel_module
    return python_and_compiled(kernel_module.python_copy_module_tree, "copy_module_tree")


@pytest.mark.parametrize("impl", _tree_copy_impls())
def test_copy_module_tree_makes_shallow_copies_with_own_tables(impl):
    root = _Tied()
    k, mids, params, new, modules, (dicts, names, placed) = _copy_tree_with(impl, root)
    pos = {id(p): i for i, p in enumerate(k.params.values())}
    mid_of = {id(m): mid for mid, m in k.modules.items()}
    copies = dict(zip(mids, modules))
    assert len(dicts) == len(names) == len(placed) == len(k.places[0])
    for mid, copy_ in copies.items():
        source = k.modules[mid]
        assert type(copy_) is type(source) and copy_ is not source
        for table in ("_parameters", "_modules", "_buffers"):
            assert getattr(copy_, table) is not getattr(source, table)
            assert list(getattr(copy_, table)) == list(getattr(source, table))  # same names, same order
        for name, value in source.__dict__.items():  # everything else is shared
            if name not in ("_parameters", "_modules", "_buffers", "_particle_kernel", "_nyto_cell"):
                assert copy_.__dict__[name] is value, name
        for name, p in source._parameters.items():  # parameters: the new ones (None stays None)
            assert copy_._parameters[name] is (None if p is None else params[pos[id(p)]])
        for name, child in source._modules.items():  # children: the new copies
            assert copy_._modules[name] is (None if child is None else copies[mid_of[id(child)]])
        assert copy_._buffers == source._buffers  # the same buffer tensors (shared, as nytorch)
        if getattr(type(source), "_is_nyto_module", False):
            assert copy_.__dict__["_particle_kernel"] is new and copy_.__dict__["_nyto_cell"] is new.cell
            assert copy_.__dict__["_module_id"] == mid
    assert copies[mids[0]].tied is copies[mids[0]].fc.weight  # tied stays tied
    for d, name, p in zip(dicts, names, placed):
        assert d[name] is p and any(d is m._parameters for m in modules)


def test_compiled_copy_module_tree_rejects_bad_plans():
    from nytorch_ext.ops._extension import _C
    if _C is None:
        pytest.skip("the compiled extension is not loaded")
    root = _Tied()
    k = root._particle_kernel
    k.touch()
    mids, pnames, pindex, cnames, cindex, nyto_ids = k.build_plan()
    sources = [k.modules[m] for m in mids]
    params = list(k.params.values())
    args = [sources, pnames, pindex, cnames, cindex, params, nyto_ids, k, k.cell]
    with pytest.raises(TypeError, match="takes 9 arguments"):
        _C.copy_module_tree(*args[:8])
    with pytest.raises(TypeError, match="argument 0 must be a list"):
        _C.copy_module_tree(tuple(sources), *args[1:])
    with pytest.raises(ValueError, match="one plan entry per source module"):
        _C.copy_module_tree(sources[:1], *args[1:])
    with pytest.raises(IndexError, match="out of range"):
        _C.copy_module_tree(sources, pnames, pindex, cnames, cindex, params[:1], nyto_ids, k, k.cell)
    bad_names = [("w",)] + pnames[1:]
    with pytest.raises(TypeError, match="tuples of one length"):
        _C.copy_module_tree(sources, bad_names, *args[2:])
    odd = nn.Linear(1, 1)
    odd.__dict__["_parameters"] = [1]  # not a dict
    with pytest.raises(TypeError, match="_parameters is not a dict"):
        _C.copy_module_tree([odd], [()], [()], [()], [()], [], [None], k, k.cell)
    assert [type(m) for m in _C.copy_module_tree(*args)[0]] == [type(s) for s in sources]


def _lifecycle(seed: int) -> dict:
    """A particle's life through every path the C helpers serve: build (module()),
    arithmetic, blend, forward/backward, an optimizer step, re-flattening after
    .double(), a structural change reaching another particle at touch()."""
    torch.manual_seed(seed)
    a = nyto.ParticleModule(Big())
    b = a.randn()
    c = (0.25 * a.product() + 0.75 * b.product()).module()
    d = c.blend(a, 0.5)
    x = torch.randn(2, 1, 4, 4)
    d(x).sum().backward()
    torch.optim.SGD(d.parameters(), lr=0.1).step()
    e = (d + c) * 0.5
    e.double()
    f = e + 1.0
    with nyto.GetNytoModule(a) as root:
        root.extra = nn.Parameter(torch.ones(3))
    g = a * 2.0
    c.touch()
    return {name: values(m) for name, m in dict(a=a, b=b, c=c, d=d, e=e, f=f, g=g).items()} | {
        "c_names": [n for n, _ in c.named_parameters()], "f_dtype": str(next(f.parameters()).dtype)}


def test_python_fallbacks_of_the_particle_helpers_give_the_same_particles(monkeypatch):
    from nytorch_ext.particles import kernel as kernel_module, layout, placement, storage
    compiled = _lifecycle(3)
    monkeypatch.setattr(kernel_module, "copy_module_tree", kernel_module.python_copy_module_tree)
    monkeypatch.setattr(storage, "views_in_place", placement._python_views_in_place)
    monkeypatch.setattr(kernel_module, "entries_are", placement._python_entries_are)
    monkeypatch.setattr(layout, "_parameter_views", None)
    python = _lifecycle(3)
    assert compiled.keys() == python.keys()
    for key in compiled:
        if isinstance(compiled[key], dict):
            assert compiled[key].keys() == python[key].keys(), key
            for name in compiled[key]:
                assert torch.equal(torch.as_tensor(compiled[key][name]), torch.as_tensor(python[key][name])), (key, name)
        else:
            assert compiled[key] == python[key], key


def test_particles_on_the_meta_device_build_and_combine():
    """Tensors without data (meta) go through the placement checks and the C
    builders like any other device."""
    with torch.device("meta"):
        a = nyto.ParticleModule(Big())
    b = (0.5 * a.product() + 0.5 * a.product()).module()
    c = b.blend(a, 0.25)
    assert all(p.device.type == "meta" for p in c.parameters())
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in a.named_parameters()]


def test_a_stale_particle_records_its_change_after_replaying_the_others():
    """D2: b changes structure, then a (not yet caught up) does: a must get b's
    change too, and every particle ends with both, in the same order."""
    a = MyModel()
    b = a.clone()
    b.extra0 = nn.Parameter(torch.full((2,), 7.0))
    a.extra1 = nn.Parameter(torch.full((3,), 9.0))
    a.touch()
    b.touch()
    for m in (a, b):
        assert torch.equal(m.extra0, torch.full((2,), 7.0))
        assert torch.equal(m.extra1, torch.full((3,), 9.0))
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    s = a + b
    assert torch.equal(s.extra0, torch.full((2,), 14.0)) and torch.equal(s.extra1, torch.full((3,), 18.0))
    c = a.clone()
    del b.extra0
    a.extra2 = nn.Parameter(torch.ones(1))
    for m in (a, b, c):
        m.touch()
        assert not hasattr(m, "extra0") and torch.equal(m.extra2, torch.ones(1))


def test_pending_changes_are_logged_in_the_order_they_were_made():
    """Two particles change structure before either is recorded: every particle
    gets both, in the order made (nytorch versions each change as it is made)."""
    a = Lin()
    b, c = a.clone(), a.clone()
    a.first = nn.Parameter(torch.ones(1))
    b.second = nn.Parameter(torch.ones(2))
    for m in (c, b, a):  # whoever touches first
        m.touch()
    for m in (a, b, c):
        assert [n for n, _ in m.named_parameters()] == ["weight", "bias", "first", "second"]
