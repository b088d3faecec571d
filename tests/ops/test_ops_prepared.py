"""The ops' call path: the public functions call the registered ops' builtins
directly (no OpOverload.__call__ frame) outside traced code, the tests' backend
swap reaches that path too, and ``ops.prepared`` runs the list ops on arguments
already in the op's form, with every check of the op itself."""
import pytest
import torch

from nytorch_ext import ops
from reference import make

requires_compiled = pytest.mark.skipif(not ops.is_compiled(), reason="compiled kernels not loaded")


@requires_compiled
def test_public_functions_skip_the_overload_frame(monkeypatch):
    calls = []
    real = torch._ops.OpOverload.__call__
    monkeypatch.setattr(torch._ops.OpOverload, "__call__", lambda self, *a, **k: calls.append(self) or real(self, *a, **k))
    x, y = make(100, torch.float32, seed=1), make(100, torch.float32, seed=2)
    ops.blend_(x, y, 0.3), ops.axpby_(1.0, x, 0.1, y), ops.blend(x, y, 0.5), ops.multi_blend_([x], y, 0.2)
    ops.multi_axpby_([x], 1.0, [x], 0.5, [y]), ops.lincomb_([1.0, 0.5], [x, y])
    assert calls == []


def test_the_direct_path_follows_the_backend(backend, monkeypatch):
    """A swapped implementation (the fallback, a spy) is what the public functions call."""
    seen = []
    real = ops._impl.blend_out
    monkeypatch.setattr(ops._impl, "blend_out", lambda *a, **k: seen.append(1) or real(*a, **k))
    x, y = make(10, torch.float32, seed=1), make(10, torch.float32, seed=2)
    ops.blend_(x, y, 0.25)
    assert seen == [1]
    monkeypatch.setattr(ops._impl, "blend_out", real)
    assert ops._direct.blend_out is ops._bound(real)


def test_prepared_multi_blend_equals_the_public_function(backend):
    targets = [make(n, torch.float32, seed=n) for n in (5, 100, 1000)]
    src = [make(n, torch.float32, seed=7) for n in (5, 100, 1000)]
    want = [t.clone() for t in targets]
    ops.multi_blend_(want, src, [0.1, 0.5, 0.9])
    ops.prepared.multi_blend_(targets, src, [0.1, 0.5, 0.9])
    for g, w in zip(targets, want):
        assert torch.equal(g, w)
    shared = make(64, torch.float64, seed=3)
    one, one_want = make(64, torch.float64, seed=4), None
    one_want = one.clone()
    ops.multi_blend_([one_want], shared, 0.3)
    ops.prepared.multi_blend_([one], [shared], [0.3], True)
    assert torch.equal(one, one_want)


def test_prepared_multi_blend_noise_equals_the_public_function(backend):
    targets = [make(300, torch.float32, seed=s) for s in (1, 2)]
    best = make(300, torch.float32, seed=9)
    want = [t.clone() for t in targets]
    ops.multi_blend_noise_(want, best, [0.3, 0.6], 0.5, seed=2 ** 64 - 5, streams=[3, 4])
    ops.prepared.multi_blend_noise_(targets, [best], [0.3, 0.6], 0.5, -5, [3, 4], True)
    for g, w in zip(targets, want):
        assert torch.equal(g, w)


@pytest.mark.parametrize("bad", ["dtype", "shape", "overlap", "count"])
def test_prepared_calls_keep_the_ops_checks(backend, bad):
    """A call that breaks the prepared form's rules raises and writes nothing."""
    targets = [make(50, torch.float32, seed=1), make(50, torch.float32, seed=2)]
    src = [make(50, torch.float32, seed=3)]
    alphas = [0.5, 0.5]
    if bad == "dtype":
        targets[1] = targets[1].double()
    elif bad == "shape":
        src = [make(49, torch.float32, seed=3)]
    elif bad == "overlap":
        src = [targets[0]]
    else:
        alphas = [0.5, 0.5, 0.5]
    before = [t.clone() for t in targets]
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        ops.prepared.multi_blend_(targets, src, alphas, bad == "overlap")
    for t, b in zip(targets, before):
        assert torch.equal(t, b)


@requires_compiled
def test_traced_code_still_calls_the_overloads():
    def f(x, y):
        ops.blend_(x, y, 0.5)
        ops.prepared.multi_blend_([x], [y], [0.5], True)
        return x + 1
    x, y = make(16, torch.float32, seed=1), make(16, torch.float32, seed=2)
    x2 = x.clone()
    got = torch.compile(f, fullgraph=True, backend="eager")(x, y)
    want = f(x2, y)
    assert torch.equal(got, want) and torch.equal(x, x2)
