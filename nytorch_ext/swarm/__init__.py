"""Swarms: APSO, momentum and the Swarm container as fused library operations."""
from .swarm import ApsoResult, Swarm, apso_step, choose_subset, momentum_step, momentum_step_

__all__ = ["ApsoResult", "Swarm", "apso_step", "choose_subset", "momentum_step", "momentum_step_"]
