"""Time per training batch of a swarm: the seed's hand-written loop, the sequential trainer,
the batched trainer.

Workload (per batch): every one of K members takes a gradient step (SGD, lr 0.01, the
seed's ``F.nll_loss``) on a shared batch of 64, and every ``--evolve-every`` batches
(the seed's 16) the swarm takes an APSO step (alpha 0.5, a subset of min(6, K)), so the
APSO step's cost is amortised over the batches. Implementations:

- ``seed``: the seed chapter's loop on nytorch 1.1.0, as written there (a model object
  per particle with its own optimizer, ``loss.item()`` per particle, and
  ``swarm_algorithm``'s product arithmetic, which rebuilds every moved particle and its
  optimizer), except that the subset is drawn from the same torch generator as the
  trainer's (the seed draws with ``random.choices``) so that both make the same members;
- ``sequential``: ``SwarmTrainer(swarm, batched=False).fit(...)``;
- ``batched``: ``SwarmTrainer(swarm, batched=True).fit(...)``;
- ``batched_rule`` (with ``--conv-rule``): the same, its convolutions left to torch's
  own vmap batching rule (NCHW grouped convolutions) instead of
  :mod:`nytorch_ext.swarm.grouped_conv`'s channels-last ones;
- ``floor`` (with ``--floor``, the MLP only): the batched step written by hand for this
  one model, ``torch.baddbmm`` over the same [K, *shape] views of the swarm's buffers
  (what ``vmap`` computes, without ``vmap``, the model's modules or the trainer), the same
  SGD and the same APSO steps (``Swarm.apso_step`` from a generator seeded as the
  trainer's): how fast batching can be on this machine, and what the batched trainer's
  own overhead costs.

Models: ``mlp`` (64-64-10), ``conv8`` (the seed ConvNet adapted to 8x8 inputs, as in
examples/apso_digits.py) and ``conv28`` (the seed ConvNet on 28x28). Before timing, one
epoch of each implementation from the same members on the same data is checked to end
in the same members (``--tolerance``: batched matmuls and convolutions reduce in another
order, so batched agrees to rounding, not bit for bit).

Method: one process, ``--threads`` intra-op threads (default 1: steadier on a shared
machine), ``--warmup`` untimed epochs of each, then ``--repeats`` timed epochs of
``--batches`` batches each, the implementations interleaved round by round; reported:
the median ms per batch (and the minimum), and the speedups of the medians against
the sequential trainer and the seed loop. ``--quick`` (K in {4, 12}, fewer batches and
repeats) runs in under a minute; ``--tiny`` is the tests' smoke run.

Run: ``python benchmarks/swarm_training.py [--quick] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import nytorch_ext
import nytorch_ext.swarm.batched as batched_module
from nytorch_ext.swarm import Swarm, choose_subset
from nytorch_ext.swarm.batched import BatchedSwarm
from nytorch_ext.train import SwarmTrainer

try:
    import nytorch
    from nytorch.particle_module import PMProduct as SeedProduct
except ImportError:  # the bench extra installs it
    nytorch = None

LR, ALPHA, BATCH = 0.01, 0.5, 64


def conv_layers(side: int):
    """The seed ConvNet's layers for ``side``-pixel images (examples/apso_digits.py's
    ConvNet: as in the seed for 28x28, padded convolutions for smaller images)."""
    pad1, pad2 = (0, 0) if side >= 16 else (2, 1)
    s = (side + 2 * pad1 - 4) // 2 + 2 * pad2 - 2
    return nn.Conv2d(1, 10, 5, padding=pad1), nn.Conv2d(10, 20, 3, padding=pad2), nn.Linear(20 * s * s, 10)


def model_classes(lib):
    """The benchmark's models, subclassing ``lib.NytoModule`` (nytorch_ext or nytorch)."""

    class MLP(lib.NytoModule):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, x):
            return F.log_softmax(self.fc2(F.relu(self.fc1(x.flatten(1)))), dim=1)

    class ConvNet(lib.NytoModule):
        def __init__(self, side: int = 28):
            super().__init__()
            self.conv1, self.conv2, self.fc = conv_layers(side)

        def forward(self, x):
            out = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
            out = F.relu(self.conv2(out))
            return F.log_softmax(self.fc(out.flatten(1)), dim=1)

    return {"mlp": (MLP, (64,)), "conv8": (lambda: ConvNet(8), (1, 8, 8)), "conv28": (lambda: ConvNet(28), (1, 28, 28))}


# ------------------------------------------------------------------ the seed's loop (nytorch 1.1.0)

class SeedModel:  # the seed chapter's ConvModel
    @classmethod
    def from_product(cls, product):
        assert isinstance(product, SeedProduct)
        return cls(product.module())

    def __init__(self, particle):
        self.particle = particle.train()  # the seed calls train() before every step: always in train mode here
        self.optimizer = torch.optim.SGD(self.particle.parameters(), lr=LR)

    def product(self):
        return self.particle.product()

    def train(self, data, target):
        self.optimizer.zero_grad()
        loss = F.nll_loss(self.particle(data), target)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def seed_swarm_algorithm(pool, swarm_size, loss_list, alpha, generator):
    """The seed's swarm_algorithm; the subset drawn from ``generator`` (as the trainer draws it)."""
    idx_list = choose_subset(len(pool), swarm_size, generator=generator)
    idx_loss_list = sorted([(idx, loss_list[idx]) for idx in idx_list], key=lambda idx_loss: idx_loss[1])
    best_seed_idx, _ = idx_loss_list[0]
    for idx, _loss in idx_loss_list:
        if idx == best_seed_idx:
            continue
        new_product = alpha * pool[best_seed_idx].product() + (1 - alpha) * pool[idx].product()
        pool[idx] = SeedModel.from_product(new_product)


class SeedRun:
    def __init__(self, make, states, data, k, every, seed):
        first = nytorch.ParticleModule(make())
        self.pool = [SeedModel(first if i == 0 else first.clone_from(nytorch.ParticleModule(make())))
                     for i in range(k)]
        for m, s in zip(self.pool, states):
            m.particle.root_module.load_state_dict(s)
        self.data, self.every, self.batches = data, every, 0
        self.generator = torch.Generator().manual_seed(seed)
        self.subset = min(6, k)

    def epoch(self):
        for data, target in self.data:
            losses = [m.train(data, target) for m in self.pool]
            self.batches += 1
            if self.batches % self.every == 0:
                seed_swarm_algorithm(self.pool, self.subset, losses, ALPHA, self.generator)

    def members(self):
        return [torch.cat([p.detach().flatten() for p in m.particle.parameters()]) for m in self.pool]


class TrainerRun:
    def __init__(self, make, states, data, k, every, seed, batched, conv_rule=False):
        torch.manual_seed(0)
        modules = []
        for s in states:
            m = make()
            m.load_state_dict(s)
            modules.append(nytorch_ext.ParticleModule(m))
        self.swarm = Swarm.from_modules(modules)
        self.trainer = SwarmTrainer(self.swarm, "cpu", seed=seed, batched=batched)
        self.data, self.every, self.started, self.conv_rule = data, every, False, conv_rule

    def epoch(self):
        with self._rule() if self.conv_rule and not self.started else contextlib.nullcontext():
            self._fit()

    @staticmethod
    @contextlib.contextmanager
    def _rule():
        """The first fit builds (and later fits keep) a batched model without the grouped,
        channels-last convolutions."""
        real = batched_module.member_conv_mode
        batched_module.member_conv_mode = lambda module: contextlib.nullcontext()
        try:
            yield
        finally:
            batched_module.member_conv_mode = real

    def _fit(self):
        self.trainer.fit(self.data, epochs=1, optimizer=None if self.started else
                         (lambda params: torch.optim.SGD(params, lr=LR)), loss=F.nll_loss,
                         evolve_every=self.every, alpha=ALPHA, progress=False)
        self.started = True

    def members(self):
        return [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in self.swarm]


class FloorRun(TrainerRun):
    """The MLP's batched step by hand (see the module docstring): the swarm and
    generator of a :class:`TrainerRun`, the forward and backward as batched matmuls."""

    def __init__(self, make, states, data, k, every, seed):
        super().__init__(make, states, data, k, every, seed, batched=True)
        self.model = BatchedSwarm(self.swarm)
        names = [n.removeprefix("root_module.") for n, _ in self.swarm[0].named_parameters()]
        if names != ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]:
            raise ValueError(f"floor: written for the MLP, got parameters {names}")
        self.optimizer = torch.optim.SGD(self.model.leaves, lr=LR)
        self.subset, self.batches = min(6, k), 0

    def epoch(self):
        k, (w1, b1, w2, b2) = len(self.swarm), self.model.leaves
        for data, target in self.data:
            self.optimizer.zero_grad()
            x = data.flatten(1)
            hidden = torch.relu(torch.baddbmm(b1.unsqueeze(1), x.expand(k, *x.shape), w1.transpose(1, 2)))
            out = F.log_softmax(torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2)), dim=-1)
            losses = F.nll_loss(out.flatten(0, 1), target.repeat(k), reduction="none").view(k, -1).mean(1)
            losses.sum().backward()
            with self.model.writing():
                self.optimizer.step()
            values = losses.detach().tolist()
            self.batches += 1
            if self.batches % self.every == 0:
                self.swarm.apso_step(values, ALPHA, self.subset, generator=self.trainer.generator)


# ------------------------------------------------------------------ running

def make_runs(model: str, k: int, batches: int, every: int, impls):
    classes = model_classes(nytorch_ext)
    make_ext, shape = classes[model]
    torch.manual_seed(1234)
    states = [make_ext().state_dict() for _ in range(k)]
    g = torch.Generator().manual_seed(99)
    data = [(torch.randn(BATCH, *shape, generator=g), torch.randint(0, 10, (BATCH,), generator=g))
            for _ in range(batches)]
    runs = {}
    for impl in impls:
        if impl == "seed":
            runs[impl] = SeedRun(model_classes(nytorch)[model][0], states, data, k, every, seed=7)
        elif impl == "floor":
            runs[impl] = FloorRun(make_ext, states, data, k, every, seed=7)
        else:
            runs[impl] = TrainerRun(make_ext, states, data, k, every, seed=7, batched=impl != "sequential",
                                    conv_rule=impl == "batched_rule")
    return runs


def check_same(model, k, batches, every, impls, tolerance) -> float:
    """One epoch of every implementation from the same members: the largest difference
    from the sequential trainer's members (raises above ``tolerance``)."""
    runs = make_runs(model, k, batches, every, impls)
    for r in runs.values():
        r.epoch()
    ref = runs["sequential"].members()
    worst = 0.0
    for impl, r in runs.items():
        diff = max(float((a - b).abs().max()) for a, b in zip(r.members(), ref))
        if diff > tolerance:
            raise SystemExit(f"{model} K={k}: {impl} ends {diff:.3g} away from the sequential trainer's members "
                             f"(tolerance {tolerance})")
        worst = max(worst, diff)
    return worst


def bench(model, k, args, impls) -> dict:
    max_diff = check_same(model, k, min(args.batches, 2 * args.evolve_every), args.evolve_every, impls,
                          args.tolerance)
    runs = make_runs(model, k, args.batches, args.evolve_every, impls)
    for _ in range(args.warmup):
        for r in runs.values():
            r.epoch()
    times = {impl: [] for impl in impls}
    for _ in range(args.repeats):
        for impl, r in runs.items():
            t = time.perf_counter()
            r.epoch()
            times[impl].append((time.perf_counter() - t) * 1e3 / args.batches)
    med = {impl: statistics.median(ts) for impl, ts in times.items()}
    row = {"model": model, "k": k, "batches": args.batches, "max_diff": max_diff,
           "median_ms": med, "min_ms": {impl: min(ts) for impl, ts in times.items()},
           "speedup_vs_sequential": {impl: med["sequential"] / v for impl, v in med.items()}}
    if "seed" in med:
        row["speedup_vs_seed"] = {impl: med["seed"] / v for impl, v in med.items()}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mlp,conv8,conv28")
    ap.add_argument("--ks", default="4,12,32")
    ap.add_argument("--batches", type=int, default=32)
    ap.add_argument("--evolve-every", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--quick", action="store_true", help="K in {4, 12}, 16 batches, 3 repeats (under a minute)")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: K=2, the MLP, 4 batches")
    ap.add_argument("--json", help="write the rows as JSON to this path")
    ap.add_argument("--conv-rule", action="store_true",
                    help="also time batched_rule: the batched trainer with torch's own conv batching rule")
    ap.add_argument("--floor", action="store_true",
                    help="also time floor (MLP rows only): the batched step written by hand, no vmap or trainer")
    args = ap.parse_args(argv)
    if args.quick:
        args.ks, args.batches, args.repeats = "4,12", 16, 3
    if args.tiny:
        args.models, args.ks, args.batches, args.evolve_every, args.repeats, args.warmup = "mlp", "2", 4, 2, 1, 0
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args) -> int:
    impls = (["seed"] if nytorch is not None else []) + ["sequential", "batched"] + (
        ["batched_rule"] if args.conv_rule else [])
    if nytorch is None:
        print("nytorch is not installed (pip install nytorch==1.1.0): no seed rows", file=sys.stderr)
    rows = []
    print(f"ms per training batch (median of {args.repeats} epochs of {args.batches} batches; APSO every "
          f"{args.evolve_every}; {args.threads} thread(s); torch {torch.__version__})")
    columns = impls + (["floor"] if args.floor else [])
    print(f"{'model':7} {'K':>3} " + " ".join(f"{i:>11}" for i in columns) + "  batched/seq  batched/seed  max|diff|"
          + ("  floor/seq" if args.floor else ""))
    for model in args.models.split(","):
        for k in map(int, args.ks.split(",")):
            r = bench(model, k, args, impls + (["floor"] if args.floor and model == "mlp" else []))
            rows.append(r)
            seed = f"{r['speedup_vs_seed']['batched']:12.2f}x" if "speedup_vs_seed" in r else f"{'-':>13}"
            floor = (f"  {r['speedup_vs_sequential']['floor']:8.2f}x" if "floor" in r["median_ms"]
                     else f"  {'-':>9}" if args.floor else "")
            times = (f"{r['median_ms'][i]:11.3f}" if i in r["median_ms"] else f"{'-':>11}" for i in columns)
            print(f"{model:7} {k:3d} " + " ".join(times)
                  + f"  {r['speedup_vs_sequential']['batched']:10.2f}x {seed}  {r['max_diff']:.1e}{floor}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
