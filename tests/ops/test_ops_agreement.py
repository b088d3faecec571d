"""The C++ checks (csrc/checks.cpp, csrc/ops.cpp) and their Python mirror
(nytorch_ext/ops/validation.py) agree: every op of the registry, called directly
(below the public functions), on the same bad inputs, is rejected by the compiled
op, by the pure-PyTorch fallback and by the fake implementation (what
torch.compile traces with) alike: the same error class, a message naming the same
argument first, and no input written. Inputs that one accepts, all accept.

The bad inputs are derived from one valid call per op (``EXAMPLES``) by a table
of mutations applied to every argument: each tensor (wrong dtype, another float
dtype, non-contiguous, another shape, on another device, requiring grad under
grad mode), each pair of tensors (a partial overlap, the same tensor twice), each
scalar (beyond float32's range, Inf, NaN) and each list (one entry fewer, empty).
"""
from __future__ import annotations

import inspect
import re
from typing import Callable

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from nytorch_ext import ops
from nytorch_ext.ops import registry
from reference import assert_unchanged, make, require_compiled, snapshot

N = 8
_seed = iter(range(10**6))


def t(n: int = N, dtype=torch.float32) -> torch.Tensor:
    return make(n, dtype, seed=next(_seed))


def ts(k: int = 2) -> list[torch.Tensor]:
    return [t() for _ in range(k)]


# One or more valid calls per op: () -> (args, kwargs). Every op of the registry
# with a fallback needs one (test_every_op_has_an_example).
EXAMPLES: dict[str, list[Callable[[], tuple[list, dict]]]] = {
    "axpby": [lambda: ([0.5, t(), 2.0, t()], {})],
    "axpby_out": [lambda: ([0.5, t(), 2.0, t()], {"out": t()})],
    "blend": [lambda: ([t(), t(), 0.25], {})],
    "blend_out": [lambda: ([t(), t(), 0.75], {"out": t()})],
    "lincomb": [lambda: ([[1.0, -2.0, 0.5], ts(3), 0.25], {})],
    "lincomb_out": [lambda: ([[1.0, -2.0, 0.5], ts(3), 0.25], {"out": t()})],
    "multi_axpby_": [lambda: ([ts(), 0.5, ts(), 2.0, ts()], {})],
    "multi_blend_": [lambda: ([ts(), ts(), [0.25, 0.5]], {}),
                     lambda: ([ts(), [t()], [0.25]], {}),  # a shared source
                     lambda: ([[t()], [t()], [0.25], True], {})],  # shared, one target
    "blend_noise_": [lambda: ([t(), t(), 0.25, 0.5, 1, 2], {})],
    "multi_blend_noise_": [lambda: ([ts(), ts(), [0.25, 0.5], 0.5, 1, [0, 1]], {}),
                           lambda: ([[t()], [t()], [0.25], 0.5, 1, [3], True], {})],
    "multi_scale_": [lambda: ([ts(), [0.5, -2.0]], {}),
                     lambda: ([ts(3), [0.25]], {})],  # one scale shared by every target
}


# ------------------------------------------------------------------ mutations
# A path names one argument: (where, key) or (where, key, index into its list),
# where is "args" or "kwargs".

def _container(call, path):
    args, kwargs = call
    return args if path[0] == "args" else kwargs


def _get(call, path):
    value = _container(call, path)[path[1]]
    return value[path[2]] if len(path) > 2 else value


def _set(call, path, value) -> None:
    if len(path) > 2:
        _container(call, path)[path[1]][path[2]] = value
    else:
        _container(call, path)[path[1]] = value


def _noncontiguous():
    base = t(2 * N)
    return base[::2]


TENSOR_MUTATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "int32": lambda x: torch.zeros(N, dtype=torch.int32),
    "float64": lambda x: t(dtype=torch.float64),
    "noncontiguous": lambda x: _noncontiguous(),
    "longer": lambda x: t(N + 1),
    "2-d": lambda x: t().view(2, N // 2),
    "meta": lambda x: torch.empty(N, device="meta"),
    "requires-grad": lambda x: t().requires_grad_(),
}

SCALAR_MUTATIONS = {"beyond-float32": 1e39, "inf": float("inf"), "nan": float("nan")}


def _overlapping(call, first, second) -> None:
    buf = t(N + 1)
    _set(call, first, buf[:-1])
    _set(call, second, buf[1:])


def _paths(call):
    """(path, kind) of every argument: "tensor", "scalar" or "list"."""
    args, kwargs = call
    for where, items in (("args", list(enumerate(args))), ("kwargs", list(kwargs.items()))):
        for key, value in items:
            if isinstance(value, torch.Tensor):
                yield (where, key), "tensor"
            elif isinstance(value, float):
                yield (where, key), "scalar"
            elif isinstance(value, list):
                yield (where, key), "list"
                for j, v in enumerate(value):
                    if isinstance(v, torch.Tensor):
                        yield (where, key, j), "tensor"
                    elif isinstance(v, float):
                        yield (where, key, j), "scalar"


def _name(op: registry.Op, path) -> str:
    key = path[1]
    name = list(inspect.signature(op.fallback).parameters)[key] if path[0] == "args" else key
    return name if len(path) == 2 else f"{name}[{path[2]}]"


def _cases():
    cases = []
    for op in registry.OPS:
        for k, example in enumerate(EXAMPLES.get(op.name, [])):
            paths = list(_paths(example()))
            tensors = [p for p, kind in paths if kind == "tensor"]
            mutations = []
            for path, kind in paths:
                name = _name(op, path)
                if kind == "tensor":
                    for m, fn in TENSOR_MUTATIONS.items():
                        mutations.append((f"{name}-{m}", lambda c, p=path, fn=fn: _set(c, p, fn(_get(c, p)))))
                elif kind == "scalar":
                    for m, value in SCALAR_MUTATIONS.items():
                        mutations.append((f"{name}-{m}", lambda c, p=path, v=value: _set(c, p, v)))
                else:
                    mutations.append((f"{name}-one-fewer", lambda c, p=path: _get(c, p).pop()))
                    # With no tensor left the dispatcher cannot pick a kernel and refuses the
                    # call itself (NotImplementedError) before any rule of ours runs; the
                    # public functions never make such a call (an empty list is a no-op).
                    if any(tuple(p[:2]) != tuple(path[:2]) for p in tensors):
                        mutations.append((f"{name}-empty", lambda c, p=path: _get(c, p).clear()))
            for i, first in enumerate(tensors):
                for second in tensors[i + 1:]:
                    pair = f"{_name(op, first)}-{_name(op, second)}"
                    mutations.append((f"{pair}-partial-overlap",
                                      lambda c, a=first, b=second: _overlapping(c, a, b)))
                    mutations.append((f"{pair}-same-tensor",
                                      lambda c, a=first, b=second: _set(c, b, _get(c, a))))
            for label, mutate in mutations:
                cases.append(pytest.param(op, example, mutate, id=f"{op.name}#{k}-{label}"))
    return cases


# ------------------------------------------------------------------- outcomes

def _tensors(call) -> list[torch.Tensor]:
    args, kwargs = call
    found = []
    for value in [*args, *kwargs.values()]:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, torch.Tensor):
                found += [v] + ([v._base] if v._base is not None else [])
    return found


def _leading_argument(message: str) -> str:
    match = re.match(r"\s*([A-Za-z_]\w*(?:\[\d+\])?)", message)
    return match.group(1) if match else message


def _outcome(fn, call, data: bool = True):
    """None when ``fn`` accepts the call, else (error class, the argument its
    message names first); a rejected call must leave every tensor untouched
    (checked when the tensors have ``data``)."""
    args, kwargs = call
    before = snapshot(_tensors(call)) if data else []
    try:
        fn(*args, **kwargs)
    except (TypeError, ValueError, RuntimeError) as error:
        assert_unchanged(before)
        return type(error).__name__, _leading_argument(str(error))
    return None


def _faked(call, mode: FakeTensorMode):
    """The call with every tensor made fake, views of one buffer still sharing its
    storage (as torch.compile traces them)."""
    def fake(v):
        return mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
    args, kwargs = call
    return ([[fake(v) for v in a] if isinstance(a, list) else fake(a) for a in args],
            {k: fake(v) for k, v in kwargs.items()})


def _fake_outcome(compiled, call):
    mode = FakeTensorMode()
    faked = _faked(call, mode)
    with mode:
        return _outcome(compiled, faked, data=False)


def _build(example, mutate):
    call = example()
    mutate(call)
    return call


needs_compiled = pytest.mark.skipif(not ops.is_compiled() and not require_compiled(),
                                    reason="compares the compiled ops with the fallback")


@needs_compiled
@pytest.mark.parametrize("op, example, mutate", _cases())
def test_compiled_fallback_and_fake_agree(op, example, mutate):
    assert ops.is_compiled(), "NYTORCH_EXT_REQUIRE_COMPILED is set but the compiled kernels are not loaded"
    compiled = getattr(torch.ops.nytorch_ext, op.name).default
    expected = _outcome(compiled, _build(example, mutate))
    assert _outcome(op.python_impl, _build(example, mutate)) == expected, "the fallback disagrees"
    assert _fake_outcome(compiled, _build(example, mutate)) == expected, "the fake disagrees"


def test_every_op_has_an_example():
    assert set(EXAMPLES) == {op.name for op in registry.OPS if op.fallback is not None}
    for op in registry.OPS:  # and the examples are valid calls
        for example in EXAMPLES.get(op.name, []):
            assert _outcome(op.python_impl, example()) is None, op.name
