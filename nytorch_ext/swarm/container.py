"""The Swarm: K particles of one species in one [K, N] buffer per (dtype, device) group.

Row i of each buffer is member i's flat storage and its parameters are views of it,
so whole-swarm updates (APSO over a subset, momentum over every member) are one fused
launch per group, and the members stay ordinary modules in between.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import Tensor

from .. import ops
from ..particles.mtype import DIFFERENT_SPECIES, SpeciesError
from ..particles.storage import Storage, bump_versions
from .apso import ApsoResult, step_pool
from .arguments import finite_real, member_losses
from .construction import adopt_modules, spawn_members
from .member_state import check_module_state, install_compact_state
from .members import MemberPool, StorageCheck, member_kernels, member_storages


class Swarm(Sequence, MemberPool):
    """K particles of one species whose parameters live in one [K, N] buffer per
    (dtype, device) group: row i is member i's flat buffer, its parameters are views
    of it. Whole-swarm updates (APSO over a subset, momentum over every member) are
    one fused launch per group.

    Members stay ordinary modules (train them, build optimizers on them). If
    something moves a member's parameters out of its row (``member.to(...)``,
    ``p.data = ...``, a structural change), the swarm notices and packs it back in
    before its next update.

    ``member.state_dict()`` holds only that member: its parameters are views of a row
    of the [K, N] buffer, and ``torch.save`` writes a view's whole storage, so the swarm
    gives each member a state-dict hook that replaces such views by compact copies
    (``torch.save(swarm[3].state_dict())`` writes one member, not K). Those values are
    therefore snapshots, not aliases of the parameters (as FSDP's full state dicts);
    buffers and parameters outside the row alias as usual, and
    ``state_dict(keep_vars=True)`` still returns the Parameter objects themselves
    (views of the row: save the default ``keep_vars=False`` form).
    """

    def __init__(self, particles: Sequence) -> None:
        self._kernels = member_kernels(particles, "particles")
        self._members = list(particles)
        self._pack()
        for m in self._members:
            install_compact_state(m)

    @classmethod
    def spawn(cls, model, size: int, init="default") -> "Swarm":
        """A swarm of ``size`` particles of ``model``'s species (a ParticleModule or a
        root NytoModule): ``model`` itself first, then ``size - 1`` new particles made by
        ``init``:

        - ``"default"``: each initialized as a freshly constructed model would be: every
          submodule's ``reset_parameters()`` (PyTorch's default init; children before
          parents), drawn from the global RNG (so reproducible under
          ``torch.manual_seed``), member after member; parameters no such method covers
          are copies of ``model``'s (with a warning). Each member owns its buffers:
          copies of ``model``'s, reset by the same methods (BatchNorm statistics).
        - ``"clone"``, ``"randn"`` (N(0, 1) values, not a model's init), ``"rand"``
          (U(0, 1)): the particle methods; the members share ``model``'s buffers, as
          nytorch's particles do.
        - a callable ``init(module, index)``: called for each new member with its user's
          module (a ParticleModule's ``root_module``, a clone of ``model``'s, with its own
          buffers) and its index in the swarm (1 to ``size - 1``), under
          ``torch.no_grad()``; it initializes the module in place (its Parameters are
          views of the member's flat storage: write into them, do not replace them), and
          its return value is ignored. ``init(model) -> particle`` still works, deprecated.
        """
        return cls(spawn_members(model, size, init))

    @classmethod
    def from_modules(cls, modules) -> "Swarm":
        """A swarm of independently built models of one architecture: ``modules`` is a
        sequence of ParticleModules, root NytoModules and plain ``nn.Module``s (any mix,
        at least one particle). The first particle is the template: the swarm takes its
        species, and it joins as it is, as does any other particle of its species;
        every other module becomes a new particle of that species holding that module's
        parameter and buffer values (copied; the module itself is left as it was), with
        its own buffers. Architectures must agree: the same parameter and buffer names,
        with the same shapes and dtypes (else ``ValueError`` naming the index and the
        first difference, before anything is built); the classes themselves are not
        compared. Values on another device are copied to the template's."""
        return cls(adopt_modules(modules))

    # ---------------------------------------------------------- storage

    def _pack(self) -> None:
        """Allocate the [K, N] buffers for the current layout and move every member in."""
        storages = member_storages(self._kernels, "particles")
        self.layout = storages[0].layout
        k = len(self._kernels)
        self._base = [torch.empty((k, g.size), dtype=g.dtype, device=g.device) for g in self.layout.groups]
        self._rows = [[Storage.row(b, i) for b in self._base] for i in range(k)]
        for kernel, rows in zip(self._kernels, self._rows):
            kernel.adopt(rows)

    def storages(self, indices=None) -> dict[int, Storage]:
        """Member index -> flat storage for ``indices`` (all when None), after moving
        back into its row any of those members whose parameters left it; re-packs every
        member when the species' layout changed. While no member has changed since the
        last full check, one pass over all of them decides it (:class:`StorageCheck`)."""
        check = self.__dict__.get("_check")
        if check is not None and check.holds(self._base):
            return check.storages_of(indices)
        storages = member_storages(self._kernels, "particles", indices)
        if any(st.layout is not self.layout and st.layout != self.layout for st in storages.values()):
            self._pack()  # checks that every member agrees on the new layout
            storages = {i: self._kernels[i].storage for i in storages}
        for i, st in storages.items():
            if not all(map(_same, st.buffers, self._rows[i])):
                storages[i] = self._kernels[i].adopt(self._rows[i])
        if indices is None:  # every member checked: the next call may take the one-pass check
            self._check = StorageCheck(self._kernels, storages, self._base)
        return storages

    def buffers(self) -> list[Tensor]:
        """The [K, N] buffer of each (dtype, device) group (rows are members)."""
        self.storages()
        return list(self._base)

    # ---------------------------------------------------------- sequence

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, index):
        return self._members[index]  # a member, or a list of them for a slice

    @property
    def members(self) -> list:
        return list(self._members)

    @property
    def species(self):
        return self._kernels[0].species

    def best_index(self, losses) -> int:
        """The member with the lowest loss (the first among ties)."""
        losses = member_losses(losses, len(self))
        return min(range(len(losses)), key=losses.__getitem__)

    def best(self, losses):
        return self._members[self.best_index(losses)]

    # ---------------------------------------------------------- updates

    def apso_step(self, losses, alpha: float, subset_size: int | None = None, *, noise: float = 0.0,
                  replace: bool = True, generator: torch.Generator | None = None) -> ApsoResult:
        """:func:`~nytorch_ext.swarm.apso_step` on this swarm: one ``multi_blend_``
        launch per group over the subset's rows."""
        return step_pool(self, losses, alpha, subset_size, noise, replace, generator)

    def momentum_(self, prev, prev2, beta: float) -> "Swarm":
        """Every member at once: ``W <- W + beta*(W_prev - W_prev2)``, one lincomb
        launch per group over the [K, N] buffers. ``prev`` and ``prev2`` are swarms
        of this species or :meth:`snapshot` results."""
        beta = finite_real(beta, "beta")
        self.storages()  # caught up first: prev and prev2 are checked against the current buffers
        bufs_prev = self._history(prev, "prev")
        bufs_prev2 = self._history(prev2, "prev2")
        with self.writing() as bases:
            for b, p, p2 in zip(bases, bufs_prev, bufs_prev2):  # buffers never require grad
                ops.lincomb_([1.0, beta, -beta], [b, p, p2])
        return self

    @contextlib.contextmanager
    def writing(self) -> Iterator[list[Tensor]]:
        """A write into the [K, N] buffers (or views of them, such as a batched
        optimizer's leaves) that bypasses the members' own parameters: on entry the
        lazy products reading any member take their values, the context gives the
        buffers, and on exit (raised or not) every member's rows and parameters get a new
        version, as a write through the parameters would, so a pending backward that
        saved the old values refuses and products holding an older version know."""
        storages = list(self.storages().values())
        for st in storages:
            st.settle()
        try:
            yield list(self._base)
        finally:
            bump_versions(storages)  # written through the bases, not the rows or the parameters

    def snapshot(self) -> list[Tensor]:
        """A copy of the [K, N] buffers (for momentum's W_{t-1}, W_{t-2})."""
        self.storages()
        return [b.clone() for b in self._base]

    def _history(self, other, name: str) -> list:
        """``other``'s [K, N] buffers, checked against this (synced) swarm's."""
        if isinstance(other, Swarm):
            if other.species is not self.species:
                raise SpeciesError(f"{name}: " + DIFFERENT_SPECIES.format(what="swarms"))
            other = other.buffers()
        if not isinstance(other, (list, tuple)) or len(other) != len(self._base):
            raise TypeError(f"{name} must be a Swarm or a snapshot() of one")
        for i, (b, o) in enumerate(zip(self._base, other)):
            if not isinstance(o, Tensor) or o.shape != b.shape or o.dtype != b.dtype or o.device != b.device:
                raise ValueError(f"{name}[{i}] does not match this swarm's buffer "
                                 f"{tuple(b.shape)} {b.dtype} on {b.device}")
        return list(other)

    # ---------------------------------------------------------- state

    def state_dict(self) -> dict:
        """Every member's ``state_dict`` (parameters and buffers), in order. Each
        member's parameters are compact copies of its row (see the class docstring), so
        any part of it saves only what it holds; buffers alias the members' buffers."""
        return {"size": len(self), "members": [m.state_dict() for m in self._members]}

    def check_state_dict(self, state, strict: bool = True) -> None:
        """Raise (``TypeError`` / ``ValueError`` naming the member and the key) unless
        :meth:`load_state_dict` would load ``state`` completely: a
        :meth:`state_dict` of this many members whose tensors have this swarm's keys
        (all of them and no others when ``strict``) and shapes. Changes nothing."""
        if not isinstance(state, dict) or "members" not in state:
            raise TypeError("state must be a Swarm.state_dict()")
        members = state["members"]
        if not isinstance(members, (list, tuple)):
            raise TypeError("state['members'] must be a list of the members' state_dicts")
        if len(members) != len(self) or state.get("size", len(members)) != len(members):
            raise ValueError(f"state holds {len(members)} members, this swarm has {len(self)}")
        for i, (m, s) in enumerate(zip(self._members, members)):
            check_module_state(m, s, strict, f"state['members'][{i}]")

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Load :meth:`state_dict` output into the members, in place (Parameter
        objects and the [K, N] storage kept). Everything is checked first
        (:meth:`check_state_dict`): a state of another size or architecture raises
        and loads nothing."""
        self.check_state_dict(state, strict)
        for m, s in zip(self._members, state["members"]):
            m.load_state_dict(s, strict=strict)
        self.storages()

    def to(self, *args, **kwargs) -> "Swarm":
        """``nn.Module.to`` on every member, then one [K, N] buffer per group on the
        new device/dtype (Parameter objects kept; build optimizers afterwards, as
        with any module moved between devices)."""
        for m in self._members:
            m.to(*args, **kwargs)
        self._pack()
        return self

    def __repr__(self) -> str:
        groups = ", ".join(f"[{len(self)}, {g.size}] {str(g.dtype).replace('torch.', '')} on {g.device}"
                           for g in self.layout.groups)
        return f"Swarm({len(self)} particles; {groups})"


def _same(a: Tensor, b: Tensor) -> bool:
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape)
