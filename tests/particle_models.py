"""Model definitions and helpers shared by the particle-API tests
(test_module, test_product, test_kernel, test_particle_module, test_nytorch_compat).

Every model class is built by a factory taking the library module (``nytorch_ext`` or
``nytorch``) so the differential tests can define the *same* model twice.
"""
from __future__ import annotations

import contextlib
import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nytorch_ext as nyto


def model_classes(lib) -> dict:
    """The test models, subclassing ``lib.NytoModule``."""

    class Lin(lib.NytoModule):
        """weight=[2.], bias=[1.] (the behaviour spec's ``Lin``; the intro's NytoLinear)."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.tensor([2.0]))
            self.bias = nn.Parameter(torch.tensor([1.0]))

        def forward(self, x):
            return self.weight * x + self.bias

    class Inner(lib.NytoModule):
        def __init__(self, n: int = 3) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.linspace(-1.0, 1.0, n))
            self.bias = nn.Parameter(torch.full((n,), 0.5))

        def forward(self, x):
            return x * self.weight + self.bias

    class Outer(lib.NytoModule):
        """p=[100.], inner=Inner (a NytoModule child)."""

        def __init__(self) -> None:
            super().__init__()
            self.p = nn.Parameter(torch.tensor([100.0]))
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x) * self.p

    class Net(lib.NytoModule):
        """fc=Linear(2,2), bn=BatchNorm1d(2), scale=[3.] (registered in that order)."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.bn = nn.BatchNorm1d(2)
            self.scale = nn.Parameter(torch.tensor([3.0]))

        def forward(self, x):
            return self.bn(self.fc(x)) * self.scale

    class Mixed(lib.NytoModule):
        """float32 Linear plus one float64 parameter: two (dtype, device) groups."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.d = nn.Parameter(torch.linspace(0.5, 2.0, 4, dtype=torch.float64))

        def forward(self, x):
            return self.fc(x).double().sum(-1, keepdim=True) * self.d

    class Big(lib.NytoModule):
        """Conv2d, BatchNorm2d, Linear, a NytoModule child, a frozen parameter."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)
            self.fc = nn.Linear(8, 3)
            self.inner = Inner(3)
            self.frozen = nn.Parameter(torch.tensor([0.25, -0.5]), requires_grad=False)
            self.scale = nn.Parameter(torch.tensor([1.5]))

        def forward(self, x):  # x: (N, 1, 4, 4)
            h = F.relu(self.bn(self.conv(x))).flatten(1)
            return self.inner(self.fc(h)) * self.scale + self.frozen.sum()

    class F64(lib.NytoModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3, dtype=torch.float64)
            self.inner = Inner(3).double()
            self.scale = nn.Parameter(torch.tensor([0.75], dtype=torch.float64))

        def forward(self, x):
            return self.inner(self.fc(x)) * self.scale

    class MyModel(lib.NytoModule):
        """The seed chapters' MyModel."""

        def __init__(self, in_feat: int = 4, h_size: int = 12, out_feat: int = 3):
            super().__init__()
            self.layer1 = nn.Linear(in_feat, h_size)
            self.layer2 = nn.Linear(h_size, out_feat)

        def forward(self, inpts):
            h_out = F.relu(self.layer1(inpts))
            return self.layer2(h_out)

    return dict(Lin=Lin, Inner=Inner, Outer=Outer, Net=Net, Mixed=Mixed, Big=Big, F64=F64,
                MyModel=MyModel)


_EXT = model_classes(nyto)
Lin = _EXT["Lin"]
Inner = _EXT["Inner"]
Outer = _EXT["Outer"]
Net = _EXT["Net"]
Mixed = _EXT["Mixed"]
Big = _EXT["Big"]
F64 = _EXT["F64"]
MyModel = _EXT["MyModel"]


# ------------------------------------------------------------------------ helpers

def values(module: nn.Module) -> dict:
    """name -> detached copy of each parameter."""
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def as_lists(module: nn.Module) -> dict:
    return {n: p.detach().tolist() for n, p in module.named_parameters()}


def assert_values(module: nn.Module, expected: dict) -> None:
    """Exact comparison of every parameter with ``expected`` (name -> tensor/list)."""
    got = dict(module.named_parameters())
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for name, want in expected.items():
        want = torch.as_tensor(want, dtype=got[name].dtype)
        torch.testing.assert_close(got[name].detach(), want, rtol=0, atol=0, msg=name)


def assert_same_values(a: dict, b: dict, **tol) -> None:
    assert set(a) == set(b)
    tol = tol or dict(rtol=0, atol=0)
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name, **tol)


def species(m):
    """The species object of a NytoModule or ParticleModule (ours)."""
    if isinstance(m, nyto.ParticleModule):
        return m.particle_kernel.species
    return m._particle_kernel.species


def storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def inside(t: torch.Tensor, buf: torch.Tensor) -> bool:
    """``t``'s data lies inside the flat buffer ``buf`` (a view of it)."""
    start = buf.data_ptr()
    end = start + buf.numel() * buf.element_size()
    return (storage_ptr(t) == storage_ptr(buf) and start <= t.data_ptr()
            and t.data_ptr() + t.numel() * t.element_size() <= end)


@contextlib.contextmanager
def gc_disabled():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def mixed_params() -> list:
    """(pid, tensor) pairs over three dtypes, with an empty tensor and ids out of
    order: every case a flat layout handles."""
    g = torch.Generator().manual_seed(0)
    return [(0, torch.randn(3, 3, generator=g)), (1, torch.randn(5, generator=g)),
            (2, torch.randn(2, generator=g).double()), (3, torch.randn(1, generator=g)),
            (7, torch.randn(0, generator=g)), (4, torch.randn(2, 2, generator=g).half())]


def python_and_compiled(python_impl, compiled_name):
    """pytest params of a helper's two implementations: ``python_impl`` and the compiled
    ``_C.<compiled_name>`` (a tuple of names gives a tuple of functions), the latter
    skipped where the extension is not loaded."""
    from nytorch_ext.ops._extension import _C
    names = (compiled_name,) if isinstance(compiled_name, str) else tuple(compiled_name)
    compiled = tuple(getattr(_C, name, None) for name in names)
    loaded = pytest.mark.skipif(_C is None, reason="the compiled extension is not loaded")
    return [pytest.param(python_impl, id="python"),
            pytest.param(compiled[0] if isinstance(compiled_name, str) else compiled, id="compiled", marks=loaded)]
