"""Where the trainer's swarm lives: one process, or a swarm sharded across ranks.

:class:`RunWorld` is the one code path for both: the trainer trains ``swarm.local``
(this rank's block; every member with one process) and calls the world at the few
points where a distributed run differs, all of them trivial with one process:

- the APSO step (:meth:`ShardedSwarm.apso_step`: one loss ``all_gather`` and one
  broadcast per group per step; nothing per batch);
- the end of an epoch (:meth:`RunWorld.finish_epoch`: the epoch's per-batch losses and
  per-member values of every rank, one ``all_gather_object``), so the History holds
  all K members, identical on every rank;
- the output callbacks (progress, CSV and TensorBoard loggers: rank 0 only; the others,
  EarlyStopping and Checkpoint included, decide identically on every rank);
- checkpoints (:meth:`RunWorld.global_checkpoint` gathers every per-member entry into
  the whole swarm's, written by rank 0 only; :meth:`RunWorld.local_view` cuts a whole
  swarm's checkpoint, saved with any number of ranks, to this rank's block);
- evaluation and prediction (per-member values gathered; the ensemble and ``predict``
  on the whole swarm, gathered on demand), and the checks that every rank runs the same
  fit (:meth:`RunWorld.check_fit`) and resumes the same checkpoint.
"""
from __future__ import annotations

import hashlib
import os
import string

from ..swarm import Swarm
from ..swarm.distributed import ShardedSwarm, current_world, shard
from .callbacks import Checkpoint, CSVLogger, ProgressBar, TensorBoardLogger
from .checkpoints import save_atomic
from .history import Evaluation, best_of

# output-only callbacks: run on rank 0 only (a callback with rank_zero_only = True too)
OUTPUT_CALLBACKS = (ProgressBar, CSVLogger, TensorBoardLogger)
# a checkpoint's entries holding one item per member
PER_MEMBER_KEYS = ("optimizers", "optimizer_classes", "schedulers", "scheduler_classes", "scalers")
AUTO = "auto"


def run_world(swarm) -> "RunWorld":
    """The trainer's world for ``swarm``: a :class:`ShardedSwarm` as it is; a Swarm (or
    particles) sharded across the default process group when torch.distributed is
    initialised with several processes (:func:`nytorch_ext.distributed.shard`), else
    held whole by this process."""
    if isinstance(swarm, ShardedSwarm):
        return RunWorld(swarm)
    swarm = swarm if isinstance(swarm, Swarm) else Swarm(swarm)
    world = current_world()
    return RunWorld(shard(swarm, world) if world.size > 1 else ShardedSwarm.whole(swarm))


def _is_swarm_state(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("members"), list) and "size" in value


def _digest(tensor) -> str:
    return hashlib.sha1(tensor.numpy().tobytes()).hexdigest()[:16]


class RunWorld:
    """See the module docstring. ``sharded``: the :class:`ShardedSwarm`; ``size``: the
    whole swarm's K; ``distributed``: more than one process."""

    def __init__(self, sharded: ShardedSwarm) -> None:
        self.sharded = sharded
        self.world = sharded.world
        self._pending: list = []  # this epoch's per-batch losses of this rank's members

    @property
    def size(self) -> int:
        return self.sharded.size

    @property
    def distributed(self) -> bool:
        return self.sharded.distributed

    def runs(self, callback) -> bool:
        """Whether this rank runs ``callback`` (output callbacks: rank 0 only)."""
        return self.world.is_writer or not (isinstance(callback, OUTPUT_CALLBACKS)
                                            or getattr(callback, "rank_zero_only", False))

    # ---------------------------------------------------------- batches and epochs

    def record_batch(self, history, losses: list) -> None:
        """A batch's losses: into the History (one process) or kept for the epoch's end."""
        if self.distributed:
            self._pending.append(list(losses))
        else:
            history.add_batch(losses)

    def batches_done(self, history) -> int:
        """The run's batches so far (the History's and the ones not gathered yet)."""
        return len(history.batch_loss) + len(self._pending)

    def finish_epoch(self, record: dict, history) -> dict:
        """The epoch's ``record`` with every per-member list of the whole swarm, and the
        epoch's batch losses of all K members added to ``history``: one
        ``all_gather_object``. Scalars (``epoch``, ``batches``, ``samples``) are the
        same on every rank; a rank's own timings stay its own."""
        if not self.distributed:
            return record
        lists = {k: v for k, v in record.items() if isinstance(v, list)}
        parts = self.world.all_gather_object((self._pending, lists))
        self._pending = []
        counts = {len(p[0]) for p in parts}
        if len(counts) != 1:
            raise RuntimeError(f"the ranks trained different numbers of batches this epoch "
                               f"({[len(p[0]) for p in parts]}): every rank must read the same batches")
        for b in range(counts.pop()):
            history.add_batch([v for p in parts for v in p[0][b]])
        return {k: [v for p in parts for v in p[1][k]] if k in lists else v for k, v in record.items()}

    # ---------------------------------------------------------- checks

    def check_fit(self, **settings) -> None:
        """Every rank runs the same fit: ``settings`` (picklable values; a
        ``torch.Generator`` by its state) equal on every rank, else ``ValueError`` on
        every rank naming what differs (one ``all_gather_object``)."""
        self._pending = []  # a new fit: nothing left over from a run that raised mid-epoch
        if not self.distributed:
            return
        mine = {k: _digest(v.get_state()) if hasattr(v, "get_state") else v for k, v in settings.items()}
        mine["swarm size"] = self.size
        everyone = self.world.all_gather_object(mine)
        differ = [k for k in mine if len({repr(e.get(k)) for e in everyone}) > 1]
        if differ:
            detail = "; ".join(f"{k}: " + ", ".join(f"rank {r} {e.get(k)!r}" for r, e in enumerate(everyone))
                               for k in differ)
            raise ValueError(f"fit: the ranks were given different arguments ({detail}); every rank must call "
                             f"fit with the same arguments (and the trainer with the same seed)")

    def resume_path(self, resume_from, callbacks, epochs: int):
        """fit's ``resume_from``: ``"auto"`` is the latest file the run's
        :class:`Checkpoint` callback would have written (``{epoch}`` paths: the highest
        epoch up to ``epochs`` that exists), or None when there is none (a new run); rank
        0 decides and every rank resumes the same file."""
        if not (isinstance(resume_from, str) and resume_from == AUTO):
            return resume_from
        savers = [cb for cb in list(callbacks or []) if isinstance(cb, Checkpoint)]
        if not savers:
            raise ValueError("resume_from='auto' resumes from the files of the run's Checkpoint callback, "
                             "and this fit has none: add callbacks=[Checkpoint(path)] or pass a path")
        found = None
        for cb in savers:
            found = _latest(cb.path, epochs) or found
        if self.distributed:
            found = self.world.all_gather_object(found)[0]
        return found

    # ---------------------------------------------------------- checkpoints

    def global_checkpoint(self, state: dict) -> dict:
        """``state`` (this rank's checkpoint state) with the whole swarm's per-member
        entries (members, optimizers, schedulers, scalers, swarm states held by
        callbacks such as EarlyStopping's best weights), in member order; the rest
        (generator, RNG states, History, counters) as this rank has them, the same on
        every rank. A collective when distributed."""
        if not self.distributed:
            return state
        gather = self.sharded.gather_lists
        out = dict(state, size=self.size)
        out["swarm"] = {"size": self.size, "members": self.sharded.member_states()}
        for key in PER_MEMBER_KEYS:
            if isinstance(state.get(key), (list, tuple)):
                out[key] = gather(state[key])
        callbacks = {}
        for name, cb_state in state.get("callbacks", {}).items():
            if isinstance(cb_state, dict):
                cb_state = dict(cb_state)
                for k, v in cb_state.items():
                    if _is_swarm_state(v):
                        cb_state[k] = {"size": self.size, "members": gather(v["members"])}
            callbacks[name] = cb_state
        out["callbacks"] = callbacks
        return out

    def local_view(self, state: dict, path: str) -> dict:
        """A whole swarm's checkpoint ``state`` (saved with any number of ranks) cut to
        this rank's block, for :func:`~nytorch_ext.train.checkpoints.read_checkpoint`."""
        if not self.distributed:
            return state
        k, block = self.size, self.sharded.block
        if state.get("size") != k:
            raise ValueError(f"resume_from: the checkpoint {path!r} holds {state.get('size')} members, "
                             f"this swarm has {k}")

        def cut(values):
            return list(values)[block.start:block.stop] if isinstance(values, (list, tuple)) \
                and len(values) == k else values

        out = dict(state, size=len(block))
        swarm = state.get("swarm")
        if _is_swarm_state(swarm):
            out["swarm"] = dict(swarm, size=len(block), members=cut(swarm["members"]))
        for key in PER_MEMBER_KEYS:
            out[key] = cut(state.get(key))
        if isinstance(state.get("callbacks"), dict):
            callbacks = {}
            for name, cb_state in state["callbacks"].items():
                if isinstance(cb_state, dict):
                    cb_state = {key: dict(v, size=len(block), members=cut(v["members"])) if _is_swarm_state(v)
                                else v for key, v in cb_state.items()}
                callbacks[name] = cb_state
            out["callbacks"] = callbacks
        return out

    def save(self, state: dict, path) -> str:
        """Rank 0 writes ``state`` atomically (temporary file, then renamed); every rank
        returns once it is written (a barrier), so a rank lost afterwards finds it."""
        if self.world.is_writer:
            save_atomic(state, path)
        if self.distributed:
            self.world.barrier()
        return os.fspath(path)

    # ---------------------------------------------------------- evaluation

    def members(self, whole: bool) -> list:
        """The members to run: the whole swarm (gathered when distributed) or this rank's."""
        return list(self.sharded.gather() if whole else self.sharded.local)

    def evaluation(self, ev: Evaluation) -> Evaluation:
        """An :class:`Evaluation` of this rank's members as the whole swarm's (gathered)."""
        if not self.distributed:
            return ev
        loss = self.sharded.gather_lists(ev.loss)
        metrics = {name: self.sharded.gather_lists(values) for name, values in ev.metrics.items()}
        return Evaluation(loss=loss, metrics=metrics, best=best_of(loss), ensemble=ev.ensemble, samples=ev.samples)


def _latest(path: str, epochs: int):
    fields = [f for _, f, _, _ in string.Formatter().parse(path) if f is not None]
    if not fields:
        return path if os.path.isfile(path) else None
    for done in range(epochs, 0, -1):
        candidate = path.format(epoch=done)
        if os.path.isfile(candidate):
            return candidate
    return None
