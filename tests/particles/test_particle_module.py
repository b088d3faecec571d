"""ParticleModule, PMProduct, GetNytoModule and garbage collection
(nytorch_ext.particle_module; spec section 7 and the particle-module chapter)."""
from __future__ import annotations

import contextlib
import gc
import io
import tracemalloc
import weakref

import pytest
import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext import GetNytoModule, ParticleModule, PMProduct, SpeciesError
from nytorch_ext.mtype import ROOT_MODULE_ID
from particle_models import Inner, Lin, MyModel, Net, Outer, assert_values, gc_disabled, species, values


def _pm(model=Lin):
    return ParticleModule(model())


# ---------------------------------------------------------------------- wrapping

def test_wrapping_a_root_module():
    root = MyModel(4, 12, 3)
    net = ParticleModule(root)
    assert net.root_module is root
    assert dict(net.named_children()) == {"root_module": root}
    assert root._particle_kernel is None  # cleared
    assert net.particle_kernel is not None and net.particle_kernel.modules[ROOT_MODULE_ID] is root
    x = torch.randn(2, 4)
    assert torch.equal(net(x), root(x))
    assert [n for n, _ in net.named_parameters()] == [
        "root_module.layer1.weight", "root_module.layer1.bias",
        "root_module.layer2.weight", "root_module.layer2.bias"]
    assert list(net.state_dict())[0] == "root_module.layer1.weight"
    assert repr(net).startswith("ParticleModule(\n  (root_module): MyModel(")
    assert isinstance(net, nn.Module) and not isinstance(net, nyto.NytoModule)


def test_wrapping_errors():
    with pytest.raises(TypeError):
        ParticleModule(nn.Linear(1, 1))
    o = Outer()
    o.touch()
    with pytest.raises(ValueError):
        ParticleModule(o.inner)  # a submodule
    pm = _pm()
    with pytest.raises(ValueError):
        ParticleModule(pm.root_module)  # already wrapped (kernel reference cleared)


def test_restore_and_clear_kernel_ref():
    net = ParticleModule(Outer().touch())
    assert net.root_module._particle_kernel is None
    assert net.root_module.inner._particle_kernel is None
    net.restore_kernel_ref()
    assert net.root_module._particle_kernel is net.particle_kernel
    assert net.root_module.inner._particle_kernel is net.particle_kernel
    r = net.root_module + 1  # a live reference allows NytoModule operations
    assert type(r) is Outer
    net.clear_kernel_ref()
    assert net.root_module._particle_kernel is None
    assert net.root_module.inner._particle_kernel is None


def test_cleared_root_refuses_nyto_operations():
    net = ParticleModule(Net())
    for call in (lambda: net.root_module + 1, lambda: net.root_module.product(),
                 lambda: net.root_module.set_param_config(operational=False),
                 lambda: net.root_module.touch()):
        with pytest.raises(SpeciesError, match="GetNytoModule"):
            call()


def test_get_nyto_module_context():
    net = ParticleModule(Net())
    with GetNytoModule(net) as m:
        assert m is net.root_module and m._particle_kernel is net.particle_kernel
        m.set_param_config(operational=False, clone=False, name="scale")
    assert net.root_module._particle_kernel is None
    r = net * 2
    assert r.root_module.scale is net.root_module.scale  # non-operational, shared
    torch.testing.assert_close(r.root_module.fc.weight.detach(), net.root_module.fc.weight.detach() * 2)
    with pytest.raises(KeyError):
        with GetNytoModule(net) as m:
            raise KeyError("boom")  # not suppressed ...
    assert net.root_module._particle_kernel is None  # ... and cleared on the way out
    with pytest.raises(TypeError):
        GetNytoModule(Net())


def test_structural_edit_inside_get_nyto_module():
    net = ParticleModule(Lin())
    other = net.clone()
    with GetNytoModule(net) as m:
        m.extra = nn.Parameter(torch.tensor([5.0]))
    assert [n for n, _ in net.named_parameters()] == ["root_module.weight", "root_module.bias",
                                                       "root_module.extra"]
    r = net + 1
    assert r.root_module.extra.tolist() == [6.0]
    # ParticleModule.product() touches (a deliberate difference): other catches up
    other.product()
    assert other.root_module.extra.tolist() == [5.0]
    assert_values(net + other, {"root_module.weight": [4.0], "root_module.bias": [2.0],
                                "root_module.extra": [10.0]})


@pytest.mark.parametrize("case", ["fresh_model", "child_added_in_context"])
def test_every_nyto_child_is_cleared(case):
    """Regression: clear_kernel_ref() missed NytoModule children the kernel had not
    scanned yet (a fresh Outer(), a child added in GetNytoModule): live kernel
    references, a root <-> kernel cycle, and `pm.root_module.inner + 1` allowed."""
    with gc_disabled():
        if case == "fresh_model":
            pm = ParticleModule(Outer())
            child = pm.root_module.inner
        else:
            pm = ParticleModule(Lin())
            with GetNytoModule(pm) as m:
                m.child = Inner()
            child = pm.root_module.child
        r = pm + 1
        assert child.__dict__["_particle_kernel"] is None
        root_ref = weakref.ref(pm.root_module)
        del pm, r, child
        if case != "fresh_model":
            del m
        assert root_ref() is None


# --------------------------------------------------------------------- arithmetic

def test_arithmetic_returns_particle_modules():
    net = _pm()
    other = net * 2
    cases = [(net + 1, [3.0], [2.0]), (2 * net, [4.0], [2.0]), (net - other, [-2.0], [-1.0]),
             (2 / net, [1.0], [2.0]), (net ** other, [16.0], [1.0]), (-net, [-2.0], [-1.0]),
             (+net, [2.0], [1.0]), (net.clone(), [2.0], [1.0]), (1 - net, [-1.0], [0.0]),
             (net / 2, [1.0], [0.5]), (2 ** net, [4.0], [2.0])]
    for r, w, b in cases:
        assert type(r) is ParticleModule and r is not net
        assert r.root_module._particle_kernel is None
        assert species(r) is species(net)
        assert_values(r, {"root_module.weight": w, "root_module.bias": b})
    assert_values(net, {"root_module.weight": [2.0], "root_module.bias": [1.0]})
    assert type(net.randn()) is ParticleModule and type(net.rand()) is ParticleModule


def test_inplace_keeps_parameter_objects_and_optimizer():
    net = _pm()
    other = net + 1
    w = net.root_module.weight
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net += other
    net *= 2
    net -= 1
    net /= 2
    net **= 2
    assert net.root_module.weight is w
    # {2,1} += {3,2} -> {5,3}; *2 -> {10,6}; -1 -> {9,5}; /2 -> {4.5,2.5}; **2 -> {20.25,6.25}
    assert_values(net, {"root_module.weight": [20.25], "root_module.bias": [6.25]})
    opt.zero_grad()
    net(torch.tensor([1.0])).sum().backward()
    opt.step()
    assert_values(net, {"root_module.weight": [19.75], "root_module.bias": [5.75]})


def test_species_errors():
    net, stranger = _pm(), _pm()
    before = values(net)
    for call in (lambda: net + stranger, lambda: net + net.product(), lambda: net + Lin(),
                 lambda: net.product() + stranger.product(), lambda: net.product() + Lin(),
                 lambda: net.product().binary_operator(net.product().product, lambda a, b, c: a),
                 lambda: net.product_(stranger.product())):
        with pytest.raises(SpeciesError) as info:
            call()
        assert isinstance(info.value, AssertionError) and str(info.value)
    with pytest.raises(SpeciesError):
        net += stranger
    with pytest.raises(SpeciesError):
        net += net.product()
    assert_values(net, before)


def test_clone_from():
    net = ParticleModule(Net())
    source = ParticleModule(Net())
    c = net.clone_from(source)
    assert type(c) is ParticleModule and species(c) is species(net)
    assert_values(c, values(source))
    net + c


# -------------------------------------------------------------------- PMProduct

def test_pmproduct_operations_and_module():
    torch.manual_seed(0)
    net = ParticleModule(Net())
    other = net.randn()
    P, Q = net.product(), other.product()
    assert isinstance(P, PMProduct) and isinstance(P.product, nyto.ParamProduct)
    for expr, ref in [(P + Q, lambda x, y: x + y), (1 - P, lambda x, y: 1 - x), (2 ** P, lambda x, y: 2 ** x),
                      (P * Q, lambda x, y: x * y), (0.3 * P + 0.7 * Q, lambda x, y: 0.3 * x + 0.7 * y),
                      (P / 4, lambda x, y: x / 4), (-P, lambda x, y: -x), (+P, lambda x, y: x),
                      (P.clone(), lambda x, y: x), (P + Q.product, lambda x, y: x + y)]:
        assert isinstance(expr, PMProduct)
        m = expr.module()
        assert type(m) is ParticleModule and m.root_module._particle_kernel is None
        vx, vy = values(net), values(other)
        for n, t in values(m).items():
            torch.testing.assert_close(t, ref(vx[n], vy[n]), rtol=1.3e-6, atol=1e-6)
    # module() of an unmodified PMProduct: a new particle on the same storage
    m = P.module()
    assert m is not net
    for p, q in zip(m.parameters(), net.parameters()):
        assert p is not q and p.data_ptr() == q.data_ptr()
    assert "PMProduct" in repr(P)


def test_product_assign_keeps_parameter_objects():
    net = _pm()
    other = net * 3
    w = net.root_module.weight
    assert net.product_(0.5 * net.product() + 0.5 * other.product()) is net
    assert net.root_module.weight is w
    assert_values(net, {"root_module.weight": [4.0], "root_module.bias": [2.0]})
    net.product_(other.product().product)  # a ParamProduct is accepted too
    assert_values(net, {"root_module.weight": [6.0], "root_module.bias": [3.0]})
    with pytest.raises(SpeciesError):
        net.product_(other)
    assert net.root_module._particle_kernel is None


def test_pm_blend_in_place():
    net = _pm()
    best = net * 3
    w = net.root_module.weight
    assert net.blend_(best, 0.25) is net
    assert net.root_module.weight is w
    assert_values(net, {"root_module.weight": [3.0], "root_module.bias": [1.5]})
    P = net.product()
    P.blend_(best.product(), 1.0)
    assert_values(net, {"root_module.weight": [6.0], "root_module.bias": [3.0]})
    assert_values(net.axpby(2.0, best, -1.0), {"root_module.weight": [6.0], "root_module.bias": [3.0]})


# ------------------------------------------------------------ garbage collection

def _refs(net):
    return (weakref.ref(net), weakref.ref(net.root_module), weakref.ref(net.particle_kernel))


@pytest.mark.parametrize("model", [Lin, Net])
def test_particle_module_loop_frees_every_old_particle_immediately(model):
    with gc_disabled():
        gc.collect()
        net = ParticleModule(model())
        refs = [_refs(net)]
        for i in range(10):
            net = 0.5 * net + 10
            refs.append(_refs(net))
            alive = [r for r in refs if any(x() is not None for x in r)]
            assert alive == [refs[-1]], f"iteration {i}: {len(alive)} particles alive"
        del net
        assert all(x() is None for r in refs for x in r)


def test_scanned_particle_is_freed_without_the_cycle_collector():
    """Regression: scan() used a recursive closure (a function<->cell cycle holding the
    kernel), so the first particle stayed alive until gc.collect()."""
    with gc_disabled():
        gc.collect()
        net = ParticleModule(Lin())
        refs = _refs(net)
        net = 0.5 * net + 10
        assert refs[0]() is None  # the wrapper
        assert refs[1]() is None and refs[2]() is None  # its root module and kernel


def test_nyto_module_loop_needs_the_cycle_collector():
    """The contrast (as nytorch): a NytoModule and its kernel form a cycle."""
    with gc_disabled():
        gc.collect()
        net = Lin()
        refs = [weakref.ref(net)]
        for _ in range(3):
            net = 0.5 * net + 10
            refs.append(weakref.ref(net))
        del net
        assert sum(r() is not None for r in refs) > 1
    gc.collect()
    assert all(r() is None for r in refs)


CHAPTER_CODE = '''
import nytorch_ext as nyto
import torch.nn as nn
from nytorch_ext.mtype import ROOT_MODULE_ID
from nytorch_ext.particle_module import ParticleModule, PMProduct

CNN_COUNTER: int = 0

class CNN(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels = 1,
                                             out_channels = 16,
                                             kernel_size = 5,
                                             stride = 1,
                                             padding = 2),
                                   nn.ReLU(),
                                   nn.MaxPool2d(kernel_size = 2))
        self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 5, 1, 2),
                                   nn.ReLU(),
                                   nn.MaxPool2d(2))
        self.output_layer = nn.Linear(32*7*7, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x)
        x = x.view(x.size(0), -1)
        output = self.output_layer(x)
        return output, x

class MyPMProduct(PMProduct):
    @classmethod
    def from_ParamProduct(cls, product: 'ParamProduct') -> PMProduct:
        return MyPMProduct(product.kernel,
                           product.module_id,
                           product.params)

    def particle(self) -> 'MyParticleModule':
        return MyParticleModule(self.product.module())

class MyParticleModule(ParticleModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        global CNN_COUNTER
        CNN_COUNTER += 1
        self.module_id = CNN_COUNTER
        print(f"init cnn={self.module_id}")

    def __del__(self):
        print(f"delete cnn={self.module_id}")

    def product(self) -> MyPMProduct:
        return MyPMProduct(self.particle_kernel,
                           ROOT_MODULE_ID,
                           self.particle_kernel.data.params)

def particle_operation_loop10():
    net = MyParticleModule(CNN())
    for i in range(10):
        net = 0.5 * net + 10

particle_operation_loop10()
'''

CHAPTER_CODE_NYTO_MODULE = '''
import nytorch_ext as nyto
import torch.nn as nn
from nytorch_ext.particle_module import ParticleModule

CNN_COUNTER: int = 0

class CNN(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels = 1,
                                             out_channels = 16,
                                             kernel_size = 5,
                                             stride = 1,
                                             padding = 2),
                                   nn.ReLU(),
                                   nn.MaxPool2d(kernel_size = 2))
        self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 5, 1, 2),
                                   nn.ReLU(),
                                   nn.MaxPool2d(2))
        self.output_layer = nn.Linear(32*7*7, 10)

        self.init()

    def __del__(self):
        print(f"delete cnn={self.module_id}")

    def __add__(self, *args, **kwargs):
        new_cnn = super().__add__(*args, **kwargs)
        new_cnn.init()
        return new_cnn

    def __mul__(self, *args, **kwargs):
        new_cnn = super().__mul__(*args, **kwargs)
        new_cnn.init()
        return new_cnn

    def init(self):
        global CNN_COUNTER
        CNN_COUNTER += 1
        self.module_id = CNN_COUNTER
        print(f"init cnn={self.module_id}")

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x)
        x = x.view(x.size(0), -1)
        output = self.output_layer(x)
        return output, x

def particle_operation_loop10():
    net = CNN()
    for i in range(10):
        net = 0.5 * net + 10

particle_operation_loop10()
'''




def test_chapter_nyto_module_example_runs_and_frees_after_collection():
    """The chapter's "without ParticleModule" code (import changed): 21 particles, freed
    only by the cycle collector, as the chapter shows."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        with gc_disabled():
            exec(compile(CHAPTER_CODE_NYTO_MODULE, "<chapter, NytoModule>", "exec"), {"__name__": "chapter"})
            before_collect = out.getvalue().splitlines()
        gc.collect()
    assert before_collect == [f"init cnn={k}" for k in range(1, 22)]  # nothing freed without gc
    deleted = sorted(int(line.split("=")[1]) for line in out.getvalue().splitlines() if line.startswith("delete"))
    assert deleted == list(range(1, 22))


# The chapter's printed output "using ParticleModule", verbatim.
CHAPTER_OUTPUT = """
init cnn=1
init cnn=2
init cnn=3
delete cnn=2
delete cnn=1
init cnn=4
init cnn=5
delete cnn=4
delete cnn=3
init cnn=6
init cnn=7
delete cnn=6
delete cnn=5
init cnn=8
init cnn=9
delete cnn=8
delete cnn=7
init cnn=10
init cnn=11
delete cnn=10
delete cnn=9
init cnn=12
init cnn=13
delete cnn=12
delete cnn=11
init cnn=14
init cnn=15
delete cnn=14
delete cnn=13
init cnn=16
init cnn=17
delete cnn=16
delete cnn=15
init cnn=18
init cnn=19
delete cnn=18
delete cnn=17
init cnn=20
init cnn=21
delete cnn=20
delete cnn=19
delete cnn=21
""".splitlines()[1:]


def test_chapter_my_particle_module_example_runs_and_prints_the_chapter_output():
    out = io.StringIO()
    with gc_disabled(), contextlib.redirect_stdout(out):
        exec(compile(CHAPTER_CODE, "<particle-module chapter>", "exec"), {"__name__": "chapter"})
    assert out.getvalue().splitlines() == CHAPTER_OUTPUT


def test_memory_is_flat_over_10000_operations():
    torch.manual_seed(0)

    def tensor_count():
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, nn.Parameter))

    with gc_disabled():
        gc.collect()
        net = ParticleModule(Lin())
        tracemalloc.start()
        try:
            # warm up the buffer pool, caches and free lists: a fresh process grows
            # by a bounded ~48 KB over its first ~1000 operations, then stays flat
            for _ in range(2000):
                net = 0.5 * net + 10
            tensors_before = tensor_count()
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(5000):  # 10,000 particle operations
                net = 0.5 * net + 10
            end, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        tensors_after = tensor_count()
    assert end - start < 16 * 1024, f"grew by {end - start} bytes"
    assert tensors_after - tensors_before <= 2
    assert_values(net, {"root_module.weight": [20.0], "root_module.bias": [20.0]})


@pytest.mark.parametrize("expr, message", [
    ("a + None", "unsupported operand"), ("None + a", "unsupported operand"),
    ("a * None", "unsupported operand"), ("a.product() + None", "unsupported operand"),
    ("a.product() - None", "unsupported operand"),
    ("a.product_(a)", "use module.product()"), ("a.root_module_product_()", "use module.product()"),
])
def test_bad_operands_get_errors_that_say_what_is_wrong(expr, message):
    """D14: None was taken for 'no operand' ("missing 1 required positional argument")
    and product_(module) said "not method"."""
    a = nyto.ParticleModule(Lin())
    before = [p.detach().clone() for p in a.parameters()]
    env = {"a": a}
    if expr == "a.root_module_product_()":
        with nyto.GetNytoModule(a) as root:
            with pytest.raises((TypeError, AssertionError), match=message):
                root.product_(root)
    else:
        with pytest.raises((TypeError, AssertionError), match=message):
            eval(expr, env)
    assert all(torch.equal(p, b) for p, b in zip(a.parameters(), before))


def test_a_rejected_product_assignment_changes_nothing():
    """D10: product_ with a product of another structure raised after writing part
    of the parameters."""
    a = nyto.ParticleModule(MyModel())
    old = a.product() * 2  # the structure before the change below
    with nyto.GetNytoModule(a) as root:
        root.extra = nn.Parameter(torch.ones(3))
        root.layer2 = nn.Linear(12, 5)  # a replaced submodule: new shapes
    before = [p.detach().clone() for p in a.parameters()]
    with pytest.raises(ValueError, match="nothing was changed"):
        a.product_(old)
    assert all(torch.equal(p, b) for p, b in zip(a.parameters(), before))
