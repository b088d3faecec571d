"""nytorch's import path ``nytorch.mtype``: re-exports :mod:`nytorch_ext.particles.mtype`."""
from .particles.mtype import (DIFFERENT_SPECIES, ROOT_MODULE_ID, ConfigDict, Module, ModuleDict, ModuleID,
                              ParamConfig, ParamDict, ParamID, ParamType, SpeciesError)

__all__ = ["ROOT_MODULE_ID", "ModuleID", "ParamID", "Module", "ParamType", "ParamConfig", "ModuleDict",
           "ParamDict", "ConfigDict", "DIFFERENT_SPECIES", "SpeciesError"]
