"""Species: what every particle made from one original model shares.

A :class:`Species` holds the per-parameter :class:`ParamConfig`, the id counters,
and the version log: one :class:`Change` per structural change (parameters,
submodules and buffers added or removed) made on one particle, which the others
replay when they catch up (``touch()``).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from .build_plan import BuildPlan
from .mtype import ROOT_MODULE_ID, ParamConfig


@dataclass
class Change:
    """One structural change made on one particle, replayed by the others."""
    added_modules: list = field(default_factory=list)    # (mid, parent_mid, name, source module)
    removed_modules: list = field(default_factory=list)  # (mid, parent_mid, name, set to None?)
    added_params: list = field(default_factory=list)     # (pid, mid, name, source Parameter)
    removed_params: list = field(default_factory=list)   # (pid, mid, name, set to None?)
    # (mid, name, tensor or None, persistent, removed): None with removed False is
    # `module.buf = None`, which keeps the name registered, as torch does.
    buffers: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added_modules or self.removed_modules or self.added_params
                    or self.removed_params or self.buffers)


class Species:
    """What all particles of one species share."""

    def __init__(self) -> None:
        self.config: dict[int, ParamConfig] = {}
        self.config_version = 0
        self.log: list[Change] = []
        self.next_pid = 0
        self.next_mid = ROOT_MODULE_ID + 1
        self.members: weakref.WeakSet[Any] = weakref.WeakSet()  # its ParticleKernels
        self.pending = False  # some member changed structure and has not recorded it
        # the change cells of those members, in the order they changed: their
        # changes are logged in that order (nytorch versions each change as made)
        self.dirty_order: list = []
        self._plan: tuple[int, BuildPlan | None] = (-1, None)  # (version, build plan) shared by the members

    @property
    def version(self) -> int:
        return len(self.log)

    def cached_plan(self, module_count: int) -> BuildPlan | None:
        """The build plan made at this version for a tree of ``module_count`` modules, if any."""
        version, plan = self._plan
        if version == self.version and plan is not None and len(plan.mids) == module_count:
            return plan
        return None

    def cache_plan(self, plan: BuildPlan) -> None:
        self._plan = (self.version, plan)

    def __getstate__(self):  # weak sets do not pickle; members re-register on load
        state = dict(self.__dict__)
        state["members"] = None
        state["_plan"] = (-1, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("dirty_order", [])  # pickled before it existed
        self.members = weakref.WeakSet()

    # nytorch exposes the species as kernel.version / product.vdata
    @property
    def data(self) -> Species:
        return self


def mark_dirty(cell: list) -> None:
    """A particle's change cell ([dirty, species]): note a structural change."""
    if not cell[0]:
        cell[0] = True
        cell[1].dirty_order.append(cell)
    cell[1].pending = True
