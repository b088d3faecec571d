"""nytorch_ext: whole PyTorch models as vectors, on fused multi-tensor kernels.

``import nytorch_ext as nyto`` gives nytorch's particle API (NytoModule,
ParticleModule, ParamProduct, PMProduct, ParamConfig, GetNytoModule) on flat
parameter buffers, ``nytorch_ext.ops``, the fused kernels underneath, ``nytorch_ext.swarm`` (APSO,
momentum and the Swarm container as fused library operations) and
``nytorch_ext.train`` (SwarmTrainer: gradient descent plus APSO, with callbacks).
"""
from . import ops
from .module import NytoModule, NytoModuleBase
from .mtype import ROOT_MODULE_ID, ParamConfig, SpeciesError
from .ops import backend_info, is_compiled
from .particle_module import GetNytoModule, ParticleModule, PMProduct
from .product import ParamProduct, lincomb
from . import swarm
from .swarm import ApsoResult, Swarm, apso_step, momentum_step, momentum_step_
from . import callbacks, device, train
from .callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar
from .device import resolve_device
from .history import Evaluation, History
from .train import SwarmTrainer, accuracy

__all__ = [
    "ops", "backend_info", "is_compiled",
    "NytoModule", "NytoModuleBase", "ParticleModule", "ParamProduct", "PMProduct",
    "ParamConfig", "GetNytoModule", "ROOT_MODULE_ID", "SpeciesError", "lincomb",
    "swarm", "Swarm", "ApsoResult", "apso_step", "momentum_step", "momentum_step_",
    "train", "callbacks", "device", "SwarmTrainer", "accuracy", "History", "Evaluation",
    "Callback", "ProgressBar", "EarlyStopping", "Checkpoint", "resolve_device",
]
__version__ = "0.1.0"
