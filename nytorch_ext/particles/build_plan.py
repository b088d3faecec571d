"""The build plan: how to copy a particle's module tree into a new particle.

A new particle (``product.module()``) is a shallow copy of every module of its
species' tree, whose parameters are views of the product's buffers. What to copy
is the same for every member at one structural version, so it is computed once
per version (:func:`plan_of`) as a :class:`BuildPlan`, and
:func:`copy_module_tree` (in C when the extension is loaded) follows it.
"""
from __future__ import annotations

from itertools import repeat
from typing import NamedTuple, Sequence

from torch import nn

from ..ops._extension import native


class BuildPlan(NamedTuple):
    """One entry per module of the tree, in pre-order (the arguments of
    ``copy_module_tree`` after the source modules, in its order)."""
    mids: list[int]
    param_names: list[tuple[str, ...]]   # each module's parameter names ...
    param_index: list[tuple[int, ...]]   # ... and their positions in pid order
    child_names: list[tuple[str, ...]]   # each module's child names ...
    child_index: list[tuple[int, ...]]   # ... and their positions in ``mids``
    nyto_ids: list[int | None]           # the module id of a NytoModule, else None


def plan_of(modules: dict[int, nn.Module], params: dict[int, nn.Parameter]) -> BuildPlan:
    """The plan for the tree ``modules`` (by mid, pre-order) whose parameters are
    ``params`` (by pid, in order)."""
    pid_pos = {id(p): i for i, p in enumerate(params.values())}
    mid_pos = {id(m): i for i, m in enumerate(modules.values())}
    plan = BuildPlan(list(modules), [], [], [], [], [])
    for mid, module in modules.items():
        placed = [(n, pid_pos[id(p)]) for n, p in module._parameters.items() if p is not None and id(p) in pid_pos]
        children = [(n, mid_pos[id(c)]) for n, c in module._modules.items() if c is not None and id(c) in mid_pos]
        plan.param_names.append(tuple(n for n, _ in placed))
        plan.param_index.append(tuple(i for _, i in placed))
        plan.child_names.append(tuple(n for n, _ in children))
        plan.child_index.append(tuple(i for _, i in children))
        plan.nyto_ids.append(mid if getattr(type(module), "_is_nyto_module", False) else None)
    return plan


def shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object sharing everything (hooks, buffers, attributes) with
    ``module``, with its own parameter, buffer and child dictionaries (as nytorch).
    (copy.copy does the same through __reduce_ex__, several times slower.)"""
    new = object.__new__(type(module))
    d = new.__dict__
    d.update(module.__dict__)
    d["_parameters"] = dict(module._parameters)
    d["_buffers"] = dict(module._buffers)
    d["_modules"] = dict(module._modules)
    return new


def python_copy_module_tree(sources: Sequence[nn.Module], param_names, param_index, child_names, child_index,
                            params: Sequence[nn.Parameter], nyto_ids, kernel, cell) -> tuple:
    """The fallback of ``_C.copy_module_tree`` (csrc/module_tree.cpp): a
    ``shallow_copy`` of each source whose parameters and children are the new
    ones; returns (modules, (parameter dicts, names, Parameters)), the last three
    one entry per placement."""
    copies = list(map(shallow_copy, sources))  # every object first: children come later in pre-order
    places: tuple[list, list, list] = ([], [], [])
    for i, new in enumerate(copies):
        d = new.__dict__
        if param_names[i]:
            placed = list(map(params.__getitem__, param_index[i]))
            d["_parameters"].update(zip(param_names[i], placed))
            places[0].extend(repeat(d["_parameters"], len(placed)))
            places[1].extend(param_names[i])
            places[2].extend(placed)
        if child_names[i]:
            d["_modules"].update(zip(child_names[i], map(copies.__getitem__, child_index[i])))
        if nyto_ids[i] is not None:  # a new particle: live kernel reference
            d["_particle_kernel"], d["_module_id"], d["_nyto_cell"] = kernel, nyto_ids[i], cell
    return copies, places


# copy_module_tree(sources, *plan[1:], params, kernel, cell): most of the cost of a
# new particle of many small tensors, so it is made in C when the extension is loaded.
copy_module_tree = native("copy_module_tree", python_copy_module_tree)
