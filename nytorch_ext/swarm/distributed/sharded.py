"""A swarm split across ranks: :class:`ShardedSwarm`, :func:`shard`, :func:`fingerprint`.

Every rank spawns the same K members (same seed), :func:`shard` checks with one
fingerprint collective that they really are the same on every rank, and keeps this
rank's contiguous block as a local :class:`Swarm`. The whole swarm can be gathered on
demand (:meth:`ShardedSwarm.gather`) for evaluation, ensembles and export.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch import Tensor

from ..construction import own_buffers
from ..container import Swarm
from .ownership import blocks, owner_of
from .world import LocalWorld, World, current_world


def _digest(h, t: Tensor) -> None:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    h.update(str((t.dtype, t.numel())).encode())
    h.update(t.view(torch.uint8).numpy().tobytes())


def fingerprint(swarm: Swarm) -> str:
    """A short text naming ``swarm``'s size, layout (groups, slots), members' parameter
    and buffer names, shapes and dtypes, and a SHA-1 of every [K, N] buffer and every
    member's buffers: equal on two ranks only for the same swarm, bit for bit."""
    member = swarm[0]
    names = [(n, tuple(p.shape), str(p.dtype)) for n, p in member.named_parameters()]
    names += [(n, tuple(b.shape), str(b.dtype)) for n, b in member.named_buffers()]
    h = hashlib.sha1()
    for b in swarm.buffers():
        _digest(h, b)
    for m in swarm:
        for _, b in m.named_buffers():
            _digest(h, b)
    layout = hashlib.sha1(repr((swarm.layout, names)).encode()).hexdigest()[:12]
    return f"K={len(swarm)} layout={layout} values={h.hexdigest()[:16]}"


class ShardedSwarm:
    """This rank's block of a swarm of ``size`` members split across ``world``: ``local``
    (a :class:`Swarm` of the members ``block``, in order), ``blocks`` (every rank's
    range), ``offset`` (the global index of ``local[0]``). Indices are global:
    ``owns(i)``, ``owner(i)``, ``local_index(i)``. ``len()`` is the whole swarm's size."""

    def __init__(self, local: Swarm, size: int, world: World) -> None:
        self.local = local
        self.size = int(size)
        self.world = world
        self.blocks = blocks(self.size, world.size)
        self.block = self.blocks[world.rank]
        if len(local) != len(self.block):
            raise ValueError(f"rank {world.rank} holds {len(local)} members, its block is {self.block}")
        self.offset = self.block.start
        self._whole: Swarm | None = None

    @classmethod
    def whole(cls, swarm: Swarm) -> "ShardedSwarm":
        """One process holding the whole swarm (a :class:`LocalWorld`)."""
        return cls(swarm, len(swarm), LocalWorld())

    @property
    def distributed(self) -> bool:
        return self.world.size > 1

    def __len__(self) -> int:
        return self.size

    def owns(self, index: int) -> bool:
        return index in self.block

    def owner(self, index: int) -> int:
        return owner_of(index, self.blocks)

    def local_index(self, index: int) -> int:
        if not self.owns(index):
            raise IndexError(f"member {index} is owned by rank {self.owner(index)}, not rank {self.world.rank}")
        return index - self.offset

    # ---------------------------------------------------------- collectives

    def gather_lists(self, values: Sequence) -> list:
        """Each rank's per-member list (its block, in order) joined into the K-long list,
        on every rank (one ``all_gather_object``)."""
        values = list(values)
        if not self.distributed:
            return values
        out = []
        for part in self.world.all_gather_object(values):
            out.extend(part)
        return out

    def gather_losses(self, losses: list) -> list:
        """The K losses on every rank from each rank's block: one ``all_gather`` of the
        blocks padded to the longest one (float64, so the floats are exact)."""
        longest = max(len(b) for b in self.blocks)
        t = torch.zeros(longest, dtype=torch.float64, device=self.world.device)
        t[:len(losses)] = torch.tensor(losses, dtype=torch.float64)
        parts = self.world.all_gather(t)
        out: list = []
        for part, block in zip(parts, self.blocks):
            out.extend(part[:len(block)].tolist())
        return out

    def broadcast_rows(self, index: int, storages: dict) -> list[Tensor]:
        """Member ``index``'s flat rows (one per group) on every rank: its owner sends
        them, one ``broadcast`` per (dtype, device) group; the others receive into new
        tensors. On the owner these are the member's own rows (not copied)."""
        src = self.owner(index)
        if src == self.world.rank:
            rows = list(storages[index - self.offset].buffers)
        else:
            rows = [torch.empty(g.size, dtype=g.dtype, device=g.device) for g in self.local.layout.groups]
        for row in rows:
            self.world.broadcast_(row, src)
        return rows

    def member_states(self) -> list[dict]:
        """Every member's ``state_dict`` (on the CPU), the whole swarm's, on every rank."""
        mine = [_to_cpu(s) for s in self.local.state_dict()["members"]]
        return self.gather_lists(mine)

    def state_dict(self) -> dict:
        """The whole swarm's :meth:`Swarm.state_dict` (gathered: a collective)."""
        if not self.distributed:
            return self.local.state_dict()
        return {"size": self.size, "members": self.member_states()}

    def gather(self) -> Swarm:
        """The whole swarm as one :class:`Swarm` on every rank (a collective): this rank's
        own swarm when it holds every member, else a copy (kept and refreshed by later
        calls) of the K members' current parameters and buffers. Writing to the copy
        does not change the training members."""
        if not self.distributed:
            return self.local
        states = self.member_states()
        if self._whole is None or self._whole.layout != self.local.layout:
            template = self.local[0]
            members = [template.clone() for _ in range(self.size)]
            for m in members:
                own_buffers(m)
            self._whole = Swarm(members)
        self._whole.load_state_dict({"size": self.size, "members": states})
        return self._whole

    def apso_step(self, losses, alpha: float, subset_size: int | None = None, *, noise: float = 0.0,
                  replace: bool = True, generator: torch.Generator | None = None):
        """:func:`~.apso.sharded_apso_step` with this rank's members' ``losses``."""
        from .apso import sharded_apso_step
        return sharded_apso_step(self, losses, alpha, subset_size, noise=noise, replace=replace,
                                 generator=generator)

    def __repr__(self) -> str:
        return (f"ShardedSwarm({self.size} members; rank {self.world.rank}/{self.world.size} owns "
                f"{self.block.start}..{self.block.stop - 1}: {self.local!r})")


def _to_cpu(obj):
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, _to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def shard(swarm, world: World | None = None) -> ShardedSwarm:
    """This rank's block of ``swarm`` (a :class:`Swarm`, spawned identically on every
    rank) as a :class:`ShardedSwarm`. ``world``: default :func:`current_world` (the
    default process group under torchrun, else one process).

    Checked on every rank before anything changes: the swarm has at least one member
    per rank (K >= W) and every rank holds the same swarm (one ``all_gather_object`` of
    :func:`fingerprint`: size, layout, species, every value); otherwise ``ValueError``
    on every rank. The block's members then move into a new [K_r, N] buffer per group:
    use the returned swarm (``.local``), not ``swarm``, from here on."""
    if isinstance(swarm, ShardedSwarm):
        return swarm
    if not isinstance(swarm, Swarm):
        swarm = Swarm(swarm)
    world = current_world() if world is None else world
    ranges = blocks(len(swarm), world.size)  # K < W raises here, on every rank
    if world.size == 1:
        return ShardedSwarm(swarm, len(swarm), world)
    prints = world.all_gather_object(fingerprint(swarm))
    if len(set(prints)) > 1:
        listing = "; ".join(f"rank {r}: {p}" for r, p in enumerate(prints))
        raise ValueError(f"shard: the ranks hold different swarms ({listing}); spawn the swarm identically "
                         f"on every rank (same model, size, init and torch.manual_seed) before sharding")
    block = ranges[world.rank]
    return ShardedSwarm(Swarm(swarm.members[block.start:block.stop]), len(swarm), world)
