"""nytorch's import path ``nytorch.particle_module``: re-exports
:mod:`nytorch_ext.particles.particle_module` and the names nytorch's
``particle_module`` also provides (the modules and products it builds on)."""
from .particles.module import NytoModule, NytoModuleBase
from .particles.mtype import ROOT_MODULE_ID, ModuleID, ParamConfig, ParamDict, ParamType
from .particles.particle_module import GetNytoModule, ParticleModule, PMProduct
from .particles.product import ParamProduct

__all__ = ["GetNytoModule", "ParticleModule", "PMProduct", "NytoModule", "NytoModuleBase", "ParamProduct",
           "ParamConfig", "ROOT_MODULE_ID", "ModuleID", "ParamType", "ParamDict"]
