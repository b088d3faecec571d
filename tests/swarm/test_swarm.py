"""nytorch_ext.swarm: APSO and momentum steps, the Swarm container, bad input."""
import copy
import math

import io

import numpy as np
import pytest
import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext import ops
from nytorch_ext.swarm import ApsoResult, Swarm, apso_step, choose_subset, momentum_step, momentum_step_


class Net(nyto.NytoModule):
    def __init__(self, dtype=torch.float32, extra_double=False):
        super().__init__()
        self.fc1 = nn.Linear(5, 7, dtype=dtype)
        self.bn = nn.BatchNorm1d(7, dtype=dtype)
        self.fc2 = nn.Linear(7, 3, dtype=dtype)
        if extra_double:
            self.head = nn.Linear(3, 2, dtype=torch.float64)

    def forward(self, x):
        out = self.fc2(torch.relu(self.bn(self.fc1(x))))
        return self.head(out.double()) if hasattr(self, "head") else out


def flat_values(particle) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in particle.parameters()])


def make_pool(k=6, wrap=True, **kw):
    torch.manual_seed(0)
    root = Net(**kw)
    first = nyto.ParticleModule(root) if wrap else root
    return [first] + [first.randn() for _ in range(k - 1)]


def seed_swarm_algorithm(values, indices, losses, alpha):
    """The seed chapter's swarm_algorithm on plain tensors, given the drawn indices."""
    values = [v.clone() for v in values]
    order = sorted(((i, losses[i]) for i in indices), key=lambda il: il[1])
    best = order[0][0]
    for i, _ in order:
        if i != best:
            values[i] = alpha * values[best] + (1 - alpha) * values[i]
    return values, best


# ------------------------------------------------------------------ APSO


@pytest.mark.parametrize("container", ["swarm", "list"])
@pytest.mark.parametrize("replace", [True, False])
def test_apso_step_equals_the_seed_formula(backend, container, replace):
    pool = make_pool(8)
    pool = Swarm(pool) if container == "swarm" else pool
    losses = [0.5, 0.25, 3.0, 1.0, 0.1, 2.0, 0.75, 1.5]
    before = [flat_values(m) for m in pool]
    result = apso_step(pool, losses, 0.3, 6, replace=replace, generator=torch.Generator().manual_seed(3))
    assert isinstance(result, ApsoResult) and len(result.indices) == 6
    assert result.indices == choose_subset(8, 6, replace=replace, generator=torch.Generator().manual_seed(3))
    if not replace:
        assert len(set(result.indices)) == 6
    expected, best = seed_swarm_algorithm(before, result.indices, losses, 0.3)
    assert result.best == best
    for i, m in enumerate(pool):
        torch.testing.assert_close(flat_values(m), expected[i], rtol=1e-6, atol=1e-6)
    assert torch.equal(flat_values(pool[best]), before[best])  # the best is untouched


def test_apso_step_repeated_member_blends_as_often_as_drawn():
    pool = Swarm(make_pool(3))
    before = [flat_values(m) for m in pool]
    # find a seed that draws a repeat of a non-best member
    for s in range(100):
        idx = choose_subset(3, 3, generator=torch.Generator().manual_seed(s))
        losses = [0.0, 1.0, 2.0]
        others = [i for i in idx if i != min(idx, key=losses.__getitem__)]
        if len(others) != len(set(others)):
            break
    result = pool.apso_step(losses, 0.5, 3, generator=torch.Generator().manual_seed(s))
    m = max(result.indices.count(i) for i in result.blended)
    assert m >= 2 and max(result.blended.values()) == pytest.approx(1 - 0.5 ** m)
    expected, _ = seed_swarm_algorithm(before, result.indices, losses, 0.5)
    for i in range(3):
        torch.testing.assert_close(flat_values(pool[i]), expected[i], rtol=1e-6, atol=1e-6)


def test_apso_step_is_one_multi_blend_call_per_group(monkeypatch):
    pool = Swarm(make_pool(12, extra_double=True))  # float32 and float64 groups
    assert len(pool.buffers()) == 2
    calls = []
    real = ops._impl.multi_blend_  # the implementation behind ops.multi_blend_ (compiled or fallback)
    monkeypatch.setattr(ops._impl, "multi_blend_", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    result = pool.apso_step(torch.rand(12), 0.5, 6, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2 and calls[0] == calls[1] == len(result.blended)


def test_apso_step_keeps_parameters_and_optimizer_state():
    pool = Swarm(make_pool(4))
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in pool]
    params = [list(m.parameters()) for m in pool]

    def train():
        for m, opt in zip(pool, opts):
            opt.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
            opt.step()

    train()
    state = [{id(p): opt.state[p]["momentum_buffer"].clone() for p in ps} for opt, ps in zip(opts, params)]
    pool.apso_step([4.0, 3.0, 2.0, 1.0], 0.5, generator=torch.Generator().manual_seed(0))
    for m, ps, opt, st in zip(pool, params, opts, state):
        assert all(a is b for a, b in zip(m.parameters(), ps))
        for p in ps:
            assert torch.equal(opt.state[p]["momentum_buffer"], st[id(p)])
    before = [flat_values(m) for m in pool]
    train()  # the optimizers still move the members' (row) parameters
    for m, b in zip(pool, before):
        assert not torch.equal(flat_values(m), b)
    rows = pool.buffers()[0]
    for i, m in enumerate(pool):
        w = m.root_module.fc1.weight
        assert w.data_ptr() == rows[i].data_ptr()


def test_apso_step_leaves_buffers_and_frozen_parameters_alone():
    pool = make_pool(4)
    with nyto.GetNytoModule(pool[0]) as root:
        root.set_param_config(operational=False, name="fc2")
    pool = Swarm(pool)
    for m in pool:
        m.train()
        m(torch.randn(8, 5))  # BatchNorm statistics differ per member
    stats = [m.root_module.bn.running_mean.clone() for m in pool]
    frozen = [m.root_module.fc2.weight.detach().clone() for m in pool]
    pool.apso_step([3.0, 2.0, 1.0, 0.0], 0.5, generator=torch.Generator().manual_seed(0))
    for m, s, f in zip(pool, stats, frozen):
        assert torch.equal(m.root_module.bn.running_mean, s)
        assert torch.equal(m.root_module.fc2.weight, f)


def test_apso_noise_is_the_counter_based_normal_of_each_member(backend):
    from nytorch_ext.swarm.apso import noise_seed as _noise_seed

    def run():
        pool = Swarm(make_pool(6, extra_double=True))
        old = [b.clone() for b in pool.buffers()]
        r = pool.apso_step([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], 0.5, 4, noise=0.1,
                           generator=torch.Generator().manual_seed(7))
        return r, old, pool.buffers()

    (r1, old, new), (r2, _, new2) = run(), run()
    assert r1 == r2 and all(torch.equal(a, b) for a, b in zip(new, new2))  # reproducible
    g = torch.Generator().manual_seed(7)
    assert choose_subset(6, 4, generator=g) == r1.indices
    seed = _noise_seed(g)  # the next draw after the subset
    for gi, (before, after) in enumerate(zip(old, new)):
        for i in range(6):
            if i not in r1.blended:
                assert torch.equal(after[i], before[i])
                continue
            z = ops.philox_normal(before.shape[1], seed, stream=i * len(old) + gi, dtype=before.dtype)
            expected = torch.lerp(before[i], before[r1.best], r1.blended[i]) + 0.1 * z
            torch.testing.assert_close(after[i], expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(after[r1.best], before[r1.best])


def test_apso_noise_statistics():
    torch.manual_seed(0)
    first = nyto.ParticleModule(Wide())
    swarm = Swarm([first, first.clone(), first.clone()])  # identical members: the change is pure noise
    before = swarm.buffers()[0].clone()
    r = swarm.apso_step([0.0, 1.0, 2.0], 0.5, 3, noise=0.25, replace=False,
                        generator=torch.Generator().manual_seed(1))
    assert set(r.blended) == {1, 2}
    for i in (1, 2):
        z = (swarm.buffers()[0][i] - before[i]).double() / 0.25
        n = z.numel()
        assert abs(z.mean().item()) < 5 / n ** 0.5
        assert abs(z.var().item() - 1) < 5 * (2 / n) ** 0.5
    d = (swarm.buffers()[0][1] - swarm.buffers()[0][2]).double() / 0.25  # independent streams
    assert abs(d.var().item() - 2) < 5 * 2 * (2 / d.numel()) ** 0.5


class Wide(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1 << 16))


# ------------------------------------------------------------------ bad input


def bad_calls():
    g = torch.Generator().manual_seed(0)
    return [
        (dict(losses=[1.0] * 5), ValueError, "losses has 5 entries"),
        (dict(losses=[1.0, float("nan")] + [1.0] * 4), ValueError, r"losses\[1\] is NaN"),
        (dict(alpha=0.0), ValueError, "alpha must be in the open interval"),
        (dict(alpha=1.0), ValueError, "alpha must be in the open interval"),
        (dict(alpha=float("nan")), ValueError, "alpha"),
        (dict(alpha="0.5"), TypeError, "alpha must be a real number"),
        (dict(subset_size=7), ValueError, "subset_size must be between 1 and the pool size 6"),
        (dict(subset_size=0), ValueError, "subset_size"),
        (dict(subset_size=2.0), TypeError, "subset_size must be an int"),
        (dict(noise=-1.0), ValueError, "noise must be a finite number"),
        (dict(noise=float("inf")), ValueError, "noise"),
        (dict(generator=g.get_state()), TypeError, "generator must be a torch.Generator"),
        (dict(replace=None), TypeError, "replace must be a bool"),
        # not 1-D / length K: refused, never flattened
        (dict(losses=torch.ones(6, 1)), ValueError, r"losses must be 1-D.*shape \(6, 1\)"),
        (dict(losses=torch.ones(2, 3)), ValueError, r"losses must be 1-D.*shape \(2, 3\)"),
        (dict(losses=torch.tensor(1.0)), ValueError, "losses must be 1-D"),
        (dict(losses=np.ones((6, 1))), ValueError, "losses must be 1-D"),
        (dict(losses=[torch.ones(1)] * 6), ValueError, r"losses\[0\] must be a number or a 0-d tensor"),
        (dict(losses=["1"] * 6), TypeError, r"losses\[0\] must be a real number"),
        (dict(losses="123456"), TypeError, "losses must be a sequence of numbers"),
        (dict(losses=torch.ones(6, dtype=torch.complex64)), TypeError, "losses must hold real numbers"),
    ]


@pytest.mark.parametrize("container", ["swarm", "list"])
@pytest.mark.parametrize("kwargs,error,match", bad_calls())
def test_apso_step_bad_input_changes_nothing(container, kwargs, error, match):
    pool = make_pool(6)
    pool = Swarm(pool) if container == "swarm" else pool
    before = [flat_values(m) for m in pool]
    rng = torch.get_rng_state()
    args = dict(losses=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], alpha=0.5, subset_size=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        apso_step(pool, **args)
    assert all(torch.equal(flat_values(m), b) for m, b in zip(pool, before))
    assert torch.equal(torch.get_rng_state(), rng)  # no indices drawn either


def test_bad_pools():
    with pytest.raises(ValueError, match="pool is empty"):
        apso_step([], [], 0.5)
    with pytest.raises(ValueError, match="particles is empty"):
        Swarm([])
    a, b = make_pool(2), make_pool(2)
    mixed = [a[0], b[1]]
    before = [flat_values(m) for m in mixed]
    with pytest.raises(nyto.SpeciesError, match="species"):
        apso_step(mixed, [1.0, 2.0], 0.5)
    with pytest.raises(nyto.SpeciesError, match="species"):
        Swarm(mixed)
    assert all(torch.equal(flat_values(m), v) for m, v in zip(mixed, before))
    with pytest.raises(ValueError, match="more than once"):
        Swarm([a[0], a[0]])
    with pytest.raises(TypeError, match="ParticleModule or NytoModule"):
        Swarm([nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="sequence of particles"):
        apso_step(a[0], [1.0], 0.5)
    outer = nyto.NytoModule()
    outer.inner = Net()
    with pytest.raises(nyto.SpeciesError, match="root module"):
        Swarm([outer.inner])


def test_apso_on_a_pool_with_different_layouts_raises_before_writing():
    pool = make_pool(3)
    pool[2].double()
    before = [flat_values(m) for m in pool]
    with pytest.raises(ValueError, match=r"pool\[2\] has a different flat layout"):
        apso_step(pool, [1.0, 2.0, 3.0], 0.5, replace=False)
    assert all(torch.equal(flat_values(m), b) for m, b in zip(pool, before))


@pytest.mark.parametrize("container", ["swarm", "list"])
def test_apso_checks_every_members_layout_before_drawing(container):
    """D16: a member of another layout is reported even when the draw would not pick
    it, before the generator (or torch's RNG) is touched."""
    pool = make_pool(6)
    pool = Swarm(pool) if container == "swarm" else pool
    pool[5].double()
    g = torch.Generator().manual_seed(0)
    assert 5 not in choose_subset(6, 2, generator=torch.Generator().manual_seed(0))
    before = [flat_values(m) for m in pool]
    g_state, rng = g.get_state(), torch.get_rng_state()
    with pytest.raises(ValueError, match=r"\[5\] has a different flat layout"):
        apso_step(pool, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.5, 2, generator=g)
    with pytest.raises(ValueError, match=r"\[5\] has a different flat layout"):
        apso_step(pool, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.5, 2)  # torch's default generator
    assert torch.equal(g.get_state(), g_state) and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(flat_values(m), b) for m, b in zip(pool, before))
    pool[5].float()  # repaired: the step runs
    apso_step(pool, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.5, 2, generator=g)


def test_apso_losses_accepts_1d_tensors_arrays_and_0d_elements():
    pool = Swarm(make_pool(3))
    for losses in (torch.tensor([3.0, 1.0, 2.0]), np.array([3.0, 1.0, 2.0]),
                   [torch.tensor(3.0), np.float32(1.0), 2], (3.0, 1.0, 2.0)):
        result = pool.apso_step(losses, 0.5, 3, replace=False, generator=torch.Generator().manual_seed(0))
        assert result.best == 1


# ------------------------------------------------------------------ momentum


@pytest.mark.parametrize("as_products", [False, True])
def test_momentum_step_matches_reference(as_products):
    w_new, w_prev, w_prev2 = make_pool(3)
    ref = flat_values(w_new) + 0.9 * (flat_values(w_prev) - flat_values(w_prev2))
    if as_products:
        result = momentum_step(w_new.product(), w_prev.product(), w_prev2.product(), 0.9).module()
    else:
        result = momentum_step(w_new, w_prev, w_prev2, 0.9)
    assert type(result) is type(w_new)
    torch.testing.assert_close(flat_values(result), ref, rtol=1e-6, atol=1e-6)  # float32 vs float64


def test_momentum_step_is_one_lincomb_pass(monkeypatch):
    w = make_pool(3)
    calls = []
    real = ops.lincomb
    monkeypatch.setattr(ops, "lincomb", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    momentum_step(*w, 0.5)
    assert calls == [3]


def test_momentum_step_in_place_keeps_parameters():
    w_new, w_prev, w_prev2 = make_pool(3)
    params = list(w_new.parameters())
    ref = flat_values(w_new) + 0.5 * (flat_values(w_prev) - flat_values(w_prev2))
    assert momentum_step_(w_new, w_prev, w_prev2, 0.5) is w_new
    assert all(a is b for a, b in zip(w_new.parameters(), params))
    torch.testing.assert_close(flat_values(w_new), ref)
    with pytest.raises(ValueError, match="beta must be a finite"):
        momentum_step_(w_new, w_prev, w_prev2, float("nan"))
    with pytest.raises(TypeError, match="w_new must be a module"):
        momentum_step_(w_new.product(), w_prev, w_prev2, 0.5)
    with pytest.raises(TypeError, match="w_prev must be a particle or a product"):
        momentum_step(w_new, torch.zeros(3), w_prev2, 0.5)
    other = make_pool(1)[0]
    with pytest.raises(nyto.SpeciesError):
        momentum_step(w_new, w_prev, other, 0.5)


def test_swarm_momentum_is_one_launch_over_all_members(monkeypatch):
    swarm = Swarm(make_pool(5))
    prev2 = swarm.snapshot()
    with torch.no_grad():
        for m in swarm:
            for p in m.parameters():
                p.add_(0.1)
    prev = swarm.snapshot()
    with torch.no_grad():
        for m in swarm:
            for p in m.parameters():
                p.mul_(0.5)
    now = [flat_values(m) for m in swarm]
    ref = [n + 0.9 * (flat_values_from(prev, swarm, i) - flat_values_from(prev2, swarm, i))
           for i, n in enumerate(now)]
    calls = []
    real = ops.lincomb_
    monkeypatch.setattr(ops, "lincomb_", lambda *a, **k: calls.append(a[1][0].shape) or real(*a, **k))
    swarm.momentum_(prev, prev2, 0.9)
    assert calls == [torch.Size([5, swarm.layout.groups[0].size])]
    for m, r in zip(swarm, ref):
        torch.testing.assert_close(flat_values(m), r, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"prev\[0\] does not match"):
        swarm.momentum_([prev[0][:2]], prev2, 0.9)
    with pytest.raises(nyto.SpeciesError):
        swarm.momentum_(Swarm(make_pool(5)), prev2, 0.9)


def flat_values_from(snapshot, swarm, i):
    views = swarm.layout.views([b[i] for b in snapshot])
    return torch.cat([v.double().flatten() for v in views])


# ------------------------------------------------------------------ the container


def test_swarm_storage_is_one_row_per_member():
    swarm = Swarm.spawn(nyto.ParticleModule(Net(extra_double=True)), 4)
    assert len(swarm) == 4 and swarm[0] is swarm.members[0] and list(swarm) == swarm.members
    assert swarm[1:3] == swarm.members[1:3]
    bufs = swarm.buffers()
    assert [b.dtype for b in bufs] == [torch.float32, torch.float64]
    for b, g in zip(bufs, swarm.layout.groups):
        assert b.shape == (4, g.size)
    for i, m in enumerate(swarm):
        flat = torch.cat([b[i] for b in bufs[:1]])
        assert m.root_module.fc1.weight.data_ptr() == bufs[0][i].data_ptr()
        assert torch.equal(flat[:35], m.root_module.fc1.weight.detach().flatten())
    assert "Swarm(4 particles" in repr(swarm)


def test_swarm_spawn_inits():
    model = nyto.ParticleModule(Net())
    for init in ("randn", "rand", "clone", lambda m: m.clone()):
        swarm = Swarm.spawn(model, 3, init=init)
        assert swarm[0] is model and len(swarm) == 3
    with pytest.raises(ValueError, match="init must be"):
        Swarm.spawn(model, 3, init="zeros")
    with pytest.raises(ValueError, match="size must be a positive int"):
        Swarm.spawn(model, 0)


def test_swarm_repacks_members_moved_out_of_their_rows():
    swarm = Swarm(make_pool(3))
    m = swarm[1]
    m.double()  # replaces the parameters' storage (and dtype) on one member
    with pytest.raises(ValueError, match="different flat layout"):
        swarm.apso_step([1.0, 2.0, 3.0], 0.5, replace=False)
    m.float()
    values = flat_values(m)
    rows = swarm.buffers()
    assert m.root_module.fc1.weight.data_ptr() == rows[0][1].data_ptr()
    torch.testing.assert_close(flat_values(m), values)
    swarm.to(torch.float64)
    assert [b.dtype for b in swarm.buffers()] == [torch.float64]
    assert swarm[2].root_module.fc2.bias.data_ptr() != 0
    torch.testing.assert_close(flat_values(m), values)
    swarm.apso_step([1.0, 2.0, 3.0], 0.5, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("args, error", [
    (("cuda:0",) if not torch.cuda.is_available() else ("cuda:999",), (AssertionError, RuntimeError)),
    ((torch.int32,), TypeError),
    (("cpu", torch.int64), TypeError),
    (("no-such-device",), RuntimeError),
])
def test_swarm_to_bad_target_changes_nothing(args, error):
    # the first member's first tensor fails (or nn.Module.to refuses the dtype up front):
    # no member moves, the buffers and the one-pass check stay as they were
    swarm = Swarm(make_pool(3))
    buffers = swarm.buffers()
    before = [flat_values(m) for m in swarm]
    with pytest.raises(error):
        swarm.to(*args)
    assert all(a is b for a, b in zip(swarm.buffers(), buffers))
    for m, v in zip(swarm, before):
        assert {p.device.type for p in m.parameters()} == {"cpu"}
        assert {p.dtype for p in m.parameters()} == {torch.float32}
        torch.testing.assert_close(flat_values(m), v)
    swarm.apso_step([1.0, 2.0, 3.0], 0.5, generator=torch.Generator().manual_seed(0))  # still one layout


def test_swarm_state_dict_round_trip():
    swarm = Swarm(make_pool(4))
    state = copy.deepcopy(swarm.state_dict())
    ref = [flat_values(m) for m in swarm]
    swarm.apso_step([4.0, 3.0, 2.0, 1.0], 0.5, generator=torch.Generator().manual_seed(0))
    assert any(not torch.equal(flat_values(m), r) for m, r in zip(swarm, ref))
    rows = swarm.buffers()[0]
    swarm.load_state_dict(state)
    assert all(torch.equal(flat_values(m), r) for m, r in zip(swarm, ref))
    assert swarm.buffers()[0] is rows  # loaded in place
    other = Swarm(make_pool(4))
    other.load_state_dict(state)
    assert all(torch.equal(flat_values(m), r) for m, r in zip(other, ref))
    with pytest.raises(ValueError, match="state holds 4 members, this swarm has 3"):
        Swarm(make_pool(3)).load_state_dict(state)
    with pytest.raises(TypeError, match="Swarm.state_dict"):
        swarm.load_state_dict({"x": 1})


def saved_bytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def test_member_state_dict_saves_only_that_member():
    """D9: a member's parameters are views of a row of the [K, N] buffer; its
    state_dict must not carry (and torch.save must not write) the other members."""
    swarm = Swarm.spawn(nyto.ParticleModule(Wide()), 12)  # 256 KiB per member, 3 MiB in all
    member_bytes = 4 << 16
    alone = saved_bytes(nyto.ParticleModule(Wide()).state_dict())
    assert member_bytes < alone < member_bytes + 4096
    assert saved_bytes(swarm[3].state_dict()) == alone  # was 12x (the whole buffer)
    state = swarm.state_dict()
    assert saved_bytes(state["members"][3]) == alone
    assert saved_bytes(nn.ModuleList(swarm.members[:2]).state_dict()) < 2 * alone + 4096  # nested: each hooked
    assert saved_bytes(state) < 12 * alone + 8192  # every member once
    # the values are compact copies with the member's values (not aliases of the row) ...
    sd = swarm[3].state_dict()
    w = swarm[3].root_module.w
    assert torch.equal(sd["root_module.w"], w.detach()) and sd["root_module.w"].data_ptr() != w.data_ptr()
    assert sd["root_module.w"].untyped_storage().nbytes() == member_bytes
    # ... and keep_vars=True still gives the Parameter objects themselves
    assert swarm[3].state_dict(keep_vars=True)["root_module.w"] is w
    # a round trip loads the member's own values
    other = Swarm.spawn(nyto.ParticleModule(Wide()), 12)
    buf = io.BytesIO()
    torch.save(swarm[3].state_dict(), buf)
    buf.seek(0)
    other[7].load_state_dict(torch.load(buf))
    assert torch.equal(flat_values(other[7]), flat_values(swarm[3]))
    assert other[7].root_module.w.data_ptr() == other.buffers()[0][7].data_ptr()  # still in its row
    # a member with the hook still pickles and deep-copies
    copy.deepcopy(swarm[3])
    saved_bytes(swarm[3])


def test_swarm_load_state_dict_checks_every_member_before_loading():
    """A state of another architecture (or with one bad member) raises and loads nothing:
    torch's load_state_dict copies the matching entries before it reports a mismatch."""
    swarm = Swarm(make_pool(3))
    before = [flat_values(m) for m in swarm]
    bn_before = swarm[0].root_module.bn.running_mean.clone()

    def bad(change):
        state = copy.deepcopy(Swarm(make_pool(3)).state_dict())
        for sd in state["members"]:
            sd["root_module.bn.running_mean"].fill_(7.0)  # would be loaded by a half load
        change(state["members"])
        return state

    cases = [
        (lambda ms: ms[2].update({"root_module.fc2.weight": torch.zeros(4, 7)}), ValueError,
         r"state\['members'\]\[2\]\['root_module.fc2.weight'\] has shape \(4, 7\)"),
        (lambda ms: ms[1].pop("root_module.fc1.bias"), ValueError, r"\[1\].*missing \['root_module.fc1.bias'\]"),
        (lambda ms: ms[2].update({"root_module.extra": torch.zeros(1)}), ValueError, "unexpected"),
        (lambda ms: ms[2].update({"root_module.fc1.bias": [0.0] * 7}), TypeError, "must be a tensor"),
        (lambda ms: ms.__setitem__(1, 3), TypeError, r"\[1\] must be a state_dict"),
    ]
    for change, error, match in cases:
        with pytest.raises(error, match=match):
            swarm.load_state_dict(bad(change))
        assert all(torch.equal(flat_values(m), b) for m, b in zip(swarm, before))
        assert torch.equal(swarm[0].root_module.bn.running_mean, bn_before)
    # strict=False tolerates missing and unexpected keys, never a wrong shape
    state = bad(lambda ms: ms[1].pop("root_module.fc1.bias"))
    swarm.load_state_dict(state, strict=False)
    assert torch.equal(swarm[0].root_module.bn.running_mean, torch.full((7,), 7.0))
    with pytest.raises(ValueError, match="has shape"):
        swarm.load_state_dict(bad(lambda ms: ms[0].update({"root_module.fc1.weight": torch.zeros(1)})),
                              strict=False)


def test_swarm_with_nyto_modules_and_lazy_products():
    pool = make_pool(3, wrap=False)
    lazy = 0.5 * pool[1].product() + 0.5 * pool[2].product()  # reads rows once packed
    swarm = Swarm(pool)
    expected = 0.5 * flat_values(pool[1]) + 0.5 * flat_values(pool[2])
    swarm.apso_step([0.0, 1.0, 2.0], 0.5, 3, replace=False, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(flat_values(lazy.module()), expected)
    lazy2 = pool[1].product() * 2.0
    expected2 = 2.0 * flat_values(pool[1])
    swarm.momentum_(swarm.snapshot(), [torch.zeros_like(b) for b in swarm.buffers()], 0.5)
    torch.testing.assert_close(flat_values(lazy2.module()), expected2)


def test_best_index():
    swarm = Swarm(make_pool(3))
    assert swarm.best_index([2.0, 1.0, 1.0]) == 1
    assert swarm.best(torch.tensor([0.0, 1.0, -1.0])) is swarm[2]
    assert math.isinf(float("inf"))
    assert swarm.best_index([float("inf"), 1.0, 2.0]) == 1


# ------------------------------------------------------------------ properties

from hypothesis import given, settings, strategies as hs  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(k=hs.integers(1, 7), data=hs.data(), replace=hs.booleans(), seed=hs.integers(0, 2 ** 31),
       alpha=hs.floats(0.01, 0.99))
def test_apso_step_property_matches_the_seed_loop(k, data, replace, seed, alpha):
    """Any pool size, subset size, losses (ties and infinities included): the step
    equals the seed's sequential loop on the drawn indices, and leaves the best alone."""
    subset = data.draw(hs.integers(1, k))
    losses = data.draw(hs.lists(hs.sampled_from([0.0, 1.0, 1.0, 2.5, float("inf"), -3.0]),
                                min_size=k, max_size=k))
    pool = Swarm(make_pool(k)) if data.draw(hs.booleans()) else make_pool(k)
    before = [flat_values(m) for m in pool]
    result = apso_step(pool, losses, alpha, subset, replace=replace,
                       generator=torch.Generator().manual_seed(seed))
    expected, best = seed_swarm_algorithm(before, result.indices, losses, alpha)
    assert result.best == best and best in result.indices
    assert set(result.blended) == set(result.indices) - {best}
    for m, e in zip(pool, expected):
        torch.testing.assert_close(flat_values(m), e, rtol=1e-5, atol=1e-6)


def test_swarm_writing_settles_products_first_and_bumps_versions_even_when_the_write_raises():
    swarm = Swarm(make_pool(3))
    lazy = swarm[1].product() * 2.0  # reads member 1's row
    expected = 2.0 * flat_values(swarm[1])
    row = swarm.storages()[1].buffers[0]
    version = row._version
    with pytest.raises(RuntimeError, match="mid-write"):
        with swarm.writing() as bases:
            assert [b.shape for b in bases] == [b.shape for b in swarm.buffers()]
            bases[0].zero_()  # through the [K, N] buffer, not the parameters
            raise RuntimeError("mid-write")
    assert row._version > version  # the write is recorded though it raised
    torch.testing.assert_close(flat_values(lazy.module()), expected)  # the product kept its values
    assert flat_values(swarm[1]).abs().max() == 0


def _member_loss(member):
    """A loss whose backward needs ``member``'s parameters as they are now."""
    return member(torch.randn(3, 5)).square().sum()


def test_apso_step_invalidates_pending_backwards_of_moved_members_only():
    swarm = Swarm(make_pool(4))
    losses = [_member_loss(m) for m in swarm]
    result = swarm.apso_step([0.0, 1.0, 2.0, 3.0], 0.5, 3, replace=False, generator=torch.Generator().manual_seed(0))
    moved = set(result.blended)
    assert moved and len(moved) < 4
    for i, loss in enumerate(losses):
        if i in moved:  # its parameters changed under the graph: refused, as in PyTorch
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss.backward()
        else:  # the best and the members not drawn: untouched, their graphs still run
            loss.backward()


def test_momentum_and_writing_invalidate_pending_backwards():
    swarm = Swarm(make_pool(3))
    loss = _member_loss(swarm[1])
    swarm.momentum_(swarm.snapshot(), [torch.zeros_like(b) for b in swarm.buffers()], 0.5)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    loss = _member_loss(swarm[2])
    with swarm.writing() as bases:
        bases[0].mul_(0.5)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
