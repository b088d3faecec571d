"""The APSO step of a sharded swarm: the only synchronisation of a distributed run.

Per step: one ``all_gather`` of the K losses; every rank draws the same subset from
its (identically seeded) generator and makes the same plan (:func:`~..apso.blend_plan`:
the same best, ties broken by draw order as in one process); the best member's owner
broadcasts its flat row, one ``broadcast`` per (dtype, device) group (skipped on every
rank when the plan moves nobody); each rank blends its own drawn members with one fused
``multi_blend_`` / ``multi_blend_noise_`` per group, noise streams keyed by the global
member index. The members end bit-identical to the single-process step's.
"""
from __future__ import annotations

import torch

from ...ops.validation import probability
from ..apso import ApsoResult, blend_plan, blend_toward_best, choose_subset, noise_seed
from ..arguments import flag, member_losses, noise_scale, subset_generator, subset_size as check_subset_size


class _Rows:
    """The best member's rows received from its owner, in a storage's place."""

    def __init__(self, buffers: list) -> None:
        self.buffers = buffers


def sharded_apso_step(sharded, losses, alpha: float, subset_size: int | None = None, *, noise: float = 0.0,
                      replace: bool = True, generator: torch.Generator | None = None) -> ApsoResult:
    """One APSO step of the whole swarm (see :func:`nytorch_ext.swarm.apso_step`), run
    on every rank of ``sharded.world`` at the same point with this rank's members'
    ``losses`` (in block order). Returns the same :class:`ApsoResult` (global indices)
    on every rank. With one process, it is ``sharded.local.apso_step``."""
    local = sharded.local
    if not sharded.distributed:
        return local.apso_step(losses, alpha, subset_size, noise=noise, replace=replace, generator=generator)
    losses = member_losses(losses, len(local))
    alpha = probability(alpha, "alpha")
    subset_size = check_subset_size(subset_size, sharded.size)
    noise = noise_scale(noise)
    generator = subset_generator(generator)
    flag(replace, "replace")
    storages = local.storages()

    everyone = sharded.gather_losses(losses)
    indices = choose_subset(sharded.size, subset_size, replace=replace, generator=generator)
    best, weights = blend_plan(indices, everyone, alpha)
    if not weights:  # the same on every rank: nobody moves, nothing is sent
        return ApsoResult._of(indices, best, weights)
    seed = noise_seed(generator) if noise > 0 else None
    rows = sharded.broadcast_rows(best, storages)
    mine = {i: w for i, w in weights.items() if sharded.owns(i)}
    if mine:
        targets = {i: storages[i - sharded.offset] for i in mine}
        targets[best] = storages[best - sharded.offset] if sharded.owns(best) else _Rows(rows)
        blend_toward_best(targets, best, mine, noise, seed)
    return ApsoResult._of(indices, best, weights)
