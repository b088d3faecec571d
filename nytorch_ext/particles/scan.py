"""Reading a particle's structure from its module tree.

:func:`walk` visits the tree in pre-order, each module's parameters and children
interleaved in the order they were assigned (nytorch numbers parameters by
registration), keeping the ids it knows and giving new modules and parameters new
ids from the species' counters. The ``removed_*`` and :func:`buffer_changes`
functions compare what it found with the last scan.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from torch import Tensor, nn

from .mtype import ROOT_MODULE_ID
from .species import Change, Species


@dataclass
class TreeScan:
    """What one walk of a module tree found (by id, in pre-order)."""
    change: Change                      # its added_modules and added_params
    modules: dict[int, nn.Module] = field(default_factory=dict)
    params: dict[int, nn.Parameter] = field(default_factory=dict)
    buffers: dict[tuple[int, str], Tensor | None] = field(default_factory=dict)  # (mid, name) -> buffer
    # every placement of a parameter: (parameter dicts, names, Parameters), parallel lists
    places: tuple[list, list, list] = field(default_factory=lambda: ([], [], []))
    param_places: dict[int, tuple[int, str]] = field(default_factory=dict)   # pid -> first placement
    module_places: dict[int, tuple[int, str]] = field(default_factory=dict)  # mid -> (parent mid, name)


def walk(root: nn.Module, kernel: Any, species: Species, mid_of: dict, pid_of: dict) -> TreeScan:
    """Scan the tree under ``root`` for ``kernel`` (whose NytoModules are pointed at
    it); ``mid_of`` / ``pid_of`` map ``id(object)`` to the ids known so far (new ones
    are added)."""
    found = TreeScan(Change())
    seen_params: set = set()
    seen_modules: set = {id(root)}
    _enter(found, root, kernel, ROOT_MODULE_ID)
    # An explicit stack of iterators, not a recursive closure: a closure that refers
    # to itself is a reference cycle, keeping the kernel alive until gc.collect().
    stack = [(ROOT_MODULE_ID, _members_in_order(root))]
    while stack:
        mid, members = stack[-1]
        item = next(members, None)
        if item is None:
            stack.pop()
            continue
        owner, name, value = item
        if isinstance(value, nn.Parameter) or name in owner._parameters:
            _place_param(found, owner, mid, name, value, seen_params, pid_of, species)
        elif id(value) not in seen_modules:  # a shared module has one id
            seen_modules.add(id(value))
            cmid = _id_for(value, mid_of, species, "next_mid", found.change.added_modules, mid, name)
            found.module_places[cmid] = (mid, name)
            _enter(found, value, kernel, cmid)
            stack.append((cmid, _members_in_order(value)))
    return found


def _enter(found: TreeScan, module: nn.Module, kernel: Any, mid: int) -> None:
    attach(module, kernel, mid)
    found.modules[mid] = module
    found.buffers.update(((mid, n), b) for n, b in module._buffers.items())


def _place_param(found: TreeScan, owner: nn.Module, mid: int, name: str, value, seen: set, pid_of: dict,
                 species: Species) -> None:
    found.places[0].append(owner._parameters)
    found.places[1].append(name)
    found.places[2].append(value)
    if id(value) in seen:  # tied: one id
        return
    seen.add(id(value))
    pid = _id_for(value, pid_of, species, "next_pid", found.change.added_params, mid, name)
    found.params[pid] = value
    found.param_places[pid] = (mid, name)


def removed_modules(old: dict, old_places: dict, found: TreeScan) -> list:
    """(mid, parent mid, name, set to None?) of the modules of ``old`` not found."""
    out = []
    for mid in old:
        if mid not in found.modules:
            parent_mid, name = old_places.get(mid, (None, None))
            out.append((mid, parent_mid, name, _set_to_none(found.modules, parent_mid, "_modules", name)))
    return out


def removed_params(old: dict, old_places: dict, found: TreeScan) -> list:
    """(pid, mid, name, set to None?) of the parameters of ``old`` not found."""
    out = []
    for pid in old:
        if pid not in found.params:
            mid, name = old_places.get(pid, (None, None))
            out.append((pid, mid, name, _set_to_none(found.modules, mid, "_parameters", name)))
    return out


def _set_to_none(modules: dict, owner_mid, table: str, name) -> bool:
    """``x.name = None`` (the name stays registered), not ``del x.name``."""
    owner = modules.get(owner_mid)
    return owner is not None and name in getattr(owner, table) and getattr(owner, table)[name] is None


def buffer_changes(old: dict, found: TreeScan) -> list:
    """(mid, name, tensor or None, persistent, removed) for every buffer set, replaced
    or removed since ``old`` ((mid, name) -> buffer, as ``TreeScan.buffers``)."""
    out = []
    for key, b in found.buffers.items():
        if old.get(key, _MISSING) is not b:
            mid, name = key
            persistent = name not in found.modules[mid]._non_persistent_buffers_set
            out.append((mid, name, b, persistent, False))
    for key in old:
        if key not in found.buffers and key[0] in found.modules:
            out.append((key[0], key[1], None, True, True))
    return out


_MISSING = object()


def _id_for(value, ids: dict, species: Species, counter: str, added: list, parent_mid: int, name: str) -> int:
    """The id ``ids`` knows for ``value`` (by object identity), or a new one from the
    species' ``counter`` ("next_pid" / "next_mid"), recording (id, parent module id,
    name, value) in ``added``."""
    known = ids.get(id(value))
    if known is not None:
        return known
    new = getattr(species, counter)
    setattr(species, counter, new + 1)
    ids[id(value)] = new
    added.append((new, parent_mid, name, value))
    return new


def _members_in_order(module: nn.Module) -> Iterator[tuple[nn.Module, str, Any]]:
    """(module, name, parameter or child) in assignment order where a NytoModule
    recorded it, else parameters before children (nn.Module keeps them apart)."""
    params, children = module._parameters, module._modules
    order = module.__dict__.get("_nyto_order", ())
    names = [n for n in order if n in params or n in children]
    listed = set(names)
    names += [n for n in params if n not in listed] + [n for n in children if n not in listed]
    for name in names:
        value = params[name] if name in params else children.get(name)
        if value is not None:
            yield module, name, value


def attach(module: nn.Module, kernel: Any, mid: int, keep_cleared: bool = True) -> None:
    """Point a NytoModule (root or submodule) at its particle's kernel (unless a
    ParticleModule cleared that reference and ``keep_cleared``) and its change cell."""
    if getattr(type(module), "_is_nyto_module", False):
        d = module.__dict__
        if not (keep_cleared and "_particle_kernel" in d and d["_particle_kernel"] is None):
            d["_particle_kernel"] = kernel
        d["_module_id"] = mid
        d["_nyto_cell"] = kernel.cell
