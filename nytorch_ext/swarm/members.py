"""A pool's members: particles of one species whose flat storages share one layout.

Every swarm update starts here: :func:`member_kernels` checks that a sequence holds
whole particles (ParticleModules or root NytoModules) of one species, each once, and
:func:`member_storages` brings the members up to date and checks that their flat
storages have one layout, before anything is drawn or written.

:class:`MemberPool` is what an update needs of a pool (its size, and the storage of any
member); a :class:`~nytorch_ext.swarm.Swarm` is one, and :class:`ParticlePool` makes one
of a plain sequence of particles.
"""
from __future__ import annotations

import abc
import operator
from typing import Sequence

from torch import nn

from ..particles.module import NytoModuleBase
from ..particles.arithmetic import whole_kernel
from ..particles.mtype import DIFFERENT_SPECIES, SpeciesError
from ..particles.particle_module import ParticleModule
from ..particles.placement import attributes_are, entries_are, views_in_place
from ..particles.product import ParamProduct
from ..particles.storage import Storage

_DIRTY = operator.itemgetter(0)


def member_kernel(particle, what: str = "pool"):
    """The particle kernel of a ParticleModule or a root NytoModule."""
    if isinstance(particle, (ParticleModule, NytoModuleBase)):
        kernel = whole_kernel(particle)
        if kernel is None:
            raise SpeciesError(f"{what}: a swarm member must be a whole particle (a root module), "
                               f"not a submodule")
        return kernel
    raise TypeError(f"{what}: members must be ParticleModule or NytoModule instances, "
                    f"got {type(particle).__name__}")


def member_kernels(particles, what: str = "pool") -> list:
    """The kernels of ``particles``: a non-empty sequence of distinct whole particles of
    one species (``what`` names the argument in errors)."""
    if isinstance(particles, (nn.Module, ParamProduct)) or not isinstance(particles, Sequence):
        raise TypeError(f"{what} must be a Swarm or a sequence of particles, got {type(particles).__name__}")
    if len(particles) == 0:
        raise ValueError(f"{what} is empty")
    kernels = [member_kernel(p, what) for p in particles]
    species = kernels[0].species
    if any(k.species is not species for k in kernels):
        raise SpeciesError(f"{what}: " + DIFFERENT_SPECIES.format(what="particles"))
    if len({id(k) for k in kernels}) != len(kernels):
        raise ValueError(f"{what}: the same particle appears more than once")
    return kernels


def member_storages(kernels: list, what: str = "pool", indices=None) -> dict[int, Storage]:
    """Member index -> flat storage (caught up with its species) for ``indices`` (all
    members when None); one layout for all of them."""
    indices = range(len(kernels)) if indices is None else indices
    storages = {}
    for i in indices:
        kernels[i].touch()
        storages[i] = kernels[i].flat()
    first = next(iter(storages))
    layout = storages[first].layout
    for i, st in storages.items():
        if st.layout is not layout and st.layout != layout:
            raise ValueError(f"{what}[{i}] has a different flat layout (shapes, dtypes or devices) "
                             f"than {what}[{first}]; move every member to the same dtype and device")
    return storages


class StorageCheck:
    """Whether every member is still as :func:`member_storages` last found it, decided
    in one pass over all of them (a few C calls, not a catch-up per member), so a step
    of a swarm whose members have not changed skips the per-member work.

    It holds when the species has logged no change and none is pending, no member is
    marked dirty, every member keeps its storage and parameter table, every parameter
    is still in its module's table (one ``entries_are`` call over all members) and
    still a view of its buffer (one ``views_in_place`` call). Anything else (a
    structural change, ``member.to(...)``, ``p.data = ...``, a configuration change, a
    copy-on-write move) fails it, and the caller takes the full path, which handles
    the change and makes a new check."""

    def __init__(self, kernels: list, storages: dict[int, Storage], owner=None) -> None:
        self.owner = owner  # what the storages belong to (a swarm's [K, N] buffers): checked by identity
        self.kernels = list(kernels)
        self.species = kernels[0].species
        self.versions = (self.species.version, self.species.config_version)
        self.result = dict(storages)
        self.storages = [storages[i] for i in range(len(kernels))]
        self.tables = [k.params for k in kernels]
        self.cells = [k.cell for k in kernels]
        self.params = [p for st in self.storages for p in st.params]
        self.addresses = [a for st in self.storages for a in st.addresses]
        self.sizes = [size for st in self.storages for size in st.layout.sizes]
        self.places: tuple[list, list, list] = ([], [], [])
        for k in kernels:
            for mine, theirs in zip(self.places, k.places):
                mine.extend(theirs)

    def holds(self, owner=None) -> bool:
        species = self.species
        return (owner is self.owner and not species.pending
                and (species.version, species.config_version) == self.versions
                and attributes_are(self.kernels, "storage", self.storages)
                and attributes_are(self.kernels, "params", self.tables)
                and not any(map(_DIRTY, self.cells))
                and bool(entries_are(*self.places))
                and bool(views_in_place(self.params, self.addresses, self.sizes)))

    def storages_of(self, indices=None) -> dict[int, Storage]:
        """What :func:`member_storages` returned, for ``indices`` (all when None)."""
        if indices is None:
            return dict(self.result)
        return {i: self.result[i] for i in indices}


class MemberPool(abc.ABC):
    """What a swarm update needs of a pool of members (an ABC, not a Protocol: the
    ``isinstance`` check on every step is then a cached lookup)."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def storages(self, indices=None) -> dict[int, Storage]:
        """Member index -> its flat storage, for ``indices`` (all members when None),
        checked for one layout."""


class ParticlePool(MemberPool):
    """A plain sequence of particles of one species as a :class:`MemberPool`."""

    def __init__(self, particles, what: str = "pool") -> None:
        self.kernels = member_kernels(particles, what)
        self.what = what

    def __len__(self) -> int:
        return len(self.kernels)

    def storages(self, indices=None) -> dict[int, Storage]:
        return member_storages(self.kernels, self.what, indices)
