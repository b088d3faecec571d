"""Placement checks: are a particle's parameters still where it put them?

Before every operation a particle checks that its parameters are still views of its
flat buffers (``.to()``, ``.half()``, ``param.data = ...`` replace them) and still in
their modules' tables, in one C call each when the extension is loaded; the Python
versions here have the same contracts.
"""
from __future__ import annotations

import operator

import torch

from ..ops._extension import native
from ..ops.validation import address


def _python_views_in_place(params: list, addresses: list, shapes: list) -> bool:
    return (list(map(address, params)) == addresses
            and [p.shape for p in params] == shapes
            and all(map(torch.Tensor.is_contiguous, params)))


def _python_entries_are(dicts: list, names: list, values: list) -> bool:
    return all(map(operator.is_, map(dict.get, dicts, names), values))


def _python_attributes_are(objects: list, name: str, values: list) -> bool:
    return all(map(operator.is_, map(operator.attrgetter(name), objects), values))


# views_in_place(params, addresses, shapes): each parameter is contiguous, has its
# shape (a torch.Size) and its data at its address (ignored for empty ones).
views_in_place = native("views_in_place", _python_views_in_place)
# entries_are(dicts, names, values): dicts[i].get(names[i]) is values[i] for every i
# (a parameter still in its place).
entries_are = native("entries_are", _python_entries_are)
# attributes_are(objects, name, values): getattr(objects[i], name) is values[i] for
# every i (a swarm member still holds the storage and table it was checked with).
attributes_are = native("attributes_are", _python_attributes_are)
