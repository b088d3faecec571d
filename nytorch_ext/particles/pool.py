"""The buffer pool: recycles the flat buffers of particles and products that are gone.

Fresh large allocations are slow (page faults), so out-of-place particle operations
write into recycled buffers. A buffer is recycled only when nothing uses its storage
any more, always as a new tensor with a version counter of its own; lending costs
O(1) whatever the number of live particles; the pool is thread-safe; and it keeps at
most ``max_free_bytes`` of unused buffers (256 MiB by default, least recently used
released first): set it with ``nytorch_ext.set_pool_limit(nbytes)`` or the
environment variable ``NYTORCH_EXT_POOL_MAX_FREE_BYTES``;
``DEFAULT_POOL.free_bytes()`` says what it holds. See benchmarks/pool_scaling.py.
"""
from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict, deque
from typing import Iterable

import torch

from ..ops.validation import positive_int


def _fresh(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(size, dtype=dtype, device=device)


class _Entry:
    """One pooled buffer: the pool's private tensor on its storage (never handed out,
    never written through), the (size, dtype, device) it serves, and while it is lent
    the weak reference to its owner."""

    __slots__ = ("base", "key", "nbytes", "sid", "ref")

    def __init__(self, base: torch.Tensor, key: tuple, sid: int):
        self.base = base
        self.key = key
        self.nbytes = base.numel() * base.element_size()
        self.sid = sid  # the storage's identity (its StorageImpl address; kept alive by base)
        self.ref: _Lent | None = None


class _Lent(weakref.ref):
    """A weak reference to a lent (or given) tensor, the buffer's *owner*: its death
    is the event that tells the pool the buffer may be free."""

    __slots__ = ("entry",)
    entry: _Entry


class BufferPool:
    """Recycles flat buffers that nothing else uses any more.

    Fresh large CPU allocations cost page faults (several times slower to write
    than warm memory; see benchmarks/pool_scaling.py), so out-of-place particle
    operations write into recycled buffers: with K live particles replaced one at a time (the seed's APSO loop) every
    new particle reuses the buffer of one that died.

    **When a buffer is free.** The pool keeps a private tensor on each buffer's storage
    and a weak reference to the tensor it lent (the *owner*: a product's or particle's
    flat buffer). The owner's death is the event: the buffer is checked then (at the
    pool's next call, under its lock), and is free when nothing but the pool's private
    tensor uses its storage: no product, particle, parameter, view, user tensor or
    storage object. A buffer whose owner died while views of it live on waits in a
    queue of which every call re-checks a few entries. So lending is O(1) amortized,
    whatever the number of live particles and products.

    **Never shared.** Every buffer handed out is a new tensor object over the recycled
    storage (``base.new_empty(0).set_(base)``), with a version counter of its own:
    nothing the previous users made (parameters keep their version counter after
    ``.to()`` replaces their data) sees the next user's writes.

    **Bounded.** Unused buffers are kept up to ``max_free_bytes`` bytes in total
    (default :data:`DEFAULT_MAX_FREE_BYTES`, 256 MiB, or the environment variable
    ``NYTORCH_EXT_POOL_MAX_FREE_BYTES``), the least recently freed released first, so
    sizes no longer used go back to the allocator. The most recently freed buffer is
    kept even when it alone is larger than the limit (particles larger than the limit
    still recycle when replaced one at a time); ``max_free_bytes=0`` keeps none.
    ``max_free`` optionally caps the unused buffers kept per (size, dtype, device).
    Set the default pool's limit with :func:`set_pool_limit`.

    **Thread-safe.** Every operation runs under one lock, and an entry is in one state
    at a time (lent, waiting, free), moved only under it; the weak-reference callbacks
    (which run in whatever thread drops the last reference, possibly inside the lock)
    only append to a queue.
    """

    # Entries of the queue of buffers still in use after their owner died that each
    # call re-checks (round robin): O(1) per call, and such a buffer is found free
    # within len(queue) / _RECHECKS calls of becoming so.
    _RECHECKS = 2

    def __init__(self, max_free: int | None = None, max_free_bytes: int | None = None):
        self.max_free = max_free
        self._lock = threading.RLock()
        self._max_free_bytes = _check_limit(_default_limit() if max_free_bytes is None else max_free_bytes)
        self._entries: dict[int, _Entry] = {}      # storage identity -> entry, every tracked buffer
        self._released: deque = deque()            # _Lent refs whose owner died (callbacks append)
        self._pending: deque = deque()             # entries whose owner died, storage still used
        self._free: dict[tuple, deque] = {}        # key -> unused entries, least recently freed first
        self._lru: OrderedDict[int, _Entry] = OrderedDict()  # id(entry) -> entry, all unused ones
        self._free_bytes = 0

    # ------------------------------------------------------------ public API

    @property
    def max_free_bytes(self) -> int:
        """The most bytes of unused buffers kept (see the class docs); setting it
        releases least recently used buffers at once if needed."""
        return self._max_free_bytes

    @max_free_bytes.setter
    def max_free_bytes(self, value: int) -> None:
        value = _check_limit(value)
        with self._lock:
            self._max_free_bytes = value
            self._trim()

    def free_bytes(self) -> int:
        """Bytes of the unused buffers the pool holds (after noting releases)."""
        with self._lock:
            self._collect()
            return self._free_bytes

    def lend(self, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A buffer of ``size`` elements, recycled when one is unused, else fresh; it
        comes back to the pool when the returned tensor and everything that uses its
        storage are gone."""
        key = (size, dtype, device)
        with self._lock:
            if self._released or self._pending:
                self._collect()
            entry = self._pop_free(key) if key in self._free else None
            if entry is None:
                buf = _fresh(size, dtype, device)
                entry = _Entry(buf.detach(), key, buf.untyped_storage()._cdata)  # the pool's own tensor
                self._entries[entry.sid] = entry
            else:
                base = entry.base
                buf = base.new_empty(0).set_(base)  # type: ignore[call-overload]  # as _over: own version counter
            ref = entry.ref = _Lent(buf, self._released.append)
            ref.entry = entry
            return buf

    def take(self, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A buffer that the pool forgets: recycled when one is unused, else fresh."""
        key = (size, dtype, device)
        with self._lock:
            self._collect()
            entry = self._pop_free(key)
            if entry is not None:
                del self._entries[entry.sid]
        return _fresh(size, dtype, device) if entry is None else _over(entry.base)

    def give(self, buffers: Iterable[torch.Tensor]) -> None:
        """Track buffers for reuse once nothing else uses them (buffers on a storage
        the pool tracks already, e.g. those it lent, are skipped, and so is a buffer
        that is not all of its storage)."""
        with self._lock:
            for buf in buffers:
                storage = buf.untyped_storage()
                if storage._cdata in self._entries or not _whole(buf, storage):
                    continue
                entry = _Entry(buf.detach(), (buf.numel(), buf.dtype, buf.device), storage._cdata)
                self._entries[entry.sid] = entry
                ref = entry.ref = _Lent(buf, self._released.append)
                ref.entry = entry
                del storage
            self._collect()

    def clear(self) -> None:
        """Forget every buffer: unused ones go back to the allocator now, lent ones
        when their users let them go."""
        with self._lock:
            for entry in self._entries.values():
                entry.ref = None  # the weak references die: no callbacks any more
            self._entries.clear()
            self._released.clear()
            self._pending.clear()
            self._free.clear()
            self._lru.clear()
            self._free_bytes = 0

    # -------------------------------------------------------------- internals

    def _collect(self) -> None:
        """Note the buffers whose owners died since the last call, and re-check a few
        of those still used by something else."""
        released = self._released
        while released:
            ref = released.popleft()
            entry = ref.entry
            if entry.ref is ref:  # (else forgotten by clear())
                entry.ref = None
                self._settle(entry)
        pending = self._pending
        for _ in range(min(self._RECHECKS, len(pending))):
            self._settle(pending.popleft())

    def _settle(self, entry: _Entry) -> None:
        """Unused now: to the free lists; else back to the queue of pending ones."""
        if not _unused(entry.base):
            self._pending.append(entry)
            return
        if self._max_free_bytes == 0:
            del self._entries[entry.sid]
            return
        bucket = self._free.get(entry.key)
        if bucket is None:
            bucket = self._free[entry.key] = deque()
        bucket.append(entry)
        self._lru[id(entry)] = entry
        self._free_bytes += entry.nbytes
        if self.max_free is not None and len(bucket) > self.max_free:
            self._release(bucket.popleft())
        if self._free_bytes > self._max_free_bytes:
            self._trim()

    def _release(self, entry: _Entry) -> None:
        """Forget an unused entry already taken off its bucket."""
        del self._lru[id(entry)]
        del self._entries[entry.sid]
        self._free_bytes -= entry.nbytes

    def _trim(self) -> None:
        """Release least recently freed buffers beyond the limit (keeping the newest)."""
        limit = self._max_free_bytes
        lru = self._lru
        while self._free_bytes > limit and (len(lru) > 1 or limit == 0):
            old = next(iter(lru.values()))
            bucket = self._free[old.key]
            first = bucket.popleft()
            assert first is old, "the pool's free lists are out of order"
            if not bucket:
                del self._free[old.key]
            self._release(old)

    def _pop_free(self, key: tuple) -> "_Entry | None":
        bucket = self._free.get(key)
        if not bucket:
            return None
        entry = bucket.pop()  # the most recently freed: warm in cache
        if not bucket:
            del self._free[key]
        del self._lru[id(entry)]
        self._free_bytes -= entry.nbytes
        return entry


DEFAULT_MAX_FREE_BYTES = 256 << 20


def _default_limit() -> int:
    value = os.environ.get("NYTORCH_EXT_POOL_MAX_FREE_BYTES", "").strip()
    if not value:
        return DEFAULT_MAX_FREE_BYTES
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"NYTORCH_EXT_POOL_MAX_FREE_BYTES must be a number of bytes, got {value!r}") from None


def _check_limit(value) -> int:
    return positive_int(value, "max_free_bytes", minimum=0, type_error=ValueError)


def _over(base: torch.Tensor) -> torch.Tensor:
    """A new tensor over ``base``'s storage, with a version counter of its own
    (a view or ``detach()`` would share base's, and so its earlier users')."""
    return base.new_empty(0).set_(base)  # type: ignore[call-overload]


def _whole(buf: torch.Tensor, storage) -> bool:
    """A contiguous 1-D tensor that is all of its storage."""
    return (buf.dim() == 1 and buf.storage_offset() == 0 and buf.is_contiguous()
            and storage.nbytes() == buf.numel() * buf.element_size())


_refcount = sys.getrefcount
_use_count = torch._C._storage_Use_Count


def _uses(base: torch.Tensor) -> tuple[int, int, bool]:
    """The Python references to ``base``'s storage object and the storage's use
    count, as ``_unused`` sees them (its code has the same shape)."""
    storage = base.untyped_storage()
    return _refcount(storage), _use_count(storage._cdata), storage.nbytes() == base.nbytes


# What _unused sees of a storage used by one tensor alone: the references to the
# storage object it makes, and one use each for the tensor and that object.
_SOLE_REFS, _SOLE_USES, _ = _uses(torch.empty(1))


def _unused(base: torch.Tensor) -> bool:
    """Nothing but ``base`` uses its storage: no other tensor (view, parameter, a
    tensor made with ``set_``, numpy's or DLPack's) and no storage object held
    elsewhere (``t.untyped_storage()`` returns the object that exists, if any,
    without counting a use, so its Python references must be checked too); and the
    storage still has base's size (``UntypedStorage.resize_`` can shrink it)."""
    storage = base.untyped_storage()
    return (_refcount(storage) == _SOLE_REFS and _use_count(storage._cdata) == _SOLE_USES
            and storage.nbytes() == base.nbytes)


def set_pool_limit(max_free_bytes: int) -> None:
    """Set the most bytes of unused flat buffers the default pool keeps for reuse
    (default 256 MiB; 0 keeps none). See :class:`BufferPool`."""
    DEFAULT_POOL.max_free_bytes = max_free_bytes


DEFAULT_POOL = BufferPool()
