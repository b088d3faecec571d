"""The distributed tests' training run, and the script each rank runs.

``python scenario.py <name> <out_dir> [json args]`` under the torchrun environment
(RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT) runs scenario ``name`` on this
rank and writes ``rank<r>.pt`` (results) or ``rank<r>.err`` (the error) to ``out_dir``.
:func:`train` is also called in the test process itself for the one-process reference.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import traceback
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from nytorch_ext import NytoModule, ParticleModule  # noqa: E402
from nytorch_ext import distributed  # noqa: E402
from nytorch_ext.swarm import Swarm  # noqa: E402
from nytorch_ext.train import Callback, Checkpoint, EarlyStopping, SwarmTrainer, accuracy  # noqa: E402

K = 5  # uneven over 2 and 3 ranks
EPOCHS = 4
FIT = dict(evolve_every=2, alpha=0.4, subset_size=4, noise=0.01)


class Net(NytoModule):
    """Two parameter groups (float32 and float64): two broadcasts per APSO step."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 3)
        self.scale = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x))) * self.scale.float()


def make_swarm(seed: int = 0, size: int = K) -> Swarm:
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # 'scale' has no reset_parameters(): copies of the model's, as meant
        warnings.simplefilter("ignore", UserWarning)
        return Swarm.spawn(ParticleModule(Net()), size, init="default")


@contextlib.contextmanager
def single_thread():
    """torch on one thread inside, the thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_data():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True,
                                         generator=torch.Generator().manual_seed(2))
    return loader, (x[:32] + 0.1, y[:32])


class Counter(Callback):
    """The collectives (counted on torch.distributed itself, outermost calls only) taken
    between consecutive batches of an epoch."""

    def __init__(self, log):
        self.log, self.steps, self.last = log, [], None

    def on_epoch_start(self, trainer, epoch):
        self.last = dict(self.log)

    def on_batch_end(self, trainer, batch, losses):
        now = dict(self.log)
        self.steps.append({k: now.get(k, 0) - self.last.get(k, 0) for k in now if now.get(k, 0) != self.last.get(k, 0)})
        self.last = now


def count_collectives() -> dict:
    """Patch torch.distributed's collectives to count calls and bytes (outermost only)."""
    import torch.distributed as dist
    log, depth = {}, [0]
    for name in ("all_gather", "broadcast", "all_gather_object", "barrier", "all_reduce", "gather",
                 "scatter", "reduce", "broadcast_object_list", "send", "recv", "all_to_all"):
        fn = getattr(dist, name)

        def wrapped(*args, _fn=fn, _name=name, **kwargs):
            if depth[0] == 0:
                log[_name] = log.get(_name, 0) + 1
                t = args[1] if _name == "all_gather" else args[0] if _name == "broadcast" else None
                if isinstance(t, torch.Tensor):
                    log[_name + "_bytes"] = log.get(_name + "_bytes", 0) + t.numel() * t.element_size()
            depth[0] += 1
            try:
                return _fn(*args, **kwargs)
            finally:
                depth[0] -= 1
        setattr(dist, name, wrapped)
    return log


def train(swarm_or_shard, epochs=EPOCHS, checkpoint=None, resume_from=None, callbacks=(), fit=None, batched=False):
    """The run: SGD with momentum, APSO with noise every 2 batches, validation, and
    EarlyStopping(restore_best=True) (never stopping: the best epoch's weights at the end);
    ``batched``: the trainer's batched=."""
    loader, val = make_data()
    trainer = SwarmTrainer(swarm_or_shard, device="cpu", seed=7, batched=batched)
    # restore_best: its saved best weights (a swarm state inside a callback state) are gathered / cut too
    cbs = list(callbacks) + [EarlyStopping("val_loss", patience=10, restore_best=True)] \
        + ([Checkpoint(checkpoint)] if checkpoint else [])
    trainer.fit(loader, val_data=val, epochs=epochs,
                optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                metrics={"accuracy": accuracy}, callbacks=cbs, progress=False, resume_from=resume_from,
                **dict(FIT, **(fit or {})))
    return trainer


def summary(trainer) -> dict:
    """What the tests compare: the whole swarm's state, the History (without timings),
    evaluate and predict."""
    hist = trainer.history.to_dict()
    for r in hist["records"]:
        r.pop("seconds", None)
    _, val = make_data()
    ev = trainer.evaluate(val, {"accuracy": accuracy}, ensemble=True)
    ev_plain = trainer.evaluate(val, {"accuracy": accuracy})
    return {"swarm": trainer.sharded.state_dict(), "history": hist, "evaluate": ev.to_dict(),
            "evaluate_plain": ev_plain.to_dict(), "predict_ensemble": trainer.predict(val[0], use="ensemble"),
            "predict_best": trainer.predict(val[0]), "predict_2": trainer.predict(val[0], use=2)}


# ---------------------------------------------------------------- scenarios (one per rank)

def scenario_train(out, args):
    """From scratch (and, with "resume", a second trainer resuming a checkpoint); with "count", counted."""
    log = count_collectives() if args.get("count") else None
    world = distributed.init_process_group("gloo", timeout=args.get("timeout", 60))
    counter = Counter(log) if log is not None else None
    result = {}
    if args.get("scratch", True):
        trainer = train(distributed.shard(make_swarm(), world), checkpoint=args.get("checkpoint"),
                        callbacks=[counter] if counter else [], batched=args.get("batched", False))
        result["scratch"] = summary(trainer)
        if counter:
            result["steps"] = counter.steps
            result["world_counts"] = {"calls": dict(world.calls), "bytes": dict(world.bytes)}
            result["groups"] = len(trainer.swarm.layout.groups)
            result["row_bytes"] = [g.size * torch.empty((), dtype=g.dtype).element_size()
                                   for g in trainer.swarm.layout.groups]
    if args.get("resume"):
        trainer = train(distributed.shard(make_swarm(), world), resume_from=args["resume"])
        result["resumed"] = summary(trainer)
    return result


def scenario_bad(out, args):
    """Each bad input raises on this rank; the swarm is unchanged after a refused fit."""
    world = distributed.init_process_group("gloo", timeout=30)
    errors = {}
    try:
        distributed.shard(make_swarm(size=1), world)
    except ValueError as e:
        errors["k_lt_w"] = str(e)
    try:
        distributed.shard(make_swarm(seed=world.rank), world)
    except ValueError as e:
        errors["differ"] = str(e)
    sharded = distributed.shard(make_swarm(), world)
    before = distributed.fingerprint(sharded.local)
    try:
        train(sharded, fit={"alpha": 0.4 + 0.1 * world.rank})
    except ValueError as e:
        errors["alpha"] = str(e)
    try:
        train(sharded, epochs=2 + world.rank)
    except ValueError as e:
        errors["epochs"] = str(e)
    try:
        loader, val = make_data()
        SwarmTrainer(sharded, device="cpu", seed=world.rank).fit(loader, epochs=1, progress=False, **FIT)
    except ValueError as e:
        errors["seed"] = str(e)
    errors["unchanged"] = distributed.fingerprint(sharded.local) == before
    return errors


class Sleep(Callback):
    def __init__(self, rank, seconds):
        self.rank, self.seconds = rank, seconds

    def on_batch_end(self, trainer, batch, losses):
        if trainer.sharded.world.rank == self.rank and batch == 2:
            time.sleep(self.seconds)
            os._exit(3)


def scenario_hang(out, args):
    """Rank 1 stops answering before the APSO step of batch 4: rank 0 must time out."""
    world = distributed.init_process_group("gloo", timeout=args["timeout"])
    started = time.monotonic()
    try:
        train(distributed.shard(make_swarm(), world), callbacks=[Sleep(1, args["sleep"])])
    except distributed.DistributedError as e:
        return {"error": str(e), "seconds": time.monotonic() - started}
    finally:
        torch.distributed.destroy_process_group()  # the peer is gone by design: no closing barrier
    return {"error": None, "seconds": time.monotonic() - started}


class KillOnce(Callback):
    """After the checkpoint of epoch ``epoch`` (order > Checkpoint's), rank 1 SIGKILLs
    itself, once (a marker file remembers)."""
    order = 200

    def __init__(self, epoch, marker):
        self.epoch, self.marker = epoch, marker

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch and trainer.sharded.world.rank == 1 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def scenario_elastic(out, args):
    """Under torchrun with restarts: resume_from="auto" picks up the last checkpoint."""
    torch.set_num_threads(1)
    world = distributed.init_process_group("gloo", timeout=30)
    trainer = train(distributed.shard(make_swarm(), world), checkpoint=args["checkpoint"], resume_from="auto",
                    callbacks=[KillOnce(1, args["marker"])])
    result = summary(trainer)
    result["restart"] = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    return result


def main():
    name, out = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    import torch.distributed as dist
    try:
        result = globals()[f"scenario_{name}"](out, args)
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    except BaseException:
        with open(os.path.join(out, f"rank{rank}.err"), "a") as f:  # one entry per torchrun attempt
            f.write(f"[attempt {os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}]\n{traceback.format_exc()}")
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:
                pass
        raise
    # Done: every rank past its last collective before any tears the group down, then out
    # without the interpreter's finalization. Once in CI both ranks of a finished run died
    # with SIGABRT there ("terminate called without an active exception": gloo's threads
    # at teardown, cf. pytorch/pytorch#179291), which would read as a failed run.
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
