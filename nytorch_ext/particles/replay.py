"""Replaying another particle's structural change on this particle's module tree.

A replaced parameter or module is re-added under the same name, which keeps its
position; a removed one is deleted, or set to None. Added modules are shallow
copies of the source with cloned parameters; added parameters are clones.
"""
from __future__ import annotations

import torch
from torch import nn

from .build_plan import shallow_copy
from .species import Change


def replay(change: Change, modules: dict[int, nn.Module], params: dict[int, nn.Parameter]) -> None:
    """Apply ``change`` to the tree ``modules`` (by mid; new modules are added),
    recording added parameters in ``params`` under the ids they had on the particle
    that made the change."""
    with torch.no_grad():
        _remove(change.removed_modules, change.added_modules, modules, "_modules")
        _add_modules(change, modules)
        _remove(change.removed_params, change.added_params, modules, "_parameters")
        _add_params(change, modules, params)
        _replay_buffers(change, modules)


def _remove(removed: list, added: list, modules: dict, table: str) -> None:
    """Delete (or set to None) the entries of ``removed`` ((id, owner mid, name, set
    to None?), in the owners' ``table``) that ``added`` does not re-add."""
    readded = {(owner_mid, name) for _, owner_mid, name, _ in added}
    for _, owner_mid, name, as_none in removed:
        owner = modules.get(owner_mid)
        if owner is None or (owner_mid, name) in readded:
            continue
        entries = getattr(owner, table)
        if name not in entries:
            continue
        if as_none:
            entries[name] = None
        else:
            del entries[name]


def _add_modules(change: Change, modules: dict) -> None:
    for mid, parent_mid, name, source in change.added_modules:
        parent = modules.get(parent_mid)
        if parent is None:
            continue
        new = shallow_copy(source)
        for pname, p in new._parameters.items():
            if p is not None:
                new._parameters[pname] = nn.Parameter(p.detach().clone(), p.requires_grad)
        clear_name(parent, name, "_modules")
        parent._modules[name] = new
        modules[mid] = new


def _add_params(change: Change, modules: dict, params: dict) -> None:
    added_mids = {m for m, *_ in change.added_modules}
    for pid, mid, name, source in change.added_params:
        module = modules.get(mid)
        if module is None:
            continue
        if mid not in added_mids:  # an added module brought its (cloned) params
            clear_name(module, name, "_parameters")
            module._parameters[name] = nn.Parameter(source.detach().clone(), source.requires_grad)
        # the same ids as on the particle that made the change, for the re-scan
        params[pid] = module._parameters[name]


def _replay_buffers(change: Change, modules: dict) -> None:
    for mid, name, tensor, persistent, removed in change.buffers:
        module = modules.get(mid)
        if module is None:
            continue
        if removed:
            module._buffers.pop(name, None)
            continue
        clear_name(module, name, "_buffers")
        module._buffers[name] = tensor
        if not persistent:
            module._non_persistent_buffers_set.add(name)


def clear_name(module: nn.Module, name: str, kind: str) -> None:
    """Before registering ``name`` in the table ``kind``: drop what it was in the
    other tables or as a plain attribute, as ``nn.Module.__setattr__`` does (an
    entry of the same kind is replaced where it is, keeping its position)."""
    module.__dict__.pop(name, None)
    for table in ("_parameters", "_buffers", "_modules"):
        if table != kind:
            getattr(module, table).pop(name, None)
    if kind != "_buffers":
        module._non_persistent_buffers_set.discard(name)
