"""nytorch's import path ``nytorch.module``: re-exports :mod:`nytorch_ext.particles.module`."""
from .particles.module import NytoModule, NytoModuleBase

__all__ = ["NytoModule", "NytoModuleBase"]
