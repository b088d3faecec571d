"""Particles: models as vectors over flat parameter buffers (nytorch's API).

Modules, bottom up (each imports only those before it; tests/test_import_layers.py
checks it):

- ``mtype``: nytorch's types and ParamConfig; ``pool``: the buffer pool;
  ``layout``: flat layouts; ``placement``: are the parameters still in place?;
  ``memory``: addresses and copy-on-write snapshots; ``storage``: a particle's
  flat buffers and the operations that write them;
- ``build_plan``: copying a module tree; ``species``: species and their change
  log; ``temporaries``: is an argument a temporary?;
- ``product``: ParamProduct, lazy affine expressions; ``scan`` and ``replay``:
  reading and replaying structure; ``kernel``: ParticleKernel;
- ``arithmetic``, ``module`` (NytoModule) and ``particle_module``
  (ParticleModule, PMProduct, GetNytoModule).
"""
from .pool import DEFAULT_POOL, set_pool_limit
from .module import NytoModule, NytoModuleBase
from .mtype import ROOT_MODULE_ID, ParamConfig, SpeciesError
from .particle_module import GetNytoModule, ParticleModule, PMProduct
from .product import ParamProduct, lincomb

__all__ = ["NytoModule", "NytoModuleBase", "ParticleModule", "PMProduct", "GetNytoModule", "ParamProduct",
           "ParamConfig", "ROOT_MODULE_ID", "SpeciesError", "lincomb", "set_pool_limit",
           "DEFAULT_POOL"]
