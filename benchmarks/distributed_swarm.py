"""A distributed swarm against one process: epoch time, and the APSO step's traffic.

Two measurements, both on the CPU (gloo) of this machine:

1. **Epoch time** on the digits swarm (examples/apso_digits.py: K=12 seed ConvNets
   adapted to 8x8, SGD on every batch of 64, APSO on 6 every 16 batches, validation):
   one process with 1 and with 2 intra-op threads (the best of the two is the
   baseline), against W=2 ranks under torchrun with one thread each. Reported: the
   median epoch seconds (History's ``seconds``, rank 0) and the speed-up; and, since
   the machine may be shared, each run's CPU seconds per epoch (the busier rank's): the
   wall time it would take with a free core per process. ``--batched``: every run trains
   with ``SwarmTrainer(batched=True)`` (one batched step for the process's or the rank's
   members) instead of one step per member.
2. **One APSO step**, our design (one ``all_gather`` of the K losses, one broadcast of
   the best's row per group, each rank blends its own members:
   :func:`nytorch_ext.swarm.distributed.sharded_apso_step`) against the naive one (an
   ``all_gather`` of every member's parameters, then each rank blends its members toward
   the best from the gathered copy), for the seed ConvNet (28x28) and 10 x
   Linear(1000, 1000), K=12 on W=2: bytes sent by all ranks per step (counted by the
   ranks' worlds) and the median milliseconds per step.

Run: ``python benchmarks/distributed_swarm.py [--quick] [--json out.json]``: it starts
the single-process runs and ``python -m torch.distributed.run --nproc-per-node=2``
itself (127.0.0.1, a free port). ``--quick``: 1 timed epoch instead of 3, fewer APSO
repetitions. The machine may be shared: the figures say what it was doing (load average).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))

from nytorch_ext import NytoModule, ParticleModule, distributed  # noqa: E402
from nytorch_ext.ops import multi_blend_  # noqa: E402
from nytorch_ext.swarm import Swarm  # noqa: E402
from nytorch_ext.swarm.apso import blend_plan, choose_subset  # noqa: E402
from nytorch_ext.train import Callback, SwarmTrainer, accuracy  # noqa: E402

K = 12


class CpuTime(Callback):
    """This process's CPU seconds per epoch (what an idle machine's wall time would be)."""

    def __init__(self):
        self.seconds, self.start = [], 0.0

    def on_epoch_start(self, trainer, epoch):
        self.start = time.process_time()

    def on_epoch_end(self, trainer, epoch, logs):
        self.seconds.append(time.process_time() - self.start)


def epoch_seconds(world, epochs: int, batched: bool = False) -> dict:
    """The digits run (apso_digits' defaults) on ``world``: each epoch's wall seconds (the
    History's) and this process's CPU seconds, after 1 warm-up epoch; ``batched``: the
    trainer's."""
    import apso_digits
    torch.manual_seed(0)
    train_set, val_set, _, side = apso_digits.digits_data(0.25, 0.2, 0)
    loader = DataLoader(train_set, batch_size=64, shuffle=True, drop_last=True)
    val = DataLoader(val_set, batch_size=512)
    swarm = distributed.shard(apso_digits.create_pool(K, side), world)
    trainer = SwarmTrainer(swarm, device="cpu", seed=0, batched=batched)
    cpu = CpuTime()
    history = trainer.fit(loader, val_data=val, epochs=epochs + 1, loss=F.nll_loss,
                          optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5),
                          evolve_every=16, alpha=0.5, subset_size=6, metrics={"accuracy": accuracy}, progress=False,
                          callbacks=[cpu])
    cpus = world.all_gather_object(cpu.seconds[1:])
    return {"wall": [r["seconds"] for r in history.records[1:]], "cpu_max_over_ranks": [max(c) for c in zip(*cpus)]}


class Linears(NytoModule):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(1000, 1000) for _ in range(10)])

    def forward(self, x):
        return self.layers(x)


def models():
    import apso_digits
    return {"seed ConvNet (28x28)": lambda: apso_digits.ConvNet(28), "10 x Linear(1000, 1000)": Linears}


def naive_step(sharded, losses, generator, alpha=0.5, subset=6):
    """The naive design: every rank gets every member's parameters, then blends its own."""
    world = sharded.world
    everyone = sharded.gather_losses(losses)  # the losses too, as ours
    storages = sharded.local.storages()
    longest = max(len(b) for b in sharded.blocks)
    gathered = []
    for base in sharded.local.buffers():
        padded = torch.zeros((longest, base.shape[1]), dtype=base.dtype)
        padded[:len(base)] = base
        gathered.append(world.all_gather(padded))
    indices = choose_subset(sharded.size, subset, generator=generator)
    best, weights = blend_plan(indices, everyone, alpha)
    owner = sharded.owner(best)
    row = best - sharded.blocks[owner].start
    mine = [i for i in weights if sharded.owns(i)]
    for g, parts in enumerate(gathered):
        if mine:
            multi_blend_([storages[i - sharded.offset].buffers[g] for i in mine], parts[owner][row],
                         [weights[i] for i in mine])


def apso_traffic(world, reps: int) -> dict:
    out = {}
    for name, make in models().items():
        torch.manual_seed(0)
        sharded = distributed.shard(Swarm.spawn(ParticleModule(make()), K, init="clone"), world)
        n = sum(g.size for g in sharded.local.layout.groups)
        g_ours, g_naive = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        row = {"parameters": n}
        steps = (("ours", lambda ls, g, s=sharded: s.apso_step(ls, 0.5, 6, generator=g), g_ours),
                 ("naive", lambda ls, g, s=sharded: naive_step(s, ls, g), g_naive))
        for design, step, gen in steps:
            times = []
            world.reset_counts()
            for r in range(reps + 1):
                losses = torch.rand(len(sharded.local), generator=torch.Generator().manual_seed(r)).tolist()
                world.barrier()
                t = time.perf_counter()
                step(losses, gen)
                world.barrier()
                if r:
                    times.append(time.perf_counter() - t)
            sent = sum(v for k, v in world.bytes.items() if k != "barrier")
            total = sum(world.all_gather_object(sent))
            row[design] = {"bytes_per_step": total / (reps + 1), "ms_per_step": 1000 * statistics.median(times)}
        row["bytes_ratio"] = row["naive"]["bytes_per_step"] / row["ours"]["bytes_per_step"]
        out[name] = row
    return out


def rank_main(args) -> None:
    torch.set_num_threads(1)
    world = distributed.init_process_group("gloo", timeout=600)
    result = {"epoch_seconds": epoch_seconds(world, args.epochs, args.batched), "apso": apso_traffic(world, args.reps)}
    if world.is_writer:
        with open(args.result, "w") as f:
            json.dump(result, f)
    torch.distributed.destroy_process_group()


def single_main(args) -> None:
    torch.set_num_threads(args.threads)
    with open(args.result, "w") as f:
        json.dump({"epoch_seconds": epoch_seconds(distributed.LocalWorld(), args.epochs, args.batched)}, f)


def run(cmd, env=None) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")


def driver(args) -> dict:
    me = os.path.abspath(__file__)
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    load_before = os.getloadavg()
    results = {"K": K, "epochs_timed": args.epochs, "cores": os.cpu_count(), "batched": args.batched}
    batched = ["--batched"] if args.batched else []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            path = os.path.join(tmp, f"single{threads}.json")
            run([sys.executable, me, "--single", "--threads", str(threads), "--epochs", str(args.epochs),
                 "--result", path, *batched], env)
            results[f"single_{threads}_thread"] = json.load(open(path))["epoch_seconds"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        path = os.path.join(tmp, "w2.json")
        run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", me, "--rank", "--epochs",
             str(args.epochs), "--reps", str(args.reps), "--result", path, *batched], env)
        w2 = json.load(open(path))
    results["w2_1_thread_each"] = w2["epoch_seconds"]
    runs = ("single_1_thread", "single_2_thread", "w2_1_thread_each")
    medians = {k: statistics.median(results[k]["wall"]) for k in runs}
    cpu = {k: statistics.median(results[k]["cpu_max_over_ranks"]) for k in runs}
    results["median_epoch_seconds"] = medians
    results["median_epoch_cpu_seconds"] = cpu
    results["speedup_vs_best_single"] = min(medians[k] for k in runs[:2]) / medians["w2_1_thread_each"]
    # what the wall time would be with a core per process and nothing else running
    results["cpu_speedup_vs_1_thread"] = cpu["single_1_thread"] / cpu["w2_1_thread_each"]
    results["apso"] = w2["apso"]
    results["load_average_before_after"] = [load_before, os.getloadavg()]
    return results


def report(r: dict) -> str:
    m, c = r["median_epoch_seconds"], r["median_epoch_cpu_seconds"]
    lines = [f"digits swarm, K={r['K']}{', batched=True' if r.get('batched') else ''}, median of {r['epochs_timed']} epoch(s) (load average before/after: "
             f"{r['load_average_before_after'][0][0]:.2f} / {r['load_average_before_after'][1][0]:.2f}, "
             f"{r['cores']} cores)",
             f"  one process, 1 thread:   {m['single_1_thread']:.3f} s/epoch (CPU {c['single_1_thread']:.3f} s)",
             f"  one process, 2 threads:  {m['single_2_thread']:.3f} s/epoch (CPU {c['single_2_thread']:.3f} s)",
             f"  W=2, 1 thread each:      {m['w2_1_thread_each']:.3f} s/epoch (CPU {c['w2_1_thread_each']:.3f} s, "
             f"the busier rank)",
             f"  wall-time speed-up vs the best single process: {r['speedup_vs_best_single']:.2f}x (target >= 1.5x); "
             f"CPU-time ratio vs 1 thread: {r['cpu_speedup_vs_1_thread']:.2f}x (the speed-up with a free core per rank)",
             f"APSO step, K={r['K']}, W=2 (bytes sent by all ranks per step, median ms):"]
    for name, row in r["apso"].items():
        lines.append(f"  {name} ({row['parameters']:,} parameters): ours {row['ours']['bytes_per_step']:,.0f} B "
                     f"{row['ours']['ms_per_step']:.2f} ms; naive {row['naive']['bytes_per_step']:,.0f} B "
                     f"{row['naive']['ms_per_step']:.2f} ms; {row['bytes_ratio']:.1f}x fewer bytes "
                     f"(target >= K/2 = {r['K'] // 2})")
    return "\n".join(lines)


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 timed epoch, 5 APSO repetitions")
    p.add_argument("--json", metavar="PATH", help="write the figures there")
    p.add_argument("--epochs", type=int, default=None, help="timed epochs (default 3; 1 with --quick)")
    p.add_argument("--reps", type=int, default=None, help="timed APSO steps per design (default 20; 5 with --quick)")
    p.add_argument("--batched", action="store_true", help="every run with SwarmTrainer(batched=True)")
    p.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.epochs = args.epochs or (1 if args.quick else 3)
    args.reps = args.reps or (5 if args.quick else 20)
    if args.rank:
        return rank_main(args)
    if args.single:
        return single_main(args)
    results = driver(args)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
