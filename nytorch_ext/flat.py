"""Flat parameter storage: every operational parameter of a particle is a view into
one contiguous buffer per (dtype, device) group.

A :class:`Layout` is a value: the ordered parameter ids with their shapes, grouped
by (dtype, device), each at an offset aligned to 16 bytes. Two particles whose
layouts are equal combine group by group, one fused kernel call per group.

:class:`FlatStorage` owns the buffers of one particle (or one product) and knows
the address every parameter view must have, so it can tell cheaply when something
(``.to()``, ``.half()``, ``param.data = ...``, ``load_state_dict(assign=True)``)
replaced a parameter's storage, and re-flatten before the next operation.
"""
from __future__ import annotations

import operator
import sys
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Iterable, Sequence

import torch

ALIGN_BYTES = 16


def _load_views_op():
    from ._extension import _C
    return torch.ops.nytorch_ext._views.default if _C is not None else None


_views_op = _load_views_op()


def _python_views_in_place(params: list, addresses: list, shapes: list) -> bool:
    return ([p.data_ptr() for p in params] == addresses
            and [p.shape for p in params] == shapes
            and all(map(torch.Tensor.is_contiguous, params)))


def _python_entries_are(dicts: list, names: list, values: list) -> bool:
    return all(map(operator.is_, map(dict.get, dicts, names), values))


def _load_placement_functions():
    from ._extension import _C
    if _C is None:
        return _python_views_in_place, _python_entries_are, None
    return _C.views_in_place, _C.entries_are, _C.parameter_views


# views_in_place(params, addresses, shapes): each parameter is contiguous, has its
# shape (a torch.Size) and its data at its address (ignored for empty ones); one C
# call with the extension, ~0.2 us per parameter in Python without it.
# entries_are(dicts, names, values): dicts[i].get(names[i]) is values[i] for every i
# (a parameter still in its place).
views_in_place, entries_are, _parameter_views = _load_placement_functions()


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

    def empty(self, pool: "BufferPool | None" = None) -> list[torch.Tensor]:
        """New (uninitialized) flat buffers, one per group. With a pool they are
        recycled when possible and registered with it, to be recycled once every
        product, particle and view that uses them is gone."""
        if pool is None:
            return [_fresh(g.size, g.dtype, g.device) for g in self.groups]
        return [pool.lend(g.size, g.dtype, g.device) for g in self.groups]

    def views(self, buffers: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One view per slot, in slot order, of its group's buffer: one C++ call per
        group when the extension is loaded (a narrow + view per slot costs ~3 us)."""
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
    def _view_args(self):
        """Per group: slot positions, offsets, concatenated shapes and ranks."""
        args = [([], [], [], []) for _ in self.groups]
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
            return list(map(buffers[0].data_ptr().__add__, self._byte_offsets))
        base = [b.data_ptr() for b in buffers]
        sizes = [b.element_size() for b in buffers]
        return [base[s.group] + s.offset * sizes[s.group] if s.numel else 0 for s in self.slots]

    @cached_property
    def _byte_offsets(self) -> list | None:
        """Each slot's byte offset, when the layout is one group without empty slots."""
        if len(self.groups) != 1 or any(s.numel == 0 for s in self.slots):
            return None
        size = torch.empty(0, dtype=self.groups[0].dtype).element_size()
        return [s.offset * size for s in self.slots]


def _fresh(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(size, dtype=dtype, device=device)


def flatten_into(layout: Layout, tensors: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor]) -> None:
    """Copy ``tensors`` (in slot order) into their places in ``buffers``, zeroing
    the alignment padding so the buffers hold no uninitialized values."""
    for buf in buffers:
        buf.zero_()
    with torch.no_grad():
        for view, t in zip(layout.views(buffers), tensors):
            view.copy_(t)


class BufferPool:
    """Recycles flat buffers that nothing else references any more.

    Fresh large CPU allocations cost page faults (measured ~6 GB/s against ~50 GB/s
    for warm memory), so out-of-place particle operations write into recycled
    buffers. A buffer is handed out again only when the pool holds the sole
    reference to its storage: no particle, product, view or user tensor can see it.

    The pool tracks every buffer given to it while it is in use (that costs no
    memory: its owner keeps it alive anyway), so whichever particle dies next, its
    buffer is there to reuse: with K live particles replaced one at a time (the
    seed's APSO loop) every new particle reuses the one it replaces. Of buffers that
    nobody uses any more it keeps at most ``max_free`` per (size, dtype, device) and
    lets the rest go back to the allocator.
    """

    def __init__(self, max_free: int = 4):
        self.max_free = max_free
        self._tracked: dict[tuple[int, torch.dtype, torch.device], list[torch.Tensor]] = {}

    def take(self, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        bucket = self._tracked.get((size, dtype, device), ())
        for i in range(len(bucket)):
            if _unused(bucket, i):
                return bucket.pop(i)
        return _fresh(size, dtype, device)

    def lend(self, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``take`` and ``give`` in one: a buffer that stays tracked, recycled (moved
        to the back, the most recently used) when one is unused, else fresh (then
        none was unused: nothing to trim). Trimming scans the bucket, so it runs
        only when more than ``max_free`` unused buffers may be left."""
        bucket = self._tracked.setdefault((size, dtype, device), [])
        for i in range(len(bucket)):
            if _unused(bucket, i):
                buf = bucket.pop(i)
                bucket.append(buf)
                if len(bucket) > self.max_free + 1:
                    self._trim(bucket)
                return buf
        buf = _fresh(size, dtype, device)
        bucket.append(buf)
        return buf

    def give(self, buffers: Iterable[torch.Tensor]) -> None:
        """Track buffers for reuse once nothing else holds them."""
        for buf in buffers:
            bucket = self._tracked.setdefault((buf.numel(), buf.dtype, buf.device), [])
            if any(b is buf for b in bucket):
                continue
            bucket.append(buf)
            self._trim(bucket)

    def _trim(self, bucket: list) -> None:
        """Drop the oldest unused buffers beyond ``max_free``."""
        free = [i for i in range(len(bucket)) if _unused(bucket, i)]
        for i in reversed(free[:max(0, len(free) - self.max_free)]):
            del bucket[i]

    def clear(self) -> None:
        self._tracked.clear()


def _refs(obj) -> int:
    return sys.getrefcount(obj)


def _pool_only_refs() -> int:
    """What ``_refs(bucket[i])`` says of a tensor held by nothing but a list (the
    count includes the call's own references, which vary across Python versions)."""
    holder = [torch.empty(0)]
    return _refs(holder[0])


_POOL_ONLY = _pool_only_refs()


def _unused(bucket: list, i: int) -> bool:
    """Nothing but the pool holds ``bucket[i]``: no other Python reference (called
    as in the calibration above) and no other tensor on its storage."""
    return _refs(bucket[i]) == _POOL_ONLY and _sole_owner(bucket[i])


def _storage_uses(t: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


# Uses of a storage referenced by one tensor alone, as _storage_uses counts them
# (the temporary UntypedStorage object it makes counts too).
_SOLE_USES = _storage_uses(torch.empty(1))


def _sole_owner(buf: torch.Tensor) -> bool:
    """True when no tensor but ``buf`` (no view, no parameter) uses its storage."""
    return _storage_uses(buf) == _SOLE_USES


DEFAULT_POOL = BufferPool()
