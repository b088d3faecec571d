"""Distributed swarms (the island model) on ``torch.distributed``.

A swarm of K members is split across W processes: rank r owns a contiguous block of
members (:func:`~.ownership.blocks`), kept as its own local :class:`~..container.Swarm`
([K_r, N] per (dtype, device) group). Gradient descent is local; the APSO step is the
only synchronisation: one ``all_gather`` of the K losses, the same draw and plan on
every rank, one broadcast of the best member's row per group, and each rank blends its
own drawn members (:func:`~.apso.sharded_apso_step`). Member indices stay global.

Modules, bottom up: ``world`` (the process group: collectives with explicit timeouts,
counted), ``ownership`` (which rank owns which members), ``sharded`` (the
:class:`ShardedSwarm`, :func:`shard`, the fingerprint check, gathering the whole
swarm) and ``apso`` (the distributed APSO step).
"""
from .apso import sharded_apso_step
from .ownership import blocks
from .sharded import ShardedSwarm, fingerprint, shard
from .world import (DEFAULT_TIMEOUT, DistributedError, LocalWorld, ProcessGroupWorld, World, current_world,
                    init_process_group, preferred_device)

__all__ = ["DistributedError", "LocalWorld", "ProcessGroupWorld", "ShardedSwarm", "World", "blocks",
           "current_world", "fingerprint", "init_process_group", "preferred_device", "shard", "sharded_apso_step",
           "DEFAULT_TIMEOUT"]
