"""nytorch_ext: whole PyTorch models as vectors, on fused multi-tensor kernels.

``import nytorch_ext as nyto`` gives nytorch's particle API (NytoModule,
ParticleModule, ParamProduct, PMProduct, ParamConfig, GetNytoModule) on flat
parameter buffers. The layers, each importing only the ones below it:

- ``nytorch_ext.ops``: the fused kernels (compiled or pure-PyTorch fallback);
- ``nytorch_ext.particles``: flat storage, products, species and nytorch's modules;
- ``nytorch_ext.swarm``: APSO, momentum and the Swarm container;
- ``nytorch_ext.train``: SwarmTrainer (gradient descent plus APSO), callbacks, history.

``nytorch_ext.module``, ``.mtype`` and ``.particle_module`` are nytorch's import paths.
"""
from . import ops
from .ops import backend_info, is_compiled
from . import particles
from .particles import (ROOT_MODULE_ID, GetNytoModule, NytoModule, NytoModuleBase, ParamConfig,
                        ParamProduct, ParticleModule, PMProduct, SpeciesError, lincomb, set_pool_limit)
from . import swarm
from .swarm import ApsoResult, Swarm, apso_step, momentum_step, momentum_step_
from . import train
from .train import (Callback, Checkpoint, CSVLogger, EarlyStopping, Evaluation, History, ProgressBar,
                    SwarmTrainer, TensorBoardLogger, accuracy, resolve_device)
from . import module, mtype, particle_module  # nytorch's import paths

__all__ = [
    "ops", "backend_info", "is_compiled",
    "particles", "NytoModule", "NytoModuleBase", "ParticleModule", "ParamProduct", "PMProduct",
    "ParamConfig", "GetNytoModule", "ROOT_MODULE_ID", "SpeciesError", "lincomb", "set_pool_limit",
    "swarm", "Swarm", "ApsoResult", "apso_step", "momentum_step", "momentum_step_",
    "train", "SwarmTrainer", "accuracy", "History", "Evaluation",
    "Callback", "ProgressBar", "EarlyStopping", "Checkpoint", "CSVLogger", "TensorBoardLogger", "resolve_device",
    "module", "mtype", "particle_module",
]
__version__ = "0.1.0"
