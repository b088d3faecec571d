"""ParamProduct: zero-copy products, views, product_, lazy affine fusion, raw
operators, blend/axpby/lincomb, mixed dtypes (nytorch_ext.particles.product)."""
from __future__ import annotations

import math

import pytest
import torch

import nytorch_ext as nyto
import nytorch_ext.particles.product
from nytorch_ext import ParamProduct, SpeciesError
from particle_models import Lin, Mixed, Net, assert_values, inside, species, storage_ptr, values, MyModel


@pytest.fixture
def lincomb_calls(monkeypatch):
    """Counts calls of ops.lincomb made by nytorch_ext.particles.product."""
    calls = []
    real = nytorch_ext.particles.product.ops.lincomb

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(nytorch_ext.particles.product.ops, "lincomb", counting)
    return calls


def _pair(model=Net, seed=0):
    torch.manual_seed(seed)
    a = model()
    return a, a.randn()


def _expect(module, fn, *others):
    """name -> fn(param values of module, of others...)."""
    vs = [values(m) for m in (module, *others)]
    return {n: fn(*(v[n] for v in vs)) for n in vs[0]}


def _close(module, expected, rtol=1.3e-6, atol=1e-6):
    got = values(module)
    assert set(got) == set(expected)
    for n in got:
        torch.testing.assert_close(got[n], expected[n].to(got[n].dtype), rtol=rtol, atol=atol, msg=n)


# ------------------------------------------------------------------ zero copy

def test_product_is_zero_copy():
    a = Net()
    P = a.product()
    assert isinstance(P, ParamProduct)
    (buf,) = P.buffers()
    params = list(a.parameters())
    assert all(storage_ptr(p) == storage_ptr(buf) for p in params)
    assert all(inside(p, buf) for p in params)
    assert buf.data_ptr() == min(p.data_ptr() for p in params)
    # the views in P.params are the module's values
    for t in P.params.values():
        assert storage_ptr(t) == storage_ptr(buf)
    assert a.product().buffers()[0].data_ptr() == buf.data_ptr()  # no re-flatten between calls


def test_product_params_are_keyed_by_param_id():
    a = Net()
    P = a.product()
    assert list(P.params) == sorted(P.params)
    for p in a.parameters():
        assert torch.equal(P.params[a.get_param_id(p)], p)
    assert P.module_id == nyto.ROOT_MODULE_ID
    assert P.kernel is a._particle_kernel and P.vdata is species(a)


def test_module_parameters_are_views_of_the_product_buffers():
    a, b = _pair()
    P = 0.25 * a.product() + 0.75 * b.product()
    m = P.module()
    bufs = P.buffers()
    assert len(bufs) == 1
    for p in m.parameters():
        assert isinstance(p, torch.nn.Parameter)
        assert inside(p, bufs[0])
    # and the values are right
    _close(m, _expect(a, lambda x, y: 0.25 * x + 0.75 * y, b))
    # a second module() of the same product is another particle
    m2 = P.module()
    assert m2 is not m and species(m2) is species(a)


def test_unmodified_product_module_shares_storage_with_the_source():
    a = Net()
    m = a.product().module()
    assert m is not a and type(m) is Net
    for p, q in zip(m.parameters(), a.parameters()):
        assert p is not q  # not the same Parameter objects (a deliberate difference) ...
        assert p.data_ptr() == q.data_ptr()  # ... but the same storage


def test_product_assign_in_place_keeps_parameter_objects_and_storage():
    a, b = _pair()
    params = list(a.parameters())
    ptrs = [p.data_ptr() for p in params]
    expected = _expect(a, lambda x, y: 2 * x - y + 0.5, b)
    out = a.product_(2 * a.product() - b.product() + 0.5)
    assert out is a
    assert all(p is q for p, q in zip(a.parameters(), params))
    assert [p.data_ptr() for p in a.parameters()] == ptrs
    _close(a, expected)
    # assigning another particle's product copies values, it does not alias storage
    a.product_(b.product())
    assert_values(a, values(b))
    with torch.no_grad():
        b.scale.add_(1)
    assert a.scale.item() != b.scale.item()
    with pytest.raises(SpeciesError):
        a.product_(a)  # a module, not a product


# --------------------------------------------------------------- lazy fusion

def test_affine_expressions_are_lazy_and_fused_into_one_pass(lincomb_calls):
    a, b = _pair()
    p0, p1 = a.product(), b.product()
    alpha, beta = 0.3, 0.9
    cases = [
        (lambda: alpha * p0 + (1 - alpha) * p1, lambda x, y: alpha * x + (1 - alpha) * y),
        (lambda: p1 + beta * (p1 - p0), lambda x, y: y + beta * (y - x)),
        (lambda: 2 * p0 + 5, lambda x, y: 2 * x + 5),
        (lambda: (p0 - p1) / 4 - 3 + -p0, lambda x, y: (x - y) / 4 - 3 - x),
        (lambda: 1 - (p0 + p1) * 0.5, lambda x, y: 1 - (x + y) * 0.5),
    ]
    for build, ref in cases:
        lincomb_calls.clear()
        expr = build()
        assert lincomb_calls == []  # building the expression computes nothing
        m = expr.module()
        assert len(lincomb_calls) == 1  # one pass for the single (float32, cpu) group
        _close(m, _expect(a, ref, b))


def test_lazy_fusion_with_two_dtype_groups(lincomb_calls):
    a, b = _pair(Mixed)
    P = a.product()
    assert {g.dtype for g in P.layout.groups} == {torch.float32, torch.float64}
    lincomb_calls.clear()
    m = (0.5 * a.product() + 0.5 * b.product()).module()
    assert len(lincomb_calls) == 2  # one per (dtype, device) group
    _close(m, _expect(a, lambda x, y: 0.5 * x + 0.5 * y, b), rtol=1e-12, atol=1e-12)
    assert m.d.dtype == torch.float64 and m.fc.weight.dtype == torch.float32


def test_module_level_operations_use_one_pass_each(lincomb_calls):
    a, b = _pair()
    lincomb_calls.clear()
    r = 0.5 * a + 10  # two module-level ops: two passes
    assert len(lincomb_calls) == 2
    _close(r, _expect(a, lambda x: 0.5 * x + 10))
    lincomb_calls.clear()
    a += 0.5 * (b - a)  # b - a, 0.5 * (.), a += (.): three passes
    assert len(lincomb_calls) == 3
    lincomb_calls.clear()
    a -= 1
    assert len(lincomb_calls) == 1


def test_product_assign_of_a_lazy_expression_is_one_pass(lincomb_calls):
    a, b = _pair()
    expected = _expect(a, lambda x, y: x + 0.1 * (y - x), b)
    lincomb_calls.clear()
    a.product_(a.product() + 0.1 * (b.product() - a.product()))
    assert len(lincomb_calls) == 1
    _close(a, expected)


@pytest.mark.parametrize("expr", ["2*P", "P+0", "0.5*P+0.5*P"])
def test_lazy_products_are_values_not_views_of_later_state(expr):
    """Regression: a lazy product read its operands' live storage, so an in-place change
    made after it was built (a += 1) leaked into it."""
    a = Lin()
    q = eval(expr, {"P": a.product()})
    snapshot = {"2*P": [4.0], "P+0": [2.0], "0.5*P+0.5*P": [2.0]}[expr]
    a += 1  # in place, through product_
    assert q.module().weight.tolist() == snapshot


@pytest.mark.parametrize("origin", [
    "fresh",  # flattened by kernel.flat(): Parameters re-pointed with p.data = view
    "operation_result",
])
def test_lazy_product_is_never_silently_recomputed_after_an_optimizer_step(origin):
    """An in-place change made outside the particle API (an optimizer step) after a lazy
    product was built: the product must give the values it was built from (nytorch's
    eager semantics) or raise, never silently use the new values."""
    a = Lin() if origin == "fresh" else Lin().clone()
    q = a.product() * 2 + 1
    opt = torch.optim.SGD(a.parameters(), lr=0.5)
    a(torch.tensor([1.0])).sum().backward()
    opt.step()  # weight 2 -> 1.5, bias 1 -> 0.5
    assert a.weight.tolist() == [1.5]
    assert_values(q.module(), {"weight": [5.0], "bias": [3.0]})  # the values it was built from


def test_live_product_follows_the_particle():
    """particle.product() itself is live (nytorch: the particle's own parameter dict)."""
    a = Lin()
    P = a.product()
    with torch.no_grad():
        a.weight.fill_(5.0)
    assert_values(P.module(), {"weight": [5.0], "bias": [1.0]})
    a += 1
    assert_values(P.module(), {"weight": [6.0], "bias": [2.0]})


# ------------------------------------------------------------ non-affine ops

@pytest.mark.parametrize("name,build,ref", [
    ("p*p", lambda p, q: p * p, lambda x, y: x * x),
    ("p/p", lambda p, q: p / p, lambda x, y: x / x),
    ("p**2", lambda p, q: p ** 2, lambda x, y: x ** 2),
    ("2**p", lambda p, q: 2 ** p, lambda x, y: 2 ** x),
    ("p*q", lambda p, q: p * q, lambda x, y: x * y),
    ("p/q", lambda p, q: p / q, lambda x, y: x / y),
    ("p**q", lambda p, q: p ** q, lambda x, y: x ** y),
    ("3/p", lambda p, q: 3 / p, lambda x, y: 3 / x),
    ("p*t", lambda p, q: p * torch.tensor(2.5), lambda x, y: x * 2.5),
    ("(2p+1)*(q-1)", lambda p, q: (2 * p + 1) * (q - 1), lambda x, y: (2 * x + 1) * (y - 1)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_non_affine_operations(name, build, ref):
    torch.manual_seed(3)
    a = Net().rand() + 0.1  # positive values (bases of p**q, divisors)
    b = a.rand() + 0.5
    m = build(a.product(), b.product()).module()
    assert type(m) is Net and species(m) is species(a)
    _close(m, _expect(a, ref, b), rtol=2e-6, atol=1e-6)


def test_non_affine_ops_with_mixed_dtype_groups():
    a, b = _pair(Mixed)
    m = (a.product() * b.product() + 2 ** a.product()).module()
    _close(m, _expect(a, lambda x, y: x * y + 2 ** x, b), rtol=1e-6, atol=1e-6)
    assert m.d.dtype == torch.float64


# ------------------------------------------------------- raw operator callbacks

def test_chapter_pmproduct_example_values():
    """particle-module chapter: product2 = product1+1, product3 = 2*product2, product4 =
    product3.unary_operator(2*param+10), product5 = product4.binary_operator(product3, +)."""
    net = nyto.ParticleModule(Lin())
    product1 = net.product()
    assert isinstance(product1.product, ParamProduct)
    assert isinstance(product1.module(), nyto.ParticleModule)
    product2 = product1 + 1
    product3 = 2 * product2
    product4 = product3.unary_operator(lambda param, config: 2 * param + 10)
    product5 = product4.binary_operator(product3, lambda param1, param2, config: param1 + param2)
    product6 = product5.randn()
    expected = {product2: ([3.0], [2.0]), product3: ([6.0], [4.0]), product4: ([22.0], [18.0]),
                product5: ([28.0], [22.0])}
    for prod, (w, b) in expected.items():
        m = prod.module()
        assert isinstance(m, nyto.ParticleModule)
        assert_values(m, {"root_module.weight": w, "root_module.bias": b})
    assert isinstance(product6, nyto.PMProduct)
    assert isinstance(product6.module(), nyto.ParticleModule)
    assert_values(net, {"root_module.weight": [2.0], "root_module.bias": [1.0]})


def test_unary_and_binary_operator_receive_param_and_config():
    a, b = _pair()
    a.set_param_config(operational=False, clone=False, name="scale")
    seen = []

    def unary(param, config):
        seen.append((tuple(param.shape), config.operational, config.clone))
        return param * 3

    m = a.product().unary_operator(unary).module()
    assert sorted(seen) == sorted([((2, 2), True, True), ((2,), True, True), ((2,), True, True),
                                   ((2,), True, True), ((1,), False, False)])
    _close(m, _expect(a, lambda x: x * 3))
    pairs = []

    def binary(p, q, config):
        pairs.append(config.operational)
        return p - 2 * q

    m2 = a.product().binary_operator(b.product(), binary).module()
    assert len(pairs) == 5
    _close(m2, _expect(a, lambda x, y: x - 2 * y, b))
    with pytest.raises(SpeciesError):
        a.product().binary_operator(Net().product(), binary)
    with pytest.raises(SpeciesError):
        a.product().binary_operator(b, binary)  # a module, not a product


def test_unary_operator_can_change_dtype_and_shape_consistently():
    a = Lin()
    m = a.product().unary_operator(lambda p, c: p.double() * 2).module()
    assert m.weight.dtype == torch.float64 and m.weight.tolist() == [4.0]
    r = m + a  # layouts differ: per-parameter path with torch promotion
    assert r.weight.dtype == torch.float64 and r.weight.tolist() == [6.0]


# ------------------------------------------------------- blend / axpby / lincomb

@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0, -0.5, 1.5])
def test_blend_matches_formula(alpha):
    a, b = _pair(Mixed)
    expected = _expect(a, lambda x, y: (1 - alpha) * x + alpha * y, b)
    m = a.product().blend(b.product(), alpha).module()
    _close(m, expected)
    _close(a.blend(b, alpha), expected)
    if alpha == 0.0:
        assert_values(m, values(a))  # exact at the end points
    if alpha == 1.0:
        assert_values(m, values(b))
    pm_a, pm_b = nyto.ParticleModule(a.clone()), nyto.ParticleModule(b.clone())
    res = pm_a.blend(pm_b, alpha)
    assert isinstance(res, nyto.ParticleModule)
    _close(res.root_module, expected)


def test_blend_in_place_on_a_particle_product_updates_the_particle():
    a, b = _pair()
    params = list(a.parameters())
    ptrs = [p.data_ptr() for p in params]
    expected = _expect(a, lambda x, y: 0.7 * x + 0.3 * y, b)
    P = a.product()
    out = P.blend_(b.product(), 0.3)
    assert out is P
    _close(a, expected)
    assert all(p is q for p, q in zip(a.parameters(), params))
    assert [p.data_ptr() for p in a.parameters()] == ptrs
    # the module-level form
    expected2 = _expect(a, lambda x, y: 0.5 * x + 0.5 * y, b)
    assert a.blend_(b, 0.5) is a
    _close(a, expected2)
    assert all(p is q for p, q in zip(a.parameters(), params))


@pytest.mark.parametrize("derive", [lambda P: P * 2.0, lambda P: (P * 2.0).clone()], ids=["lazy", "materialized"])
def test_blend_in_place_on_a_derived_product_leaves_the_particle_alone(derive):
    """A product that is not a particle's own (no storage of a particle behind it)
    blends its own buffers."""
    a, b = _pair()
    before = values(a)
    expected = _expect(a, lambda x, y: 0.7 * (2.0 * x) + 0.3 * y, b)
    Q = derive(a.product())
    assert Q.blend_(b.product(), 0.3) is Q
    _close(Q.module(), expected)
    assert_values(a, before)


def test_blend_respects_non_operational_params():
    a, b = _pair()
    a.set_param_config(operational=False, name="scale")
    scale = a.scale.item()
    a.blend_(b, 0.5)
    assert a.scale.item() == scale
    m = a.blend(b, 0.5)
    assert m.scale.item() == scale


def test_axpby_and_lincomb_match_formulas(lincomb_calls):
    torch.manual_seed(5)
    a = Mixed()
    b, c = a.randn(), a.randn()
    lincomb_calls.clear()
    m = a.product().axpby(0.3, b.product(), -1.7).module()
    assert len(lincomb_calls) == 2
    _close(m, _expect(a, lambda x, y: 0.3 * x - 1.7 * y, b))
    _close(a.axpby(2.0, b, 0.5), _expect(a, lambda x, y: 2 * x + 0.5 * y, b))
    lincomb_calls.clear()
    P = nyto.lincomb([0.2, -1.0, 3.5], [a.product(), b.product(), c.product()], bias=0.25)
    assert lincomb_calls == []
    m = P.module()
    assert len(lincomb_calls) == 2
    _close(m, _expect(a, lambda x, y, z: 0.2 * x - y + 3.5 * z + 0.25, b, c), rtol=2e-6, atol=2e-6)
    with pytest.raises(ValueError):
        nyto.lincomb([1.0, 2.0], [a.product()])
    with pytest.raises(ValueError):
        nyto.lincomb([], [])
    with pytest.raises(SpeciesError):
        nyto.lincomb([1.0, 1.0], [a.product(), Mixed().product()])


@pytest.mark.parametrize("alpha", [math.nan, math.inf, -math.inf, float("nan")])
def test_blend_non_finite_alpha_raises_and_changes_nothing(alpha):
    a, b = _pair()
    before_a, before_b = values(a), values(b)
    P = a.product()
    for call in (lambda: P.blend(b.product(), alpha), lambda: P.blend_(b.product(), alpha),
                 lambda: a.blend(b, alpha), lambda: a.blend_(b, alpha),
                 lambda: (a.product() * 2).blend_(b.product(), alpha)):
        with pytest.raises(ValueError, match="finite"):
            call()
    pm_a = nyto.ParticleModule(a.clone())
    pm_b = pm_a.clone()
    pm_before = values(pm_a)
    for call in (lambda: pm_a.blend(pm_b, alpha), lambda: pm_a.blend_(pm_b, alpha),
                 lambda: pm_a.product().blend_(pm_b.product(), alpha)):
        with pytest.raises(ValueError, match="finite"):
            call()
    assert_values(a, before_a)
    assert_values(b, before_b)
    assert_values(pm_a, pm_before)


def test_blend_bad_alpha_type_and_species():
    a, b = _pair()
    before = values(a)
    with pytest.raises(TypeError):
        a.product().blend_(b.product(), "0.5")
    with pytest.raises(SpeciesError):
        a.product().blend_(Net().product(), 0.5)
    with pytest.raises(SpeciesError):
        a.blend_(Net(), 0.5)
    with pytest.raises(SpeciesError):
        a.product().blend(b, 0.5)  # a module, not a product
    assert_values(a, before)


def test_blend_in_place_with_different_layouts_raises_and_changes_nothing():
    a = Lin()
    b = a.clone()
    b.double()
    before = values(a)
    with pytest.raises(ValueError, match="layout"):
        a.product().blend_(b.product(), 0.5)
    assert_values(a, before)
    # the out-of-place blend handles it (per parameter, torch promotion)
    m = a.product().blend(b.product(), 0.5)
    assert m.module().weight.tolist() == [2.0]


# --------------------------------------------------------------- mixed dtypes

def test_mixed_dtype_model_has_two_groups_and_works():
    a, b = _pair(Mixed)
    P = a.product()
    assert len(P.buffers()) == 2
    assert {buf.dtype for buf in P.buffers()} == {torch.float32, torch.float64}
    for name, p in a.named_parameters():
        assert any(inside(p, buf) for buf in P.buffers()), name
    r = 2 * a - b / 4 + 1
    _close(r, _expect(a, lambda x, y: 2 * x - y / 4 + 1, b), rtol=2e-6, atol=2e-6)
    assert r.d.dtype == torch.float64 and r.fc.weight.dtype == torch.float32
    x = torch.randn(5, 3)
    assert r(x).shape == (5, 4)


def test_product_repr_and_pos_clone():
    a = Net()
    P = a.product()
    assert "ParamProduct" in repr(P)
    Q = +P
    assert isinstance(Q, ParamProduct)
    assert Q.buffers()[0].data_ptr() != P.buffers()[0].data_ptr()
    assert_values(Q.module(), values(a))
    R = P.clone()
    assert R.buffers()[0].data_ptr() != P.buffers()[0].data_ptr()
    torch.manual_seed(0)
    S = P.randn()
    assert not torch.equal(S.buffers()[0], P.buffers()[0])
    U = P.rand()
    assert all(((v >= 0) & (v < 1)).all() for v in U.params.values())


# ------------------------------------- live products, writes the library cannot see
# nytorch computes every expression eagerly: a derived product has the values its
# operands had when it was built, whatever writes the particle afterwards. Ours
# are lazy, reading copy-on-write snapshots, so no write path may leak in (D4).

def _writes(model):
    """Ways to zero a particle's first parameter that bypass the particle API."""
    return {
        "data": lambda: next(model.parameters()).data.mul_(0),
        "no_grad": lambda: torch.no_grad()(lambda: next(model.parameters()).mul_(0))(),
        "buffer": lambda: model_storage(model).buffers[0].mul_(0),
        "load_state_dict": lambda: model.load_state_dict(
            {k: torch.zeros_like(v) for k, v in model.state_dict().items()}),
    }


def model_storage(model):
    kernel = getattr(model, "particle_kernel", None) or model._particle_kernel
    return kernel.flat()


@pytest.mark.parametrize("path", ["data", "no_grad", "buffer", "load_state_dict"])
@pytest.mark.parametrize("kind", ["nyto", "pm"])
def test_a_lazy_product_keeps_its_values_after_writes_behind_its_back(path, kind):
    model = MyModel() if kind == "nyto" else nyto.ParticleModule(MyModel())
    before = [p.detach().clone() for p in model.parameters()]
    lazy = model.product() * 2 + 1
    _writes(model)[path]()
    assert next(model.parameters()).abs().sum() == 0  # the write happened
    got = lazy.module()
    for p, b in zip(got.parameters(), before):
        assert torch.equal(p, 2 * b + 1)
    # and the particle itself keeps working, storage intact
    assert [t.abs().sum() for t in (model * 1).parameters()][0] == 0


def test_a_swarm_buffer_write_does_not_leak_into_a_members_lazy_product():
    swarm = nyto.Swarm.spawn(nyto.ParticleModule(MyModel()), 3)
    member = swarm[1]
    before = [p.detach().clone() for p in member.parameters()]
    lazy = member.product() * 2
    for b in swarm.buffers():
        b.mul_(0)
    assert all(p.abs().sum() == 0 for p in member.parameters())
    for p, b in zip(lazy.module().parameters(), before):
        assert torch.equal(p, 2 * b)


def test_live_product_reads_the_particle_after_in_place_operations():
    a = nyto.ParticleModule(MyModel())
    p = a.product()
    a += 1
    expect = [2 * t.detach() for t in a.parameters()]
    for got, e in zip((p * 2).module().parameters(), expect):
        assert torch.equal(got, e)


def test_live_product_follows_a_re_flatten():
    a = MyModel()
    p = a.product()
    a.double()
    doubled = (p * 2).module()
    assert all(t.dtype == torch.float64 for t in doubled.parameters())
    for got, t in zip(doubled.parameters(), a.parameters()):
        assert torch.equal(got, 2 * t.detach())


@pytest.mark.parametrize("kind", ["nyto", "pm"])
def test_product_into_its_own_particle_then_the_expression_keeps_its_value(kind):
    a = MyModel() if kind == "nyto" else nyto.ParticleModule(MyModel())
    expr = a.product() * 2  # held: must keep 2 * a_before
    before = [t.detach().clone() for t in a.parameters()]
    a.product_(expr)
    for got, b in zip(a.parameters(), before):
        assert torch.equal(got, 2 * b)
    for got, b in zip(expr.module().parameters(), before):
        assert torch.equal(got, 2 * b)
    a.product_(expr)  # again: the same value, not 4 * a_before
    for got, b in zip(a.parameters(), before):
        assert torch.equal(got, 2 * b)


@pytest.mark.parametrize("kind", ["nyto", "pm"])
def test_a_temporary_expression_is_written_in_one_pass_without_copy_on_write(kind):
    """``a.product_(expr)`` with a temporary: its snapshots of ``a`` are dropped
    before the write, so ``a``'s buffer keeps its memory (no copy made)."""
    from nytorch_ext.particles.memory import data_address as _data_address
    a = MyModel() if kind == "nyto" else nyto.ParticleModule(MyModel())
    b = a.clone()
    st = model_storage(a)
    address = _data_address(st.buffers[0])
    a.product_(a.product() * 0.5 + b.product() * 0.5)
    a += 1
    a.blend_(b, 0.25)
    assert _data_address(model_storage(a).buffers[0]) == address
    assert model_storage(a) is st


def test_held_expressions_that_read_the_target_keep_their_values_whatever_the_call_shape():
    """The temporary/held decision reads reference counts; every way of holding the
    argument must be seen as held (else the expression would silently change)."""
    a = nyto.ParticleModule(MyModel())
    before = [t.detach().clone() for t in a.parameters()]
    holders = {}
    expr = a.product() * 3
    holders["dict"] = expr
    box = [a.product() * 3]
    inner = (a.product() * 3).product  # a ParamProduct held, wrapped anew below
    a.product_(expr)
    a.product_(box[0])
    a.product_(nyto.PMProduct.from_ParamProduct(inner))
    for held in (expr, box[0], nyto.PMProduct.from_ParamProduct(inner)):
        for got, b in zip(held.module().parameters(), before):
            assert torch.equal(got, 3 * b)
