"""How the flat-buffer pool behaves: cost of a particle op against the number of live
particles, bytes the pool holds after particles are freed, and the large-particle op
timing that recycling exists for.

    python benchmarks/pool_scaling.py              # every section (results: docs/benchmarks.md)
    python benchmarks/pool_scaling.py --live 0 20000 --ops 200
"""
from __future__ import annotations

import argparse
import gc
import time

import torch
from torch import nn

import nytorch_ext as nyto
from nytorch_ext.particles import pool as buffer_pool


class Small(nyto.NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)


class Sized(nyto.NytoModule):
    def __init__(self, n: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n))


class Big(nyto.NytoModule):
    def __init__(self, layers: int = 10, width: int = 1000):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))


def held_bytes(pool) -> int:
    """Bytes of the buffers the pool holds that nobody else uses."""
    return pool.free_bytes()


def op_cost(live: int, ops: int) -> float:
    """Microseconds per ``p * 3.0`` (a new particle) with ``live`` other particles alive."""
    p = nyto.ParticleModule(Small())
    keep = [p * 1.0 for _ in range(live)]
    for _ in range(20):
        r = p * 3.0
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(ops):
            r = p * 3.0
        samples.append((time.perf_counter() - t0) / ops * 1e6)
    del keep, r
    gc.collect()
    return min(samples)  # the least disturbed run (the machine may be shared)


def bytes_after_freeing(count: int, numel: int, distinct: bool) -> int:
    buffer_pool.DEFAULT_POOL.clear()
    gc.collect()
    if distinct:
        made = [nyto.ParticleModule(Sized(numel + 64 * i)) * 1.0 for i in range(count)]
    else:
        p = nyto.ParticleModule(Sized(numel))
        made = [p * 1.0 for _ in range(count)]
        del p
    del made
    gc.collect()
    return held_bytes(buffer_pool.DEFAULT_POOL)


def lend_cost(n: int = 20000) -> float:
    """Microseconds per lend of a buffer dropped at once (recycled every time)."""
    pool = buffer_pool.BufferPool()
    cpu = torch.device("cpu")
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            pool.lend(256, torch.float32, cpu)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def big_blend(rounds: int) -> float:
    a = nyto.ParticleModule(Big())
    b = a.randn()
    for _ in range(3):
        c = (0.5 * a + 0.5 * b)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        c = (0.5 * a + 0.5 * b)
        times.append(time.perf_counter() - t0)
    del c
    return min(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--live", type=int, nargs="*", default=[0, 2000, 20000])
    ap.add_argument("--ops", type=int, default=200)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    print(f"lend + drop (one buffer recycled):  {lend_cost():8.2f} us")
    for live in args.live:
        print(f"p*3.0 with {live:6d} live particles: {op_cost(live, args.ops):8.1f} us/op")
    if not args.skip_memory:
        n4mb = (4 << 20) // 4
        print(f"held after freeing 100 x 4 MB particles (one size):  "
              f"{bytes_after_freeing(100, n4mb, False) / 2**20:7.1f} MiB")
        print(f"held after freeing 100 x 4 MB particles (100 sizes): "
              f"{bytes_after_freeing(100, n4mb, True) / 2**20:7.1f} MiB")
        buffer_pool.DEFAULT_POOL.clear()
        gc.collect()
    print(f"(0.5*a + 0.5*b) on 10 x Linear(1000, 1000): {big_blend(30):.2f} ms (min of 30)")


if __name__ == "__main__":
    main()
