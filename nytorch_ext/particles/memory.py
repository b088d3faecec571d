"""Reading and sharing buffer memory without disturbing copy-on-write.

Lazy products read copy-on-write snapshots of a particle's buffers
(``torch._lazy_clone``); ``data_ptr()`` would materialize such a snapshot, so
addresses are read with ``torch._C._data_address`` where torch has it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from ..ops.validation import address

# The address of a tensor's data without materializing a copy-on-write snapshot
# (None on a torch without it: then memory is never taken to be shared).
data_address: Callable[[Tensor], int] | None = getattr(torch._C, "_data_address", None)


def same_memory(a: Sequence[Tensor], b: Sequence[Tensor]) -> bool:
    """The two buffer lists sit at the same addresses."""
    if a is b:
        return True
    if data_address is None:
        return False
    return all(x.dtype == y.dtype and address(x) == address(y) for x, y in zip(a, b))


def snapshot(buffer: Tensor) -> Tensor:
    """A copy-on-write view of ``buffer``'s current values: no copy now; the first
    write to either side (by any path) copies that side. Falls back to a real
    copy where a storage cannot be shared copy-on-write."""
    try:
        return torch._lazy_clone(buffer)
    except (RuntimeError, AttributeError):
        return buffer.clone()


def own_version_view(base: Tensor, offset: int, size: int) -> Tensor:
    """``size`` elements of ``base``'s storage from element ``offset``, as a new 1-D
    tensor with a version counter of its own (a plain view would share base's, so a
    write through one view would look like a write through every other)."""
    return torch.empty(0, dtype=base.dtype, device=base.device).set_(
        base.untyped_storage(), offset, (size,), (1,))
