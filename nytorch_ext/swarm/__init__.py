"""Swarms: APSO, momentum and the Swarm container as fused library operations.

=================================================  ====================================
``apso_step(pool, losses, alpha, subset_size)``    subset blended toward its best
``apso_step(..., noise=s, generator=g)``           full APSO: ``+ s * N(0, 1)`` in the pass
``momentum_step(w_new, w_prev, w_prev2, beta)``    ``w_new + beta*(w_prev - w_prev2)``
``Swarm(particles)``                               K particles in one [K, N] buffer per group
=================================================  ====================================

Modules, bottom up: ``members`` (particles of one species, their storages),
``arguments`` (the checked arguments), ``member_state`` (members' state dicts),
``apso`` (draw, plan, blend), ``momentum``, ``container`` (the Swarm) and ``batched``
(the swarm as one vmapped model over its buffers; optimizer state per member).
"""
from .apso import ApsoResult, apso_step, choose_subset
from .batched import BatchedSwarm, batched_optimizer_state, load_member_optimizer_states, member_optimizer_states
from .container import Swarm
from .momentum import momentum_step, momentum_step_

__all__ = ["ApsoResult", "Swarm", "apso_step", "choose_subset", "momentum_step", "momentum_step_",
           "BatchedSwarm", "member_optimizer_states", "batched_optimizer_state", "load_member_optimizer_states"]
