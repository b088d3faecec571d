"""nytorch's import path ``nytorch.module``: re-exports :mod:`nytorch_ext.particles.module`
and the names nytorch's ``module`` also provides (ParamProduct and its types)."""
from .particles.module import NytoModule, NytoModuleBase
from .particles.mtype import (ROOT_MODULE_ID, ConfigDict, Module, ModuleDict, ModuleID, ParamConfig, ParamDict,
                              ParamID, ParamType)
from .particles.product import ParamProduct

__all__ = ["NytoModule", "NytoModuleBase", "ParamProduct", "ParamConfig", "ROOT_MODULE_ID", "ModuleID", "ParamID",
           "ParamType", "Module", "ModuleDict", "ParamDict", "ConfigDict"]
