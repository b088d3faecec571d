"""The process group a distributed swarm talks over, behind a small interface.

:class:`World` is what the swarm and the trainer use: ``rank``, ``size``, four
collectives (``all_gather`` of equal-sized tensors, ``broadcast_``, ``all_gather_object``,
``barrier``) and a count of the calls and bytes of each. :class:`LocalWorld` is one
process (every collective is trivial), :class:`ProcessGroupWorld` is a
``torch.distributed`` process group (gloo for CPU tensors, NCCL for CUDA ones).

Every collective of a :class:`ProcessGroupWorld` runs under the group's timeout: a peer
that hangs or died makes it raise :class:`DistributedError` naming the timeout, never
wait forever. :func:`init_process_group` starts the group from torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``) with an
explicit timeout.
"""
from __future__ import annotations

import datetime
import os
from collections import Counter

import torch
import torch.distributed as dist
from torch import Tensor

DEFAULT_TIMEOUT = 300.0  # seconds: a peer silent that long is taken for hung or dead


class DistributedError(RuntimeError):
    """A collective failed: a peer hung, died, or the group broke."""


class World:
    """The interface (see the module docstring). ``calls[op]`` / ``bytes[op]``: how many
    collectives of each kind this process took part in, and the bytes it sent in them
    (for ``all_gather``: its own tensor; for ``broadcast_``: the tensor, counted on the
    source only; for objects: the pickled size)."""
    rank = 0
    size = 1
    backend: str | None = None
    timeout: float | None = None

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.bytes: Counter = Counter()

    @property
    def is_writer(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """Where this world's tensors for collectives live (CPU for gloo, this rank's GPU for NCCL)."""
        return torch.device("cpu")

    def _count(self, op: str, nbytes: int) -> None:
        self.calls[op] += 1
        self.bytes[op] += int(nbytes)

    def reset_counts(self) -> None:
        self.calls.clear()
        self.bytes.clear()

    def all_gather(self, tensor: Tensor) -> list[Tensor]:
        self._count("all_gather", tensor.numel() * tensor.element_size())
        return [tensor]

    def broadcast_(self, tensor: Tensor, src: int) -> Tensor:
        self._count("broadcast", tensor.numel() * tensor.element_size() if self.rank == src else 0)
        return tensor

    def all_gather_object(self, obj) -> list:
        self._count("all_gather_object", 0)
        return [obj]

    def barrier(self) -> None:
        self._count("barrier", 0)


class LocalWorld(World):
    """One process: every collective returns this process's own data."""

    def __repr__(self) -> str:
        return "LocalWorld()"


class ProcessGroupWorld(World):
    """A ``torch.distributed`` process group (the default one unless ``group`` is given).
    ``timeout``: the seconds the group's collectives wait (for the error message; the
    group's own timeout is what applies, set by :func:`init_process_group`)."""

    def __init__(self, group=None, timeout: float | None = None) -> None:
        super().__init__()
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialized: call "
                               "nytorch_ext.distributed.init_process_group() (under torchrun) first")
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group))
        self.timeout = timeout if timeout is not None else _group_timeout()

    @property
    def device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _run(self, what: str, fn):
        try:
            return fn()
        except RuntimeError as e:
            limit = f"{self.timeout:g} s" if self.timeout is not None else "the process group's timeout"
            raise DistributedError(
                f"rank {self.rank}/{self.size}: the collective {what} failed: a peer did not answer within "
                f"the timeout ({limit}), died or left the group ({type(e).__name__}: {e})") from e

    def all_gather(self, tensor: Tensor) -> list[Tensor]:
        self._count("all_gather", tensor.numel() * tensor.element_size())
        out = [torch.empty_like(tensor) for _ in range(self.size)]
        self._run("all_gather", lambda: dist.all_gather(out, tensor, group=self.group))
        return out

    def broadcast_(self, tensor: Tensor, src: int) -> Tensor:
        self._count("broadcast", tensor.numel() * tensor.element_size() if self.rank == src else 0)
        self._run("broadcast", lambda: dist.broadcast(tensor, src, group=self.group))
        return tensor

    def all_gather_object(self, obj) -> list:
        out = [None] * self.size
        self._count("all_gather_object", 0)
        self._run("all_gather_object", lambda: dist.all_gather_object(out, obj, group=self.group))
        return out

    def barrier(self) -> None:
        self._count("barrier", 0)
        self._run("barrier", lambda: dist.barrier(group=self.group))

    def __repr__(self) -> str:
        return f"ProcessGroupWorld(rank={self.rank}, size={self.size}, backend={self.backend!r})"


_TIMEOUTS: dict = {}  # the timeout init_process_group gave the default group


def _group_timeout() -> float | None:
    return _TIMEOUTS.get("default")


def init_process_group(backend: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> ProcessGroupWorld:
    """The default process group as a :class:`ProcessGroupWorld`, initialised from
    torchrun's environment variables if it is not yet (``env://``). ``backend``: None
    chooses NCCL when CUDA is available (one GPU per rank: ``cuda:LOCAL_RANK``, made the
    current device), else gloo. ``timeout``: seconds a collective waits for its peers
    before raising (:class:`DistributedError`). A group the caller initialised is used as
    it is (its own backend and timeout)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise RuntimeError(f"init_process_group: the environment has no {missing}: start the script with "
                               f"torchrun (e.g. torchrun --standalone --nproc_per_node=2 script.py) or call "
                               f"torch.distributed.init_process_group yourself")
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        kwargs = {}
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            kwargs["device_id"] = torch.device("cuda", local)
        limit = datetime.timedelta(seconds=float(timeout))
        store = _attempt_store(limit)
        if store is None:
            dist.init_process_group(backend, init_method="env://", timeout=limit, **kwargs)
        else:
            dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                    world_size=int(os.environ["WORLD_SIZE"]), timeout=limit, **kwargs)
        _TIMEOUTS["default"] = float(timeout)
    return ProcessGroupWorld()


def _attempt_store(limit: datetime.timedelta):
    """Under torchrun (``TORCHELASTIC_RESTART_COUNT`` set): the rendezvous store with a
    prefix of its own per restart attempt, else None (``env://`` as usual). torchrun
    keeps one store across restarts; without the prefix, a restarted group can read the
    dead attempt's keys (gloo's peer addresses) and wait on processes that are gone
    until the connect timeout (seen here with torch 2.13's c10d rendezvous)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        return None
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    tcp = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size,
                        is_master=not agent_store and rank == 0, timeout=limit, wait_for_workers=False)
    run = os.environ.get("TORCHELASTIC_RUN_ID", "")
    return dist.PrefixStore(f"nytorch_ext/{run}/attempt_{attempt}", tcp)


def current_world() -> World:
    """The default process group's world when torch.distributed is initialised with more
    than one process, else a :class:`LocalWorld`."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return ProcessGroupWorld()
    return LocalWorld()


def preferred_device(device):
    """``device``, except that ``"auto"`` under an NCCL group is this rank's GPU
    (``cuda:LOCAL_RANK``) rather than the one with the most free memory."""
    if isinstance(device, str) and device == "auto" and dist.is_available() and dist.is_initialized() \
            and str(dist.get_backend()) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return device
