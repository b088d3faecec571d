"""Flat layouts: every operational parameter of a particle is a view into one
contiguous buffer per (dtype, device) group.

A :class:`Layout` is a value: the ordered parameter ids with their shapes, grouped
by (dtype, device), each at an offset aligned to 16 bytes. Two particles whose
layouts are equal combine group by group, one fused kernel call per group.
:func:`flatten_into` copies tensors into a layout's buffers.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Iterable, Sequence

import torch

from ..ops._extension import native
from ..ops.validation import address
from .pool import BufferPool

ALIGN_BYTES = 16

# parameter_views(flat, offsets, shapes, ndims, requires_grad): one nn.Parameter per
# view of a group's buffer, made in C (None: Python makes them one by one).
_parameter_views = native("parameter_views", None)
# _views(flat, offsets, shapes): the views of a buffer as one dispatcher op (None: Python).
_views_op = native("_views", None, op=True)


@dataclass(frozen=True)
class Slot:
    """Where one parameter lives: group index, element offset, and shape."""
    pid: int
    group: int
    offset: int
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Group:
    dtype: torch.dtype
    device: torch.device
    size: int  # elements, including alignment padding


@dataclass(frozen=True)
class Layout:
    groups: tuple[Group, ...]
    slots: tuple[Slot, ...]  # in parameter-id order

    @staticmethod
    def of(tensors: Iterable[tuple[int, torch.Tensor]]) -> "Layout":
        """The layout of ``(pid, tensor)`` pairs, keeping their order."""
        group_index: dict[tuple[torch.dtype, torch.device], int] = {}
        sizes: list[int] = []
        keys: list[tuple[torch.dtype, torch.device]] = []
        slots = []
        for pid, t in tensors:
            key = (t.dtype, t.device)
            g = group_index.get(key)
            if g is None:
                g = group_index[key] = len(sizes)
                sizes.append(0)
                keys.append(key)
            align = max(1, ALIGN_BYTES // t.element_size())
            offset = -(-sizes[g] // align) * align
            slots.append(Slot(pid, g, offset, tuple(t.shape)))
            sizes[g] = offset + t.numel()
        groups = tuple(Group(dtype, device, size) for (dtype, device), size in zip(keys, sizes))
        return Layout(groups, tuple(slots))

    @cached_property
    def all_floating(self) -> bool:
        """Whether the fused kernels can serve every group (integer parameters,
        e.g. counters, need torch's own ops and type promotion)."""
        return all(g.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
                   for g in self.groups)

    @cached_property
    def pids(self) -> tuple[int, ...]:
        return tuple(s.pid for s in self.slots)

    def empty(self, pool: BufferPool | None = None) -> list[torch.Tensor]:
        """New (uninitialized) flat buffers, one per group. With a pool they are
        recycled when possible and registered with it, to be recycled once every
        product, particle and view that uses them is gone."""
        if pool is None:
            return [torch.empty(g.size, dtype=g.dtype, device=g.device) for g in self.groups]
        return [pool.lend(g.size, g.dtype, g.device) for g in self.groups]

    def views(self, buffers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One view per slot, in slot order, of its group's buffer: one C++ call per
        group when the extension is loaded (a narrow + view per slot costs far more
        for a particle of many small tensors; see benchmarks/fused_vs_eager.py p.module)."""
        if _views_op is None:
            return [buffers[s.group].narrow(0, s.offset, s.numel).view(s.shape) for s in self.slots]
        out: list = [None] * len(self.slots)
        for buf, (order, offsets, shapes, ndims) in zip(buffers, self._view_args):
            for i, view in zip(order, _views_op(buf, offsets, shapes, ndims)):
                out[i] = view
        return out

    def parameters(self, buffers: Sequence[torch.Tensor], requires_grad: Sequence[bool]) -> list:
        """One ``nn.Parameter`` per slot, in slot order, whose data is its view of
        ``buffers`` (a leaf sharing the buffer's version counter, as
        ``nn.Parameter(view)`` makes it): one C call per group with the extension."""
        if _parameter_views is None:
            return list(map(torch.Tensor._make_subclass, repeat(torch.nn.Parameter),
                            self.views(buffers), requires_grad))
        if len(self.groups) == 1:
            order, offsets, shapes, ndims = self._view_args[0]
            return _parameter_views(buffers[0], offsets, shapes, ndims,
                                    requires_grad if isinstance(requires_grad, list) else list(requires_grad))
        out: list = [None] * len(self.slots)
        for buf, (order, offsets, shapes, ndims) in zip(buffers, self._view_args):
            flags = [requires_grad[i] for i in order]
            for i, param in zip(order, _parameter_views(buf, offsets, shapes, ndims, flags)):
                out[i] = param
        return out

    @cached_property
    def sizes(self) -> list:
        """Each slot's shape as a torch.Size (compares with ``tensor.shape`` in C)."""
        return [torch.Size(s.shape) for s in self.slots]

    @cached_property
    def _view_args(self) -> list[tuple[list[int], list[int], list[int], list[int]]]:
        """Per group: slot positions, offsets, concatenated shapes and ranks."""
        args: list[tuple[list[int], list[int], list[int], list[int]]] = [([], [], [], []) for _ in self.groups]
        for i, s in enumerate(self.slots):
            order, offsets, shapes, ndims = args[s.group]
            order.append(i)
            offsets.append(s.offset)
            shapes.extend(s.shape)
            ndims.append(len(s.shape))
        return args

    def addresses(self, buffers: Sequence[torch.Tensor]) -> list[int]:
        """The data pointer each slot's view has (0 for an empty one, as torch reports)."""
        if len(buffers) == 1 and self._byte_offsets is not None:  # one group, no empty slot
            return list(map(address(buffers[0]).__add__, self._byte_offsets))
        base = [address(b) for b in buffers]
        sizes = [b.element_size() for b in buffers]
        return [base[s.group] + s.offset * sizes[s.group] if s.numel else 0 for s in self.slots]

    @cached_property
    def _byte_offsets(self) -> list | None:
        """Each slot's byte offset, when the layout is one group without empty slots."""
        if len(self.groups) != 1 or any(s.numel == 0 for s in self.slots):
            return None
        size = torch.empty(0, dtype=self.groups[0].dtype).element_size()
        return [s.offset * size for s in self.slots]


def flatten_into(layout: Layout, tensors: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor]) -> None:
    """Copy ``tensors`` (in slot order) into their places in ``buffers``, zeroing
    the alignment padding so the buffers hold no uninitialized values."""
    for buf in buffers:
        buf.zero_()
    with torch.no_grad():
        for view, t in zip(layout.views(buffers), tensors):
            view.copy_(t)
