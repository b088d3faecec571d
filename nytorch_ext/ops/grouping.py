"""Lists of tensors grouped by (device, dtype) up front, as torch.optim's
``_group_tensors_by_device_and_dtype`` does: the registered list ops take one
group per call, and the public list functions decide the groups before calling
(never by trying the whole list and catching its error).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ._extension import native

Groups = list[list[int]]


def _python_groups(tensors: Sequence[torch.Tensor]) -> Groups | None:
    """Indices grouped by (device, dtype) in order of first appearance, or None
    when the list is one group (or empty)."""
    groups: dict = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return list(groups.values()) if len(groups) > 1 else None


# The same contract in one C pass: the common single-group call is decided without a
# Python loop (benchmarks/fused_vs_eager.py's apso workload measures the difference).
_native_groups = native("tensor_groups", _python_groups)


def device_dtype_groups(tensors: list[torch.Tensor], traced: bool | None = None) -> Groups | None:
    """The (device, dtype) groups of ``tensors`` (a list of tensors), or None
    when it is one group. Traced code decides it in Python, at trace time
    (``traced``: whether this is traced code, when the caller knows already)."""
    if torch.compiler.is_compiling() if traced is None else traced:
        return _python_groups(tensors)
    return _native_groups(tensors)


def pick(values: list, idx: list[int]) -> list:
    """The entries of a per-index list at ``idx``; a one-entry (shared) list as is."""
    return values if len(values) == 1 else [values[i] for i in idx]
