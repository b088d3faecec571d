"""Building a swarm's members: from one model (``Swarm.spawn``), or by adopting
modules built independently (``Swarm.from_modules``).

A swarm's members must be particles of one species, and particles made from another
share its buffers (BatchNorm statistics), as nytorch's do. Members that stand for
independently built models ("default" and callable inits, adopted modules) get their
own buffers instead: :func:`own_buffers` copies them and records the copies as the
particle's own, so that they are not propagated to the species as a structural change.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from ..particles.arithmetic import whole_kernel
from ..particles.module import NytoModuleBase
from ..particles.mtype import ROOT_MODULE_ID, SpeciesError
from ..particles.particle_module import ParticleModule
from .arguments import pool_size
from .member_state import listed
from .members import member_kernel

PARTICLE_INITS = ("clone", "randn", "rand")  # the particle methods of the same names
INITS = ("default",) + PARTICLE_INITS


def user_module(module: nn.Module) -> nn.Module:
    """The user's model in ``module``: a ParticleModule's ``root_module``, else itself."""
    return module.root_module if isinstance(module, ParticleModule) else module


# ------------------------------------------------------------------ spawn


def spawn_members(model, size: int, init) -> list:
    """``model`` and ``size - 1`` new particles of its species made by ``init``
    (see ``Swarm.spawn``)."""
    member_kernel(model, "model")
    size = pool_size(size)
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, INITS))} or a callable, got {init!r}")
        if init in PARTICLE_INITS:
            make = getattr(type(model), init)
            return [model] + [make(model) for _ in range(size - 1)]
        return [model] + [_default_member(model) for _ in range(size - 1)]
    if not callable(init):
        raise TypeError(f"init must be a string or a callable, got {type(init).__name__}")
    if _takes_one_argument(init):
        warnings.warn("Swarm.spawn: init(model) -> particle is deprecated; pass init(module, index) -> None, "
                      "which initializes a new member's module in place", DeprecationWarning, stacklevel=3)
        return [model] + [init(model) for _ in range(size - 1)]
    members = [model]
    for index in range(1, size):
        member = model.clone()
        own_buffers(member)
        with torch.no_grad():
            init(user_module(member), index)
        members.append(member)
    return members


def _takes_one_argument(fn: Callable) -> bool:
    """Whether ``fn`` is the old one-argument form (it cannot take (module, index))."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: assume the new form
        return False
    try:
        signature.bind(None, 0)
        return False
    except TypeError:
        pass
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError("init must take (module, index)") from None
    return True


def _default_member(model):
    """A new particle of ``model``'s species initialized as a freshly constructed model."""
    member = model.clone()
    own_buffers(member)
    uncovered = reset_to_default(user_module(member))
    if uncovered:
        warnings.warn(f"Swarm.spawn(init='default'): no module's reset_parameters() covers the parameters "
                      f"{listed(uncovered)}; they are copies of model's", stacklevel=4)
    return member


def reset_to_default(module: nn.Module) -> list[str]:
    """Call every submodule's ``reset_parameters()`` (``_reset_parameters()`` where only
    that exists, as in ``nn.MultiheadAttention`` and ``nn.Transformer``), children
    before their parent, as their constructors run; returns the names of the
    parameters no such method covers."""
    covered: set[int] = set()
    with torch.no_grad():
        for m in _post_order(module):
            reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in m.parameters())
    return [n for n, p in module.named_parameters() if id(p) not in covered]


def _post_order(module: nn.Module) -> Iterator[nn.Module]:
    seen: set[int] = set()
    stack = [(module, iter(module.children()))]
    seen.add(id(module))
    while stack:
        m, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            yield m
        elif id(child) not in seen:
            seen.add(id(child))
            stack.append((child, iter(child.children())))


def own_buffers(particle) -> None:
    """Give ``particle`` (made from another particle, with which it shares its
    buffers) its own copies of them, recorded as its own: a re-scan of its tree,
    not logged for the species, so no other member takes them over."""
    kernel = whole_kernel(particle)
    root = kernel.modules[ROOT_MODULE_ID]
    for m in root.modules():
        for name, b in m._buffers.items():
            if b is not None:
                m._buffers[name] = b.clone()
    kernel.scan(root)


# ------------------------------------------------------------------ adopt


def adopt_modules(modules) -> list:
    """The members of ``Swarm.from_modules(modules)``: the first particle of ``modules``
    (the template), and one particle of its species for each other module."""
    if isinstance(modules, (nn.Module, Tensor, str)) or not hasattr(modules, "__iter__"):
        raise TypeError(f"modules must be a sequence of modules, got {type(modules).__name__}")
    modules = list(modules)
    if not modules:
        raise ValueError("modules is empty")
    for i, m in enumerate(modules):
        if not isinstance(m, nn.Module):
            raise TypeError(f"modules[{i}] must be an nn.Module, got {type(m).__name__}")
    kernels = [_kernel_or_none(m) for m in modules]
    t = next((i for i, k in enumerate(kernels) if k is not None), None)
    if t is None:
        raise TypeError("modules: at least one must be a particle (a ParticleModule or a root NytoModule), "
                        "whose species the swarm takes; wrap one, e.g. ParticleModule(MyNet()) with MyNet "
                        "a NytoModule subclass")
    reference = architecture(user_module(modules[t]))
    for i, m in enumerate(modules):
        difference = _difference(reference, architecture(user_module(m)), f"modules[{t}]")
        if difference:
            raise ValueError(f"modules[{i}] has another architecture than modules[{t}]: {difference}; "
                             f"nothing was built")
    template, species = modules[t], kernels[t].species
    kept = {id(kernels[t])}
    members = []
    for i, (m, k) in enumerate(zip(modules, kernels)):
        if k is not None and k.species is species and (i == t or id(k) not in kept):
            kept.add(id(k))  # a particle of the template's species joins as it is
            members.append(m)
            continue
        member = template.clone()
        own_buffers(member)
        _copy_values(user_module(m), user_module(member))
        members.append(member)
    return members


def _kernel_or_none(module: nn.Module):
    """The kernel of a whole particle, else None (a plain module, a submodule, or the
    root of a ParticleModule given without its wrapper)."""
    if not isinstance(module, (ParticleModule, NytoModuleBase)):
        return None
    try:
        return whole_kernel(module)
    except SpeciesError:
        return None


def architecture(module: nn.Module) -> dict[str, tuple[str, tuple, torch.dtype]]:
    """Name -> (kind, shape, dtype) of every parameter and buffer of ``module``."""
    out = {n: ("parameter", tuple(p.shape), p.dtype) for n, p in module.named_parameters()}
    out.update((n, ("buffer", tuple(b.shape), b.dtype)) for n, b in module.named_buffers())
    return out


def _difference(reference: dict, other: dict, name: str) -> str:
    """How ``other`` differs from ``reference`` (``name``'s), or "" when it does not."""
    missing = [n for n in reference if n not in other]
    unexpected = [n for n in other if n not in reference]
    parts = []
    if missing:
        parts.append(f"missing {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {listed(unexpected)}")
    for n, (kind, shape, dtype) in other.items():
        if n not in reference or parts:
            continue
        ref_kind, ref_shape, ref_dtype = reference[n]
        if kind != ref_kind:
            parts.append(f"'{n}' is a {kind}, {name}'s is a {ref_kind}")
        elif shape != ref_shape:
            parts.append(f"{kind} '{n}' has shape {shape}, {name}'s has {ref_shape}")
        elif dtype != ref_dtype:
            parts.append(f"{kind} '{n}' has dtype {dtype}, {name}'s has {ref_dtype}")
    return "; ".join(parts)


def _copy_values(source: nn.Module, target: nn.Module) -> None:
    """``source``'s parameter and buffer values into ``target``'s (same names and
    shapes), in place: the Parameters stay views of the target's flat storage."""
    values = dict(source.named_parameters())
    values.update(source.named_buffers())
    with torch.no_grad():
        for n, t in list(target.named_parameters()) + list(target.named_buffers()):
            t.copy_(values[n])
