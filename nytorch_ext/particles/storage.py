"""A particle's flat storage: the buffers its operational parameters are views of.

:class:`Storage` knows whether the parameters are still views of its buffers, and
owns the operations that write the buffers in place: :meth:`Storage.settle` first
evaluates the lazy products that read them, so those keep the values they were
built from.
"""
from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass, field

import torch

from .. import ops
from .flat import Layout, views_in_place

# The address of a tensor's data without materializing a copy-on-write snapshot.
_data_address = getattr(torch._C, "_data_address", None)


@dataclass
class Storage:
    layout: Layout
    buffers: list
    params: list          # the operational Parameter objects, in layout order
    addresses: list       # where each must point
    config_version: int
    dependents: "weakref.WeakSet" = field(default_factory=weakref.WeakSet)  # lazy products snapshotting it
    recycle: bool = True  # hand the buffers to the pool when re-flattened (not rows of a swarm's)

    def intact(self, params: list, config_version: int) -> bool:
        """Every parameter is still this storage's view: same object, address, shape
        and contiguity (``p.data = p.data.t()`` keeps the address; a contiguous view
        of a given shape and address is the view)."""
        if not (config_version == self.config_version
                and (params is self.params
                     or (len(params) == len(self.params) and all(map(operator.is_, params, self.params))))):
            return False
        if views_in_place(params, self.addresses, self.layout.sizes):
            return True
        return self._moved_by_copy_on_write(params)

    def _moved_by_copy_on_write(self, params: list) -> bool:
        """A write while a lazy product held a copy-on-write snapshot gave the
        buffers new memory: the parameters are still views of them (same storage,
        same offsets), only the addresses moved. Note the new ones."""
        if _data_address is None:
            return False
        addresses = self.layout.addresses(self.buffers)
        if addresses == self.addresses or not views_in_place(params, addresses, self.layout.sizes):
            return False
        self.addresses = addresses
        return True

    def settle(self, keep=None) -> None:
        """Before writing these buffers in place: evaluate the lazy products that
        read them (all but ``keep``), so they keep the values they were built from."""
        if not self.dependents:
            return
        for product in list(self.dependents):
            if product is not keep and not product.is_materialized:
                product.buffers()
        self.dependents.clear()

    def blend_(self, sources, alpha: float, keep=None, buffers=None) -> None:
        """``buffers`` (these storage's own by default) <- blend(buffers, sources,
        alpha), one pass per group, after settling the lazy products that read them."""
        self.settle(keep=keep)
        with torch.no_grad():
            for x, y in zip(self.buffers if buffers is None else buffers, sources):
                ops.blend_(x, y, alpha)
