"""Particles: models as vectors over flat parameter buffers (nytorch's API).

Layers inside, bottom up: ``mtype`` (types and configs), ``flat`` (layouts, flat
buffers, the buffer pool), ``product`` (ParamProduct, lazy affine expressions),
``kernel`` (species, versions, replay of structural changes), ``arithmetic``,
``module`` (NytoModule) and ``particle_module`` (ParticleModule, PMProduct).
"""
from .flat import set_pool_limit
from .module import NytoModule, NytoModuleBase
from .mtype import ROOT_MODULE_ID, ParamConfig, SpeciesError
from .particle_module import GetNytoModule, ParticleModule, PMProduct
from .product import ParamProduct, lincomb

__all__ = ["NytoModule", "NytoModuleBase", "ParticleModule", "PMProduct", "GetNytoModule", "ParamProduct",
           "ParamConfig", "ROOT_MODULE_ID", "SpeciesError", "lincomb", "set_pool_limit"]
