"""Shared types of the particle API (nytorch.mtype compatible)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import OrderedDict as OrderedDictType

from torch import nn

ROOT_MODULE_ID = 0
ModuleID = int
ParamID = int
Module = nn.Module
ParamType = nn.Parameter


@dataclass
class ParamConfig:
    """How particle operations treat one parameter, for its whole species.

    ``operational``: arithmetic applies to it. A non-operational parameter keeps the
    left operand's value, as a clone (``clone=True``) or as the very same Parameter
    object (``clone=False``).
    """
    operational: bool = True
    clone: bool = True

    def copy(self) -> "ParamConfig":
        return ParamConfig(self.operational, self.clone)


# nytorch.mtype's aliases for the tables a species keeps, by id.
ModuleDict = OrderedDictType[ModuleID, Module]
ParamDict = OrderedDictType[ParamID, ParamType]
ConfigDict = OrderedDictType[ParamID, ParamConfig]


DIFFERENT_SPECIES = (
    "these {what} belong to different species: particles combine only with particles made "
    "from the same original (by operations, clone(), clone_from(), randn(), rand())")


class SpeciesError(AssertionError):
    """Particles of different species (or a particle and a product) were combined.

    Subclasses AssertionError, which nytorch raises in these cases, so existing code
    that catches it keeps working; unlike nytorch's, it says what went wrong."""
