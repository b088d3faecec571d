"""SwarmTrainer's overhead against hand-written per-particle training.

Both sides do the same work on the same data, from the same starting swarm: every
batch, each of K particles takes an SGD step (zero_grad, forward, loss, backward,
step) and reports its loss; every ``--evolve-every`` batches the swarm takes an APSO
step (``Swarm.apso_step``) on that batch's losses. With ``--features all`` (the
default) both sides also clip every particle's gradient norm before its step
(``clip_grad_norm_``), step a ``StepLR`` scheduler per particle at the end of the epoch
and write one CSV row per particle and epoch (its mean training loss and learning
rate); ``--features none`` is the bare loop. The hand-written side is the seed
chapter's loop (``loss.item()`` per particle) with those additions; the trainer side is
``SwarmTrainer.fit(..., progress=False)`` with no validation data or metrics and, for
``all``, ``scheduler=``, ``grad_clip_norm=`` and a ``CSVLogger``. Before timing, one run
of each is checked to end in bit-identical parameters.

Method: one process, ``--warmup`` untimed runs of each, then ``--repeats`` timed pairs
of runs, hand and trainer back to back (which goes first alternates), each run one
epoch from the same restored state. Reported, for wall time and for the process's CPU
time (steadier on a machine shared with other work; the default single thread makes
the two comparable): the median time of each, the ratio trainer / hand of the
medians, the median of the per-pair ratios (the most robust to drift on a busy
machine, and the one held to the target < 1.05), and the ratio of the minimums.
``--model tiny`` (almost no compute per step) shows the per-step overhead at its
largest.

Run: ``python benchmarks/trainer_overhead.py`` (``--help`` for the workload options).
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from nytorch_ext import NytoModule, ParticleModule
from nytorch_ext.swarm import Swarm
from nytorch_ext.train import CSVLogger, SwarmTrainer


class ConvNet(NytoModule):
    """The seed chapter's ConvNet, sized for 8x8 images (as in examples/apso_digits.py)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5, padding=2)
        self.conv2 = nn.Conv2d(10, 20, 3, padding=1)
        self.fc = nn.Linear(20 * 4 * 4, 10)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        out = F.relu(self.conv2(out))
        return F.log_softmax(self.fc(out.flatten(1)), dim=1)


class MLP(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.flatten(1)))), dim=1)


class Tiny(NytoModule):
    """Almost no compute: what is left is per-step framework cost, where overhead shows most."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)


def make_batches(n_batches: int, batch_size: int, seed: int) -> list:
    """Digits-shaped (1x8x8) batches: scikit-learn's digits when installed, else random."""
    g = torch.Generator().manual_seed(seed)
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(d.target, dtype=torch.long)
        idx = torch.randint(0, len(y), (n_batches * batch_size,), generator=g)
        x, y = x[idx], y[idx]
    except ImportError:
        x = torch.randn(n_batches * batch_size, 1, 8, 8, generator=g)
        y = torch.randint(0, 10, (n_batches * batch_size,), generator=g)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]


def make_swarm(model: str, k: int, seed: int) -> Swarm:
    torch.manual_seed(seed)
    cls = {"conv": ConvNet, "mlp": MLP, "tiny": Tiny}[model]
    pool = [ParticleModule(cls()) for _ in range(k)]
    return Swarm([pool[0]] + [pool[0].clone_from(p) for p in pool[1:]])


def step_lr(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


def hand_written(swarm, batches, args, apso_seed: int) -> None:
    """The seed's loop on a Swarm (in-place APSO instead of rebuilding models), plus
    clipping, schedulers and a CSV log with ``--features all``."""
    features = args.features == "all"
    optimizers = [torch.optim.SGD(m.parameters(), lr=args.lr) for m in swarm]
    schedulers = [step_lr(o) for o in optimizers] if features else []
    params = [list(m.parameters()) for m in swarm]
    generator = torch.Generator().manual_seed(apso_seed)
    loss_sums = [0.0] * len(swarm)
    for m in swarm:
        m.train()
    for batch_idx, (data, target) in enumerate(batches):
        loss_list = []
        for i, (model, optimizer) in enumerate(zip(swarm, optimizers)):
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            if features:
                torch.nn.utils.clip_grad_norm_(params[i], args.clip)
            optimizer.step()
            loss_list.append(loss.item())
        if (batch_idx + 1) % args.evolve_every == 0:
            swarm.apso_step(loss_list, args.alpha, args.subset_size, generator=generator)
        for i, v in enumerate(loss_list):
            loss_sums[i] += v * len(target)
    if features:
        lrs = [o.param_groups[0]["lr"] for o in optimizers]
        for s in schedulers:
            s.step()
        samples = sum(len(t) for _, t in batches)
        with open(args.csv_hand, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "member", "train_loss", "lr"])
            writer.writerows([0, i, loss_sums[i] / samples, lrs[i]] for i in range(len(swarm)))


def with_trainer(swarm, batches, args, apso_seed: int) -> None:
    trainer = SwarmTrainer(swarm, device="cpu", seed=apso_seed)
    extra = {}
    if args.features == "all":
        extra = {"scheduler": step_lr, "grad_clip_norm": args.clip, "callbacks": [CSVLogger(args.csv_trainer)]}
    trainer.fit(batches, epochs=1, optimizer=lambda p: torch.optim.SGD(p, lr=args.lr), loss=F.nll_loss,
                evolve_every=args.evolve_every, alpha=args.alpha, subset_size=args.subset_size, progress=False,
                **extra)


def snapshot(swarm) -> dict:
    return {k: v.clone() for k, v in enumerate(swarm.buffers())}


def restore(swarm, state: dict) -> None:
    with torch.no_grad():
        for k, b in enumerate(swarm.buffers()):
            b.copy_(state[k])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", choices=["conv", "mlp", "tiny"], default="conv")
    p.add_argument("--particles", type=int, default=12)
    p.add_argument("--batches", type=int, default=32, help="batches per timed run (one epoch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--evolve-every", type=int, default=16)
    p.add_argument("--subset-size", type=int, default=6)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--features", choices=["all", "none"], default="all",
                   help="all: gradient clipping, a StepLR scheduler and a CSV log on both sides; none: the bare loop")
    p.add_argument("--clip", type=float, default=1.0, help="the gradient-norm clip (--features all)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scratch = tempfile.mkdtemp(prefix="trainer_overhead_")
    args.csv_hand, args.csv_trainer = os.path.join(scratch, "hand.csv"), os.path.join(scratch, "trainer.csv")

    batches = make_batches(args.batches, args.batch_size, args.seed)
    swarm = make_swarm(args.model, args.particles, args.seed)
    start = snapshot(swarm)

    # the same work: one run of each from the same state ends in the same parameters
    hand_written(swarm, batches, args, apso_seed=1)
    after_hand = snapshot(swarm)
    restore(swarm, start)
    with_trainer(swarm, batches, args, apso_seed=1)
    same = all(torch.equal(after_hand[k], b) for k, b in enumerate(swarm.buffers()))
    if not same:
        raise SystemExit("the trainer and the hand-written loop disagree; timing them would compare different work")

    wall = {"hand": [], "trainer": []}
    cpu = {"hand": [], "trainer": []}
    runs = {"hand": hand_written, "trainer": with_trainer}
    for i in range(args.warmup + args.repeats):
        for name in (("hand", "trainer") if i % 2 == 0 else ("trainer", "hand")):  # neither always goes first
            fn = runs[name]
            restore(swarm, start)
            t0, c0 = time.perf_counter(), time.process_time()
            fn(swarm, batches, args, apso_seed=i)
            t1, c1 = time.perf_counter(), time.process_time()
            if i >= args.warmup:
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)

    steps = args.batches * args.particles
    print(f"workload: {args.particles} x {args.model} particles, {args.batches} batches of {args.batch_size}, "
          f"APSO({args.subset_size}) every {args.evolve_every}; {steps} SGD steps a run; features: {args.features}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.repeats} runs each")
    result = {"same": same, "features": args.features}
    for label, times in (("wall", wall), ("cpu", cpu)):
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["trainer"] / med["hand"]
        min_ratio = min(times["trainer"]) / min(times["hand"])
        paired = statistics.median(t / h for t, h in zip(times["trainer"], times["hand"]))
        print(f"{label:>4} time: hand-written median {med['hand'] * 1e3:7.1f} ms ({med['hand'] / steps * 1e6:5.0f} us/step), "
              f"SwarmTrainer median {med['trainer'] * 1e3:7.1f} ms; ratio trainer/hand: of medians {ratio:.4f}, "
              f"median of paired runs {paired:.4f}, of mins {min_ratio:.4f}")
        result.update({f"{label}_hand_s": med["hand"], f"{label}_trainer_s": med["trainer"],
                       f"{label}_ratio": ratio, f"{label}_paired_ratio": paired, f"{label}_min_ratio": min_ratio})
    verdict = "met" if result["wall_paired_ratio"] < 1.05 else "NOT met"
    print(f"target: wall-time ratio (median of paired runs) < 1.05: {verdict}; "
          f"same parameters after one run: {same}")
    return result


if __name__ == "__main__":
    main()
