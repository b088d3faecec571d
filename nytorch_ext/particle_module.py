"""nytorch's import path ``nytorch.particle_module``: re-exports
:mod:`nytorch_ext.particles.particle_module`."""
from .particles.particle_module import GetNytoModule, ParticleModule, PMProduct

__all__ = ["GetNytoModule", "ParticleModule", "PMProduct"]
