"""Distributed swarms on torch.distributed (the island model), as one import.

Under ``torchrun --standalone --nproc_per_node=W script.py``::

    from nytorch_ext import distributed
    world = distributed.init_process_group(timeout=60)   # gloo on CPU, NCCL on CUDA
    swarm = distributed.shard(Swarm.spawn(model, 12))    # spawned identically on every rank
    trainer = SwarmTrainer(swarm, seed=0)                 # the same seed on every rank
    trainer.fit(...)                                       # History of all K, on every rank
    whole = distributed.gather(trainer.sharded)           # the whole swarm, on every rank

The code lives in :mod:`nytorch_ext.swarm.distributed` (the process group, ownership,
the sharded swarm and its APSO step) and :mod:`nytorch_ext.train.world` (the trainer's
side); see docs/swarm-and-training.md, "Distributed swarms".
"""
from .swarm.distributed import (DEFAULT_TIMEOUT, DistributedError, LocalWorld, ProcessGroupWorld, ShardedSwarm,
                                World, blocks, current_world, fingerprint, init_process_group, preferred_device,
                                shard, sharded_apso_step)


def gather(sharded: ShardedSwarm):
    """The whole swarm of ``sharded`` as one Swarm on every rank (a collective; see
    :meth:`ShardedSwarm.gather`)."""
    return sharded.gather()


__all__ = ["DEFAULT_TIMEOUT", "DistributedError", "LocalWorld", "ProcessGroupWorld", "ShardedSwarm", "World",
           "blocks", "current_world", "fingerprint", "gather", "init_process_group", "preferred_device", "shard",
           "sharded_apso_step"]
