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
from typing import Sequence

from torch import nn

from ..particles.module import NytoModuleBase
from ..particles.arithmetic import whole_kernel
from ..particles.mtype import DIFFERENT_SPECIES, SpeciesError
from ..particles.particle_module import ParticleModule
from ..particles.product import ParamProduct
from ..particles.storage import Storage


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
