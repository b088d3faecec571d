"""A particle's flat storage: the buffers its operational parameters are views of.

:class:`Storage` knows whether the parameters are still views of its buffers, and
owns the operations on them: :meth:`Storage.settle` evaluates the lazy products
that read the buffers before anything writes them (so those keep the values they
were built from), :meth:`Storage.blend_` writes them in place,
:func:`bump_versions` records a write that bypassed the parameters' version counters, and
:meth:`Storage.row` makes a buffer that is a row of a larger [K, N] one.
"""
from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from .. import ops
from ..ops._extension import native
from .layout import Layout
from .memory import data_address, own_version_view
from .placement import views_in_place


@dataclass
class Storage:
    layout: Layout
    buffers: list[Tensor]
    params: list          # the operational Parameter objects, in layout order
    addresses: list[int]  # where each must point
    config_version: int
    dependents: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)  # lazy products snapshotting it
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
        if data_address is None:
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

    def blend_(self, sources: Sequence[Tensor], alpha: float, keep=None,
               buffers: Sequence[Tensor] | None = None) -> None:
        """``buffers`` (this storage's own by default) <- blend(buffers, sources,
        alpha), one pass per group, after settling the lazy products that read them."""
        self.settle(keep=keep)
        blend_buffers_(self.buffers if buffers is None else buffers, sources, alpha)
        bump_versions([self], buffers=False)  # the op bumped the buffers

    @staticmethod
    def row(base: Tensor, index: int) -> Tensor:
        """Row ``index`` of a contiguous [K, N] ``base``, as a flat buffer with its
        own version counter (a plain view shares base's, so a write to one member
        would look like a write to all): what :meth:`ParticleKernel.adopt` takes."""
        n = int(base.shape[1])
        return own_version_view(base, int(base.storage_offset()) + index * n, n)


def _python_increment_versions(lists: list) -> None:
    torch.autograd.graph.increment_version([t for tensors in lists for t in tensors])


# increment_versions(lists): bump the version counter of every tensor of every list
# (one C call; torch's increment_version converts each tensor through pybind11).
increment_versions = native("increment_versions", _python_increment_versions)


def bump_versions(storages: Sequence[Storage], buffers: bool = True) -> None:
    """Record a write into these storages' buffers that autograd did not see on
    their parameters (a parameter keeps a version counter of its own, and a write
    through the buffers or a swarm's [K, N] base bypasses it): bump the parameters'
    counters (and the buffers', unless ``buffers=False``: a write by our ops has bumped
    those already), so that a pending backward that saved the old values refuses
    ("modified by an inplace operation"), as after an in-place write to a parameter in
    PyTorch, and products holding an older version know."""
    lists = [st.params for st in storages]
    if buffers:
        lists += [st.buffers for st in storages]
    increment_versions(lists)


def blend_buffers_(targets: Sequence[Tensor], sources: Sequence[Tensor], alpha: float) -> None:
    """``targets[g] <- blend(targets[g], sources[g], alpha)``, one pass per group
    (buffers no lazy product reads: :meth:`Storage.blend_` settles those first)."""
    with torch.no_grad():
        for x, y in zip(targets, sources):
            ops.blend_(x, y, alpha)
