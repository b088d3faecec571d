"""Side-by-side timing of nytorch_ext against what users write today.

Every row of a table runs in this process on the same data, after warm-up, and the
implementations of one workload are timed round-robin (one sample of each per round)
so that machine noise hits them alike; a sample is the mean of back-to-back calls
lasting about 10 ms (``--cold``: one call, right after the other implementations'). Before anything is timed, the result of
every implementation is compared with a float64 reference; a disagreement stops
the run with a non-zero exit status and names the implementation. Reported per
row: median and min-max time over the rounds, effective GB/s (the bytes that must
move), the fraction of a measured same-size copy's bandwidth, and speedups against
the eager per-parameter loop, torch._foreach_*, the flat-buffer floor and nytorch.

    python benchmarks/fused_vs_eager.py                  # full run (a few minutes)
    python benchmarks/fused_vs_eager.py --quick          # the short version (the README's main job)
    python benchmarks/fused_vs_eager.py --json out.json --plot out.png
    python benchmarks/fused_vs_eager.py --device all --dtype bfloat16 --compile
    python benchmarks/fused_vs_eager.py --workloads apso --shapes mlp200x64

Workloads (a = alpha = 0.3, beta = 0.9; W, V, U: parameter-shaped tensors):
  blend_      W <- (1-a) W + a V, in place                  floor: lerp_ on one flat buffer
  axpby_      W <- W + 0.1 V, in place                       floor: add_(alpha=) on one flat buffer
  axpby       out = 0.9 W + 0.1 V (a new result)             floor: torch.lerp(out=) (0.9 + 0.1 = 1)
  momentum    out = W + beta (V - U) (a new result)          no single native op: no floor
  p.blend     (a*p0 + (1-a)*p1).module() on particles        floor: lerp_ on one flat buffer
  p.blend_    c <- (1-a) c + a b, in place on particles      floor: lerp_ on one flat buffer
  p.momentum  (w2 + beta*(w1 - w0)).module() on particles    (momentum as model arithmetic)
  p.module    product.module() alone: a particle from an evaluated product, no arithmetic
  apso        APSO subset update: from a pool of 12 particles, 6 distinct members are
              drawn (a fixed-seed generator, identical for every implementation, new
              subset each round), and the 5 that are not the subset's best (lowest
              loss) move toward it: W_i <- (1-a) W_i + a W_best
Shapes: flat buffers of 1e4..1e8 elements (the size sweep, capped by free memory),
mlp200x64 (200 x Linear(64, 64): 400 small tensors), mlp10x1000 (10 x Linear(1000, 1000):
20 large tensors), convnet (the seed's Conv2d(1,10,5), Conv2d(10,20,3), Linear(2000,10)).
Any mlpNxD is accepted by --shapes.

Implementation families (the JSON's "family" field): eager (a per-parameter PyTorch
loop), foreach (torch._foreach_*), floor (one native op over one flat buffer),
torch-flat (a torch expression over flat buffers), compile (torch.compile of the eager
expression, with --compile; compilation happens in warm-up, outside the timing),
nytorch (nytorch 1.1.0, when installed), ext-ops (nytorch_ext.ops), ext-particle
(nytorch_ext's particle API and nytorch_ext.swarm), dispatch (the registered op called
bare through torch.ops, without the Python wrapper: what the wrapper costs on top).

The run ends with a verdict of at most about ten lines (also the JSON's "verdict"): the
headline ratios against nytorch, torch._foreach_* and the floor, and every row where
nytorch_ext is slower than the best torch alternative of its group, with the reason.
The dispatch line measures a custom op's fixed cost: a bare torch.ops call of ours on
0-element tensors (no work) against torch's own in-place op on the same.

Row names: "nytorch 1.1.0: X" and "nytorch_ext: X" run the same user code X on each
library (nytorch_ext is a drop-in replacement); "seed swarm_algorithm" is the seed
chapter's APSO loop, a new particle per moved member from (a*best + (1-a)*m).module();
"(tensors)" rows do the arithmetic on plain per-parameter tensors and build no module.
%copy compares GB/s with a copy that writes as many elements, in its fastest round.
"""
from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

import nytorch_ext
from nytorch_ext import ops

DTYPES = {"float32": torch.float32, "float64": torch.float64,
          "float16": torch.float16, "bfloat16": torch.bfloat16}
# Largest error allowed against the float64 reference, relative to max(1, max |reference|).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}

KERNEL_WORKLOADS = ["blend_", "axpby_", "axpby", "momentum"]
PARTICLE_WORKLOADS = ["p.blend", "p.blend_", "p.momentum", "p.module", "apso"]
WORKLOADS = KERNEL_WORKLOADS + PARTICLE_WORKLOADS
FAMILIES = ["eager", "foreach", "floor", "torch-flat", "compile", "nytorch", "ext-ops", "ext-particle", "dispatch"]
# The torch alternatives a nytorch_ext row is judged against (the best of them in its group).
TORCH_FAMILIES = ("eager", "foreach", "floor", "torch-flat", "compile")
OURS = ("ext-ops", "ext-particle")

ALPHA, BETA = 0.3, 0.9           # blend weight, momentum coefficient
AXPBY = (0.9, 0.1)                # a + b = 1, so torch.lerp computes the same thing
POOL, SUBSET, APSO_SEED = 12, 6, 1234

FULL = dict(sizes=[10 ** k for k in range(4, 9)], shapes=["mlp200x64", "mlp10x1000", "convnet"],
            rounds=25, warmup=5, budget=3.0)
QUICK = dict(sizes=[10 ** 4, 10 ** 5, 10 ** 6], shapes=["mlp200x64", "convnet"],
             rounds=7, warmup=2, budget=0.5)
TINY = dict(sizes=[10 ** 3, 10 ** 4], shapes=["mlp4x32", "mlp20x8", "convnet"],
            rounds=3, warmup=1, budget=0.05)


class BenchmarkError(Exception):
    """An implementation disagreed with the reference or failed: the run stops."""


@dataclass
class Row:
    workload: str
    shape: str
    impl: str
    family: str
    device: str
    dtype: str
    elements: int = 0                 # per operand / per particle
    bytes_moved: int = 0              # per call, the minimum that must move
    rounds: int = 0
    median_ms: float = float("nan")
    min_ms: float = float("nan")
    max_ms: float = float("nan")
    gbps: float = float("nan")
    copy_fraction: float = float("nan")
    speedup: dict = field(default_factory=dict)
    checked: bool = False             # compared with the float64 reference before timing
    max_error: float = float("nan")   # relative to max(1, max |reference|)
    tolerance: float = float("nan")
    skipped: str | None = None


@dataclass
class Impl:
    name: str
    family: str
    run: Callable[[], object]
    result: Callable[[], list]        # the values the last run produced, as 1-D-able tensors
    prepare: Callable[[], None] = lambda: None   # back to the initial state
    external: bool = False            # failures become skipped rows (nytorch, torch.compile)


@dataclass
class Lin:
    """A float64 reference: sum_k coeffs[k] * tensors[k], evaluated in chunks."""
    coeffs: tuple
    tensors: tuple


@dataclass
class Case:
    workload: str
    shape: str
    device: str
    dtype: torch.dtype
    elements: int
    bytes_moved: int
    copy_elements: int                # the same-size copy writes as many elements as the workload
    reference: list                   # one Lin per result piece
    impls: list = field(default_factory=list)
    skipped: list = field(default_factory=list)   # (name, family, reason)

    def add(self, impl: Impl | None) -> None:
        if impl is not None:
            self.impls.append(impl)

    def skip(self, name: str, family: str, reason: str) -> None:
        self.skipped.append((name, family, reason))


# --------------------------------------------------------------------- timing

def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _call_seconds(fn, device: str, calls: int = 1) -> float:
    """Seconds per call of ``calls`` back-to-back calls of ``fn``."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


# A sample of a fast call is the mean of back-to-back calls lasting about this long (as
# timeit and torch.utils.benchmark do): one call of a few microseconds is mostly timer and
# the cache misses left by the implementation timed before it. COLD = True (--cold) times
# one call per round instead: every call then starts after the others have run.
SAMPLE_SECONDS = 0.01
MAX_CALLS = 5000
COLD = False


def time_round_robin(fns: dict, device: str, rounds: int, warmup: int, budget: float) -> dict:
    """Seconds per call of each function, one sample of each per round. Warm-up runs
    `warmup` rounds (at least 2; fewer than `warmup` once they took `budget` seconds)
    and fixes each function's calls per sample (see SAMPLE_SECONDS). The number of
    timed rounds is `rounds`, lowered (to no fewer than min(5, rounds)) so that they
    take about `budget` seconds."""
    spent, done = 0.0, 0
    last = {name: 0.0 for name in fns}
    while done < max(2, warmup) and (done < 2 or spent < budget):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            last[name] = time.perf_counter() - t0
        spent, done = spent + sum(last.values()), done + 1
    calls = {name: 1 if COLD else max(1, min(MAX_CALLS, int(SAMPLE_SECONDS / max(t, 1e-9)))) for name, t in last.items()}
    per_round = sum(last[name] * calls[name] for name in fns)
    n = max(min(5, rounds), min(rounds, int(budget / max(per_round, 1e-9))))
    times: dict = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            times[name].append(_call_seconds(fn, device, calls[name]))
    return times


_COPY_BW: dict = {}


def copy_bandwidth(n: int, dtype: torch.dtype, device: str, rounds: int, warmup: int, budget: float) -> float:
    """Bytes/s of a warm copy of n elements (read n, write n) in its fastest round,
    measured once per size: the ceiling the rows are compared with."""
    key = (n, dtype, device)
    if key not in _COPY_BW:
        src = torch.randn(n, device=device).to(dtype)
        dst = torch.empty_like(src)
        t = time_round_robin({"copy": lambda: dst.copy_(src)}, device, rounds, warmup, budget)["copy"]
        _COPY_BW[key] = 2 * n * src.element_size() / min(t)
    return _COPY_BW[key]


# ------------------------------------------------------------------ memory

def available_bytes(device: str) -> int:
    """Memory the run may use on `device`: free GPU memory, or MemAvailable."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def memory_needed(workload: str, elements: int, elem: int) -> int:
    """A generous estimate of the peak memory of one case (buffers, results, temporaries)."""
    if workload == "apso":
        return (6 * POOL + 4) * elements * elem + 4 * elements * 8
    if workload in PARTICLE_WORKLOADS:
        return 24 * elements * elem + 4 * elements * 8
    return 16 * elements * elem + 4 * min(elements, CHUNK) * 8


# ------------------------------------------------------------------ shapes

def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.0f} MB"


def size_name(n: int) -> str:
    k = round(math.log10(n)) if n > 0 else 0
    return f"flat 1e{k}" if 10 ** k == n else f"flat {n}"


def make_model(base: type, name: str) -> nn.Module:
    """The model `name` (mlpNxD or convnet) as a subclass of `base` (nn.Module, or
    nytorch's or nytorch_ext's NytoModule)."""
    if name == "convnet":
        class ConvNet(base):
            def __init__(self):
                super().__init__()
                self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 3)
                self.fc = nn.Linear(2000, 10)

            def forward(self, x):
                x = torch.relu(self.conv1(x))
                return self.fc(torch.relu(self.conv2(x)).flatten(1))
        return ConvNet()
    count, width = _mlp_spec(name)

    class MLP(base):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(count)])

        def forward(self, x):
            return self.layers(x)
    return MLP()


def _mlp_spec(name: str) -> tuple[int, int]:
    try:
        count, width = name.removeprefix("mlp").split("x")
        if name.startswith("mlp"):
            return int(count), int(width)
    except ValueError:
        pass
    raise ValueError(f"unknown shape {name!r}: use convnet, mlpNxD (N x Linear(D, D)) or flat")


def model_shapes(name: str) -> list[tuple[int, ...]]:
    with torch.device("meta"):
        return [tuple(p.shape) for p in make_model(nn.Module, name).parameters()]


def numel(shapes) -> int:
    return sum(math.prod(s) for s in shapes)


def views(flat: torch.Tensor, shapes) -> list[torch.Tensor]:
    """Per-parameter views of one flat buffer."""
    sizes = [math.prod(s) for s in shapes]
    return [v.view(s) for v, s in zip(flat.split(sizes), shapes)]


def flat_views(tensors) -> list[torch.Tensor]:
    """Tensors as 1-D views, in order: one result, compared with its reference
    segment by segment (no concatenated copy)."""
    return [t.detach().reshape(-1) for t in tensors]


def params_of(module) -> list[torch.Tensor]:
    return flat_views(module.parameters())


def values_of(x) -> list[torch.Tensor]:
    """A result as 1-D segments: a tensor, a list of tensors, or a module's parameters."""
    if isinstance(x, torch.Tensor):
        return [x.detach().reshape(-1)]
    if isinstance(x, (list, tuple)):
        return flat_views(x)
    return params_of(x)


def load_values(module, flat: torch.Tensor) -> None:
    with torch.no_grad():
        for p, v in zip(module.parameters(), views(flat, [p.shape for p in module.parameters()])):
            p.copy_(v)


def randn_flats(count: int, n: int, device: str, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g).to(device=device, dtype=dtype) for _ in range(count)]


# ------------------------------------------------------------ optional peers

def import_nytorch():
    """(nytorch module, its ParticleModule, label) or (None, None, reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nytorch
            from nytorch.particle_module import ParticleModule as NyParticleModule
    except Exception as exc:  # ImportError, or a broken install
        return None, None, (f"nytorch is not installed or does not import ({type(exc).__name__}: {exc}); "
                            "pip install nytorch==1.1.0 to compare with it")
    try:
        from importlib.metadata import version
        label = f"nytorch {version('nytorch')}"
    except Exception:
        label = "nytorch"
    return nytorch, NyParticleModule, label


def import_swarm():
    """nytorch_ext.swarm, or the reason it is missing."""
    try:
        from nytorch_ext import swarm
        swarm.apso_step, swarm.momentum_step, swarm.Swarm  # noqa: B018
        return swarm, None
    except (ImportError, AttributeError) as exc:
        return None, f"nytorch_ext.swarm is not available in this build ({type(exc).__name__}: {exc})"


def compiled(fn, enabled: bool):
    """torch.compile(fn), or None when --compile is off (a fresh cache per case)."""
    if not enabled:
        return None
    import torch._dynamo
    torch._dynamo.reset()
    return torch.compile(fn)


COMPILE_OFF = "off by default (compiling takes 10-30 s per case); pass --compile"


# ------------------------------------------------------------ kernel cases

NO_C = "the compiled extension is not loaded: there is no registered op to call bare"


def bare_op(name: str):
    """The registered op ``torch.ops.nytorch_ext.<name>.default``, or None without _C."""
    return getattr(torch.ops.nytorch_ext, name).default if ops.is_compiled() else None


def dispatch_cost(device: str, settings: dict) -> dict | None:
    """Microseconds per call with no work (0-element tensors): a bare torch.ops call of
    our custom op, against torch's own in-place op; None without the compiled ops."""
    op = bare_op("axpby_out")
    if op is None:
        return None
    x, y = torch.empty(0, device=device), torch.empty(0, device=device)
    times = time_round_robin({"custom": lambda: op(1.0, x, 0.1, y, out=x), "torch": lambda: x.add_(y, alpha=0.1)},
                             device, max(settings["rounds"], 25), settings["warmup"], settings["budget"])
    return {"custom_op_us": statistics.median(times["custom"]) * 1e6,
            "torch_inplace_us": statistics.median(times["torch"]) * 1e6}


def kernel_case(workload: str, shape: str, shapes, device: str, dtype, args) -> Case:
    """One fused-op workload on a flat buffer or on a model's parameter tensors."""
    n = numel(shapes)
    is_flat = len(shapes) == 1
    fW, fV, fU = randn_flats(3, n, device, dtype, seed=0)
    # Per-parameter tensors (what a model holds), separately allocated, same values.
    W, V, U = ([fW], [fV], [fU]) if is_flat else [[t.clone() for t in views(f, shapes)] for f in (fW, fV, fU)]
    elem = fW.element_size()
    out: dict = {}
    per_param = not is_flat
    ccall = compiled  # shorter lines below
    in_place = workload in ("blend_", "axpby_")
    init = fW.clone() if in_place else fW
    init_views = views(init, shapes)

    def reset() -> None:
        with torch.no_grad():
            fW.copy_(init)
            if per_param:
                for w, v in zip(W, init_views):
                    w.copy_(v)

    flat_result = lambda: [fW]  # noqa: E731
    list_result = lambda: [flat_views(W)]  # noqa: E731
    got = lambda key: lambda: [values_of(out[key])]  # noqa: E731

    def store(key, fn):
        return lambda: out.__setitem__(key, fn())

    a, b = AXPBY
    if workload == "blend_":
        case = Case(workload, shape, device, dtype, n, 3 * n * elem, n, [Lin((1 - ALPHA, ALPHA), (init, fV))])

        def eager(W, V):
            for w, v in zip(W, V):
                w.lerp_(v, ALPHA)
        if per_param:
            case.add(Impl("eager per-parameter", "eager", lambda: eager(W, V), list_result, reset))
            case.add(Impl("torch._foreach_lerp_", "foreach", lambda: torch._foreach_lerp_(W, V, ALPHA), list_result, reset))
            case.add(Impl("nytorch_ext multi_blend_", "ext-ops", lambda: ops.multi_blend_(W, V, ALPHA), list_result, reset))
        case.add(Impl("torch lerp_ (flat, floor)", "floor", lambda: fW.lerp_(fV, ALPHA), flat_result, reset))
        case.add(Impl("nytorch_ext blend_ (flat)", "ext-ops", lambda: ops.blend_(fW, fV, ALPHA), flat_result, reset))
        bare = bare_op("blend_out")
        if bare is None:
            case.skip("torch.ops.nytorch_ext.blend_out (bare)", "dispatch", NO_C)
        else:
            case.add(Impl("torch.ops.nytorch_ext.blend_out (bare)", "dispatch", lambda: bare(fW, fV, ALPHA, out=fW),
                          flat_result, reset))
        fn = ccall(eager, args.compile)
        compile_impl = fn and Impl("torch.compile(eager)", "compile", lambda: fn(W, V), list_result, reset, True)
    elif workload == "axpby_":  # a = 1: torch's add_(alpha=) is the same math
        case = Case(workload, shape, device, dtype, n, 3 * n * elem, n, [Lin((1.0, b), (init, fV))])

        def eager(W, V):
            for w, v in zip(W, V):
                w.add_(v, alpha=b)
        if per_param:
            case.add(Impl("eager per-parameter", "eager", lambda: eager(W, V), list_result, reset))
            case.add(Impl("torch._foreach_add_", "foreach", lambda: torch._foreach_add_(W, V, alpha=b), list_result, reset))
            case.add(Impl("nytorch_ext multi_axpby_", "ext-ops", lambda: ops.multi_axpby_(W, 1.0, W, b, V), list_result, reset))
        case.add(Impl("torch add_(alpha=) (flat, floor)", "floor", lambda: fW.add_(fV, alpha=b), flat_result, reset))
        case.add(Impl("nytorch_ext axpby_ (flat)", "ext-ops", lambda: ops.axpby_(1.0, fW, b, fV), flat_result, reset))
        bare = bare_op("axpby_out")
        if bare is None:
            case.skip("torch.ops.nytorch_ext.axpby_out (bare)", "dispatch", NO_C)
        else:
            case.add(Impl("torch.ops.nytorch_ext.axpby_out (bare)", "dispatch",
                          lambda: bare(1.0, fW, b, fV, out=fW), flat_result, reset))
        fn = ccall(eager, args.compile)
        compile_impl = fn and Impl("torch.compile(eager)", "compile", lambda: fn(W, V), list_result, reset, True)
    elif workload == "axpby":
        case = Case(workload, shape, device, dtype, n, 3 * n * elem, n, [Lin((a, b), (fW, fV))])
        eager = lambda W, V: [a * w + b * v for w, v in zip(W, V)]  # noqa: E731
        outs, fo, fo2 = [torch.empty_like(w) for w in W], torch.empty_like(fW), torch.empty_like(fW)

        def foreach():
            res = torch._foreach_mul(W, a)
            torch._foreach_add_(res, V, alpha=b)
            return res
        if per_param:
            case.add(Impl("eager per-parameter", "eager", store("e", lambda: eager(W, V)), got("e")))
            case.add(Impl("torch._foreach_mul + _foreach_add_", "foreach", store("f", foreach), got("f")))
            case.add(Impl("nytorch_ext multi_axpby_(outs)", "ext-ops", lambda: ops.multi_axpby_(outs, a, W, b, V), lambda: [flat_views(outs)]))
        case.add(Impl("torch.lerp(out=) (flat, floor)", "floor", lambda: torch.lerp(fW, fV, b, out=fo2), lambda: [fo2]))
        case.add(Impl("torch a*x + b*y (flat)", "torch-flat", store("t", lambda: a * fW + b * fV), got("t")))
        case.add(Impl("nytorch_ext axpby (flat)", "ext-ops", store("n", lambda: ops.axpby(a, fW, b, fV)), got("n")))
        case.add(Impl("nytorch_ext axpby(out=) (flat)", "ext-ops", lambda: ops.axpby(a, fW, b, fV, out=fo), lambda: [fo]))
        fn = ccall(eager, args.compile)
        compile_impl = fn and Impl("torch.compile(eager)", "compile", store("c", lambda: fn(W, V)), got("c"), external=True)
    elif workload == "momentum":
        c = (1.0, BETA, -BETA)
        case = Case(workload, shape, device, dtype, n, 4 * n * elem, n, [Lin(c, (fW, fV, fU))])
        eager = lambda W, V, U: [w + BETA * (v - u) for w, v, u in zip(W, V, U)]  # noqa: E731
        fo = torch.empty_like(fW)
        if per_param:
            case.add(Impl("eager per-parameter", "eager", store("e", lambda: eager(W, V, U)), got("e")))
            case.add(Impl("torch._foreach_sub + _foreach_add", "foreach",
                          store("f", lambda: torch._foreach_add(W, torch._foreach_sub(V, U), alpha=BETA)), got("f")))
        case.add(Impl("torch W + beta*(V - U) (flat)", "torch-flat", store("t", lambda: fW + BETA * (fV - fU)), got("t")))
        case.add(Impl("nytorch_ext lincomb (flat)", "ext-ops", store("n", lambda: ops.lincomb(c, [fW, fV, fU])), got("n")))
        case.add(Impl("nytorch_ext lincomb(out=) (flat)", "ext-ops", lambda: ops.lincomb(c, [fW, fV, fU], out=fo), lambda: [fo]))
        fn = ccall(eager, args.compile)
        compile_impl = fn and Impl("torch.compile(eager)", "compile", store("c", lambda: fn(W, V, U)), got("c"), external=True)
    else:
        raise ValueError(workload)
    if compile_impl:
        case.add(compile_impl)
    else:
        case.skip("torch.compile(eager)", "compile", COMPILE_OFF)
    return case


# ------------------------------------------------------------ particle cases

class Particles:
    """Particles of one model shape, one species on nytorch_ext and (if installed) one
    on nytorch; ext(i) and ny(i) hold values[i]."""

    def __init__(self, shape: str, count: int, device: str, dtype, seed: int = 0):
        self.shape, self.device, self.dtype = shape, device, dtype
        torch.manual_seed(seed)
        self.root = nytorch_ext.ParticleModule(make_model(nytorch_ext.NytoModule, shape).to(device=device, dtype=dtype))
        self.shapes = [tuple(p.shape) for p in self.root.parameters()]
        self.n = numel(self.shapes)
        self.values = randn_flats(count, self.n, device, dtype, seed=seed + 1)
        self.nytorch, self.NyParticleModule, self.ny_label = import_nytorch()
        self.ny_reason = None if self.nytorch else self.ny_label
        self.ny_root = None

    def ext(self, i: int | None = None, count: int | None = None):
        """nytorch_ext ParticleModules holding values[i] (or values[0..count))."""
        pool = [self.root.clone() for _ in range(count or 1)]
        for j, m in enumerate(pool):
            load_values(m, self.values[j if i is None else i])
        return pool if count else pool[0]

    def ny(self, i: int | None = None, count: int | None = None):
        """nytorch ParticleModules holding the same values."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.ny_root is None:
                model = make_model(self.nytorch.NytoModule, self.shape).to(device=self.device, dtype=self.dtype)
                self.ny_root = self.NyParticleModule(model)
            pool = [self.ny_root.clone() for _ in range(count or 1)]
        for j, m in enumerate(pool):
            load_values(m, self.values[j if i is None else i])
        return pool if count else pool[0]

    def tensors(self, i: int) -> list[torch.Tensor]:
        """values[i] as separately allocated per-parameter tensors."""
        return [v.clone() for v in views(self.values[i], self.shapes)]


def _ny_impl(case: Case, parts: Particles, name: str, make: Callable[[], tuple]) -> None:
    """Add nytorch's implementation, or a skipped row saying why there is none."""
    if parts.nytorch is None:
        case.skip(f"nytorch: {name}", "nytorch", parts.ny_reason)
        return
    try:
        run, result, prepare = make()
    except Exception as exc:  # nytorch on this device/dtype
        case.skip(f"{parts.ny_label}: {name}", "nytorch", f"nytorch failed to set up: {type(exc).__name__}: {exc}")
        return
    case.add(Impl(f"{parts.ny_label}: {name}", "nytorch", run, result, prepare or (lambda: None), external=True))


def particle_case(workload: str, shape: str, device: str, dtype, args) -> Case:
    if workload == "apso":
        return apso_case(shape, device, dtype, args)
    parts = Particles(shape, 3, device, dtype)
    n, elem = parts.n, parts.values[0].element_size()
    f0, f1, f2 = parts.values
    out: dict = {}
    got = lambda key: lambda: [values_of(out[key])]  # noqa: E731

    def store(key, fn):
        return lambda: out.__setitem__(key, fn())

    if workload == "p.blend":  # a*p0 + (1-a)*p1 -> module()
        case = Case(workload, shape, device, dtype, n, 3 * n * elem, n, [Lin((ALPHA, 1 - ALPHA), (f0, f1))])
        expr = "(a*p0+(1-a)*p1).module()"

        def ny():
            q0, q1 = parts.ny(0), parts.ny(1)
            return store("ny", lambda: (ALPHA * q0.product() + (1 - ALPHA) * q1.product()).module()), got("ny"), None
        _ny_impl(case, parts, expr, ny)
        p0, p1 = parts.ext(0), parts.ext(1)
        case.add(Impl(f"nytorch_ext: {expr}", "ext-particle",
                      store("x", lambda: (ALPHA * p0.product() + (1 - ALPHA) * p1.product()).module()), got("x")))
        case.add(Impl("nytorch_ext: p1.blend(p0, a)", "ext-particle", store("b", lambda: p1.blend(p0, ALPHA)), got("b")))
        T0, T1 = parts.tensors(0), parts.tensors(1)
        case.add(Impl("eager per-parameter (tensors)", "eager",
                      store("e", lambda: [ALPHA * x + (1 - ALPHA) * y for x, y in zip(T0, T1)]), got("e")))
        case.add(Impl("torch._foreach_lerp (tensors)", "foreach", store("f", lambda: torch._foreach_lerp(T1, T0, ALPHA)), got("f")))
        g0, g1, g1_init, go = f0.clone(), f1.clone(), f1, torch.empty_like(f1)
        case.add(Impl("torch lerp_ (flat, floor)", "floor", lambda: g1.lerp_(g0, ALPHA), lambda: [g1],
                      lambda: g1.copy_(g1_init)))
        case.add(Impl("torch.lerp(out=) (flat)", "torch-flat", lambda: torch.lerp(g1_init, g0, ALPHA, out=go), lambda: [go]))
    elif workload == "p.blend_":  # c <- (1-a) c + a b, in place; c starts at values[0]
        case = Case(workload, shape, device, dtype, n, 3 * n * elem, n, [Lin((1 - ALPHA, ALPHA), (f0, f1))])
        expr = "c.product_((1-a)*c+a*b)"

        def reset_module(m):
            return lambda: load_values(m, f0)

        def ny():
            c, b = parts.ny(0), parts.ny(1)
            return lambda: c.product_((1 - ALPHA) * c.product() + ALPHA * b.product()), lambda: [params_of(c)], reset_module(c)
        _ny_impl(case, parts, expr, ny)
        c, b, c2 = parts.ext(0), parts.ext(1), parts.ext(0)
        case.add(Impl(f"nytorch_ext: {expr}", "ext-particle",
                      lambda: c.product_((1 - ALPHA) * c.product() + ALPHA * b.product()), lambda: [params_of(c)], reset_module(c)))
        case.add(Impl("nytorch_ext: c.blend_(b, a)", "ext-particle", lambda: c2.blend_(b, ALPHA), lambda: [params_of(c2)],
                      reset_module(c2)))
        C, B = parts.tensors(0), parts.tensors(1)
        C_init = views(f0, parts.shapes)

        def reset_tensors():
            with torch.no_grad():
                for t, v in zip(C, C_init):
                    t.copy_(v)

        def eager():
            for x, y in zip(C, B):
                x.lerp_(y, ALPHA)
        case.add(Impl("eager per-parameter (tensors)", "eager", eager, lambda: [flat_views(C)], reset_tensors))
        case.add(Impl("torch._foreach_lerp_ (tensors)", "foreach", lambda: torch._foreach_lerp_(C, B, ALPHA),
                      lambda: [flat_views(C)], reset_tensors))
        gc_, gb = f0.clone(), f1.clone()
        case.add(Impl("torch lerp_ (flat, floor)", "floor", lambda: gc_.lerp_(gb, ALPHA), lambda: [gc_], lambda: gc_.copy_(f0)))
    elif workload == "p.momentum":  # w2 + beta*(w1 - w0) -> module()
        case = Case(workload, shape, device, dtype, n, 4 * n * elem, n, [Lin((1.0, BETA, -BETA), (f2, f1, f0))])
        expr = "(w2+beta*(w1-w0)).module()"

        def ny():
            w0, w1, w2 = parts.ny(0), parts.ny(1), parts.ny(2)
            return store("ny", lambda: (w2.product() + BETA * (w1.product() - w0.product())).module()), got("ny"), None
        _ny_impl(case, parts, expr, ny)
        w0, w1, w2 = parts.ext(0), parts.ext(1), parts.ext(2)
        case.add(Impl(f"nytorch_ext: {expr}", "ext-particle",
                      store("x", lambda: (w2.product() + BETA * (w1.product() - w0.product())).module()), got("x")))
        swarm, why = import_swarm()
        if swarm is None:
            case.skip("nytorch_ext: swarm.momentum_step", "ext-particle", why)
        else:
            case.add(Impl("nytorch_ext: swarm.momentum_step", "ext-particle",
                          store("s", lambda: swarm.momentum_step(w2, w1, w0, BETA)), got("s")))
        T0, T1, T2 = parts.tensors(0), parts.tensors(1), parts.tensors(2)
        case.add(Impl("eager per-parameter (tensors)", "eager",
                      store("e", lambda: [z + BETA * (y - x) for x, y, z in zip(T0, T1, T2)]), got("e")))
        case.add(Impl("torch._foreach_sub + _foreach_add", "foreach",
                      store("f", lambda: torch._foreach_add(T2, torch._foreach_sub(T1, T0), alpha=BETA)), got("f")))
        case.add(Impl("torch w2 + beta*(w1 - w0) (flat)", "torch-flat", store("t", lambda: f2 + BETA * (f1 - f0)), got("t")))
    elif workload == "p.module":  # materialization of an evaluated product, no arithmetic
        case = Case(workload, shape, device, dtype, n, 0, 0, [Lin((0.5, 0.5), (f0, f1))])

        def ny():
            product = 0.5 * parts.ny(0).product() + 0.5 * parts.ny(1).product()  # nytorch evaluates eagerly
            return store("ny", product.module), got("ny"), None
        _ny_impl(case, parts, "product.module()", ny)
        product = 0.5 * parts.ext(0).product() + 0.5 * parts.ext(1).product()
        _ = product.params  # evaluate the lazy expression now, outside the timing
        case.add(Impl("nytorch_ext: product.module()", "ext-particle", store("x", product.module), got("x")))
        plain = make_model(nn.Module, shape).to(device=device, dtype=dtype)
        vec = (0.5 * f0.double() + 0.5 * f1.double()).to(dtype)

        def eager():
            m = copy.deepcopy(plain)
            torch.nn.utils.vector_to_parameters(vec, m.parameters())
            return m
        case.add(Impl("torch deepcopy + vector_to_parameters", "eager", store("e", eager), got("e")))
    else:
        raise ValueError(workload)
    return case


def apso_case(shape: str, device: str, dtype, args) -> Case:
    """From a pool of 12 particles, 6 distinct members are drawn; the 5 that are not
    the subset's best move toward it. Every implementation owns a generator seeded
    alike, so all of them draw the same subsets in the same order."""
    parts = Particles(shape, POOL, device, dtype)
    n, init = parts.n, parts.values
    losses = torch.rand(POOL, generator=torch.Generator().manual_seed(7)).tolist()

    def plan(gen):
        drawn = torch.randperm(POOL, generator=gen)[:SUBSET].tolist()
        best = min(drawn, key=losses.__getitem__)  # first drawn among ties, like the seed's stable sort
        return best, [i for i in drawn if i != best]

    best, moved = plan(torch.Generator().manual_seed(APSO_SEED))
    reference = [Lin((1 - ALPHA, ALPHA), (init[i], init[best])) if i in moved else Lin((1.0,), (init[i],))
                 for i in range(POOL)]
    elem = init[0].element_size()
    case = Case("apso", shape, device, dtype, n, (SUBSET - 1) * 3 * n * elem, (SUBSET - 1) * n, reference)

    def impl(name, family, step, pool_values, load, external=False):
        """`step(gen)` does one APSO step; `load()` puts the initial values back."""
        gen = torch.Generator()

        def prepare():
            gen.manual_seed(APSO_SEED)
            load()
        prepare()
        return Impl(name, family, lambda: step(gen), pool_values, prepare, external)

    def load_pool(pool):
        def load():
            for m, v in zip(pool, init):
                load_values(m, v)
        return load

    def seed_code(pool, originals):
        """The seed chapter's swarm_algorithm: a new particle for every moved member."""
        def step(gen):
            best, moved = plan(gen)
            for i in moved:
                pool[i] = (ALPHA * pool[best].product() + (1 - ALPHA) * pool[i].product()).module()

        def load():
            pool[:] = originals
            load_pool(originals)()
        return step, lambda: [params_of(m) for m in pool], load

    expr = "seed swarm_algorithm"
    if parts.nytorch is None:
        case.skip(f"nytorch: {expr}", "nytorch", parts.ny_reason)
    else:
        ny_pool = parts.ny(count=POOL)
        case.add(impl(f"{parts.ny_label}: {expr}", "nytorch", *seed_code(list(ny_pool), ny_pool), external=True))
    ext_pool = parts.ext(count=POOL)
    case.add(impl(f"nytorch_ext: {expr}", "ext-particle", *seed_code(list(ext_pool), ext_pool)))

    members = parts.ext(count=POOL)

    def blend_members(gen):
        best, moved = plan(gen)
        for i in moved:
            members[i].blend_(members[best], ALPHA)
    member_values = lambda: [params_of(m) for m in members]  # noqa: E731
    case.add(impl("nytorch_ext: m.blend_(best, a) per member", "ext-particle", blend_members, member_values,
                  load_pool(members)))
    swarm, why = import_swarm()
    if swarm is None:
        case.skip("nytorch_ext: swarm.apso_step(pool)", "ext-particle", why)
        case.skip("nytorch_ext: Swarm.apso_step", "ext-particle", why)
    else:
        case.add(impl("nytorch_ext: swarm.apso_step(pool)", "ext-particle",
                      lambda gen: swarm.apso_step(members, losses, ALPHA, SUBSET, replace=False, generator=gen),
                      member_values, load_pool(members)))
        packed = swarm.Swarm(parts.ext(count=POOL))
        case.add(impl("nytorch_ext: Swarm.apso_step", "ext-particle",
                      lambda gen: packed.apso_step(losses, ALPHA, SUBSET, replace=False, generator=gen),
                      lambda: [params_of(m) for m in packed], load_pool(list(packed))))

    # Plain tensors: each member one flat buffer, with per-parameter views (a model's tensors).
    flats = [v.clone() for v in init]
    tensors = [views(f, parts.shapes) for f in flats]

    def load_tensors():
        for f, v in zip(flats, init):
            f.copy_(v)

    def eager(gen):
        best, moved = plan(gen)
        for i in moved:
            for w, v in zip(tensors[i], tensors[best]):
                w.lerp_(v, ALPHA)

    def foreach(gen):
        best, moved = plan(gen)
        torch._foreach_lerp_([w for i in moved for w in tensors[i]], tensors[best] * len(moved), ALPHA)

    def multi_blend(gen):
        best, moved = plan(gen)
        ops.multi_blend_([flats[i] for i in moved], flats[best], ALPHA)

    def floor(gen):
        best, moved = plan(gen)
        for i in moved:
            flats[i].lerp_(flats[best], ALPHA)
    flat_values = lambda: list(flats)  # noqa: E731
    case.add(impl("eager per-parameter lerp_ (tensors)", "eager", eager, flat_values, load_tensors))
    case.add(impl("torch._foreach_lerp_ (all members)", "foreach", foreach, flat_values, load_tensors))
    case.add(impl("torch lerp_ per member (flat, floor)", "floor", floor, flat_values, load_tensors))
    case.add(impl("nytorch_ext multi_blend_ (flat members)", "ext-ops", multi_blend, flat_values, load_tensors))
    return case


# ------------------------------------------------------------ verify and time

CHUNK = 1 << 22


def max_error(results: Sequence, reference: Sequence[Lin]) -> float:
    """Largest |result - reference| over all results, relative to max(1, max |reference|),
    computed in float64 chunk by chunk. A result is a tensor or a list of tensors (its
    segments, in order). NaN when anything is NaN or the sizes disagree."""
    if len(results) != len(reference):
        return float("nan")
    worst, scale = 0.0, 1.0
    for result, lin in zip(results, reference):
        segments = values_of(result)
        size = lin.tensors[0].numel()
        if sum(s.numel() for s in segments) != size:
            return float("nan")
        if lin.coeffs == (1.0,) and _unchanged(segments, lin.tensors[0].reshape(-1)):
            scale = max(scale, lin.tensors[0].abs().max().item() if size else 0.0)
            continue  # left alone, as it should be (APSO members outside the subset)
        offset = 0
        for seg in segments:
            for lo in range(0, seg.numel(), CHUNK):
                hi = min(seg.numel(), lo + CHUNK)
                ref = torch.zeros(hi - lo, dtype=torch.float64, device=seg.device)
                for c, t in zip(lin.coeffs, lin.tensors):
                    ref.add_(t.reshape(-1)[offset + lo:offset + hi].double(), alpha=c)
                diff = seg[lo:hi].double().sub_(ref).abs_().max().item()
                if diff != diff:
                    return float("nan")
                worst = max(worst, diff)
                scale = max(scale, ref.abs_().max().item())
            offset += seg.numel()
    return worst / scale


def _unchanged(segments, flat: torch.Tensor) -> bool:
    offsets = [0]
    for seg in segments:
        offsets.append(offsets[-1] + seg.numel())
    return all(seg.dtype == flat.dtype and torch.equal(seg, flat[lo:hi])
               for seg, lo, hi in zip(segments, offsets, offsets[1:]))


def label(case: Case) -> str:
    return f"{case.workload} {case.shape} {case.device} {str(case.dtype).replace('torch.', '')}"


def verify(case: Case) -> dict:
    """Run every implementation once from the initial state and compare it with the
    reference. Our own implementations must agree (BenchmarkError otherwise); a peer
    (nytorch, torch.compile) that fails to run becomes a skipped row."""
    tol = TOLERANCE[case.dtype]
    errors = {}
    for impl in list(case.impls):
        try:
            impl.prepare()
            try:
                impl.run()
                _sync(case.device)
            except Exception as exc:
                if not impl.external:
                    raise
                case.impls.remove(impl)  # a peer that does not run here: say why, go on
                first = (str(exc).strip().splitlines() or [""])[0]
                case.skip(impl.name, impl.family, f"failed to run here: {type(exc).__name__}: {first}"[:300])
                continue
            err = max_error(impl.result(), case.reference)
        except Exception as exc:
            raise BenchmarkError(f"{label(case)}: {impl.name!r} raised {type(exc).__name__}: {exc}") from exc
        if not err <= tol:
            raise BenchmarkError(f"{label(case)}: {impl.name!r} disagrees with the float64 reference: "
                                 f"max error {err:.3g} (relative to max |reference|), tolerance {tol:g}")
        errors[impl.name] = err
    return errors


def run_case(case: Case, args, settings) -> list[Row]:
    errors = verify(case)
    dt = str(case.dtype).replace("torch.", "")
    rows = []
    if case.impls:
        times = time_round_robin({i.name: i.run for i in case.impls}, case.device, settings["rounds"],
                                 settings["warmup"], settings["budget"])
        bw = (copy_bandwidth(case.copy_elements, case.dtype, case.device, settings["rounds"], settings["warmup"],
                             settings["budget"]) if case.copy_elements else float("nan"))
        for impl in case.impls:
            t = times[impl.name]
            med = statistics.median(t)
            gbps = case.bytes_moved / med / 1e9 if case.bytes_moved else float("nan")
            rows.append(Row(case.workload, case.shape, impl.name, impl.family, case.device, dt, case.elements,
                            case.bytes_moved, len(t), med * 1e3, min(t) * 1e3, max(t) * 1e3, gbps,
                            case.bytes_moved / med / bw if case.bytes_moved else float("nan"),
                            checked=True, max_error=errors[impl.name], tolerance=TOLERANCE[case.dtype]))
        baselines = {}
        for key in ("eager", "foreach", "floor", "nytorch"):
            first = next((r for r in rows if r.family == key), None)
            if first is not None:
                baselines[key] = first.median_ms
        for r in rows:
            r.speedup = {k: v / r.median_ms for k, v in baselines.items()}
    rows += [Row(case.workload, case.shape, name, family, case.device, dt, case.elements, case.bytes_moved,
                 skipped=reason) for name, family, reason in case.skipped]
    return rows


# ----------------------------------------------------------------------- verdict

# (label, workload, nytorch_ext's row) of the headline ratios against nytorch 1.1.0.
HEADLINE = [("APSO step", "apso", "nytorch_ext: Swarm.apso_step"),
            ("blend", "p.blend", "nytorch_ext: p1.blend(p0, a)"),
            ("momentum", "p.momentum", "nytorch_ext: (w2+beta*(w1-w0)).module()"),
            ("module()", "p.module", "nytorch_ext: product.module()")]
SMALL = 10 ** 5  # flat sizes up to this are dominated by the fixed cost of a call


def on_flat_buffers(r: Row) -> bool:
    """Whether a row works on one flat buffer per operand (the sweep, the "(flat" rows)."""
    return r.shape.startswith("flat") or "(flat" in r.impl


def best_torch(rows: list[Row], r: Row) -> Row | None:
    """The fastest timed torch alternative to nytorch_ext's row ``r`` in its group: the
    per-parameter loop, torch._foreach_* or torch.compile over the same tensors, and,
    where ``r`` itself works on flat buffers, the floor and the torch expression over them."""
    families = TORCH_FAMILIES if on_flat_buffers(r) else ("eager", "foreach", "compile")
    group = [o for o in rows if o.skipped is None and o.family in families
             and (o.workload, o.shape, o.device) == (r.workload, r.shape, r.device)]
    return min(group, key=lambda o: o.median_ms, default=None)


def loss_reason(r: Row, other: Row, dispatch: dict | None) -> str:
    """Why a nytorch_ext row is slower than the best torch alternative of its group."""
    ratio = other.median_ms / r.median_ms
    if r.workload in ("p.blend", "p.momentum", "p.module") or "seed" in r.impl:
        return "it builds a new particle (module objects, Parameters); the torch rows return bare tensors"
    if r.workload == "p.blend_" or "per member" in r.impl:
        return "the particle API's Python per call (placement checks, lazy products) over little work"
    if r.workload == "apso":
        return "Python per step (argument checks, the draw, the plan, the members' staleness check)"
    if r.shape.startswith("flat") and r.elements <= SMALL:
        if dispatch:
            return (f"the fixed cost of a call: a custom op's bare torch.ops call costs "
                    f"{dispatch['custom_op_us']:.1f} us with no work, torch's own in-place op "
                    f"{dispatch['torch_inplace_us']:.1f} us")
        return "the fixed cost of a call (the pure-PyTorch fallback)"
    if r.workload in ("axpby", "momentum") and "out=" not in r.impl:
        return "an allocating form: a new result buffer per call (the out= form reuses one)"
    if r.workload in KERNEL_WORKLOADS and not r.shape.startswith("flat"):
        return "a few small tensors: the fixed cost of a call over little work"
    if ratio >= 0.95 or r.min_ms <= other.max_ms:
        return "within the noise of this run (the min-max ranges overlap)"
    return "unexplained: slower than torch here"


def _ratios(values: list) -> str:
    return "/".join(f"{v:.2f}x" for v in values)


def verdict(rows: list[Row], dispatch: dict | None = None) -> dict:
    """The run in at most about ten lines: the headline ratios against nytorch, the
    range against torch._foreach_* and the floor, and the rows where nytorch_ext is
    slower than the best torch alternative of its group, one line per reason."""
    timed = [r for r in rows if r.skipped is None]
    headline: dict = {}
    parts, shapes = [], []
    for label, workload, impl in HEADLINE:
        mine = [r for r in timed if r.workload == workload and r.impl == impl and "nytorch" in r.speedup]
        if mine:
            headline[label] = {f"{r.device} {r.shape}": r.speedup["nytorch"] for r in mine}
            parts.append(f"{label} {_ratios([r.speedup['nytorch'] for r in mine])}")
            shapes = shapes or [r.shape for r in mine]
    lines = [f"vs nytorch 1.1.0 ({'/'.join(shapes)}): " + ", ".join(parts) if parts else
             "vs nytorch 1.1.0: " + ("no particle rows in this run" if import_nytorch()[0] else
                                      "not measured (nytorch is not installed: pip install nytorch==1.1.0)")]
    ours = [r for r in timed if r.family in OURS]
    spans = []
    for peer, name in (("foreach", "torch._foreach_*"), ("floor", "the floor")):
        values = sorted(r.speedup[peer] for r in ours if peer in r.speedup)
        if values:
            headline[f"vs {peer}"] = {"min": values[0], "median": statistics.median(values), "max": values[-1]}
            spans.append(f"vs {name} median {statistics.median(values):.2f}x over {len(values)} rows "
                         f"({values[0]:.2f}x-{values[-1]:.2f}x)")
    if spans:
        lines.append("; ".join(spans))
    apso = {r.impl: r for r in timed if r.workload == "apso" and r.shape == "convnet"}
    step, flat = apso.get("nytorch_ext: Swarm.apso_step"), apso.get("nytorch_ext multi_blend_ (flat members)")
    if step and flat:
        overhead = (step.median_ms - flat.median_ms) * 1e3
        headline["apso_python_overhead_us"] = overhead
        lines.append(f"Swarm.apso_step on the ConvNet swarm: {step.speedup.get('foreach', float('nan')):.2f}x "
                     f"_foreach_lerp_, {overhead:.1f} us per step over multi_blend_ on flat members")
    if dispatch:
        lines.append(f"fixed cost per call, no work: a bare torch.ops call of our op {dispatch['custom_op_us']:.2f} us, "
                     f"torch's own add_ {dispatch['torch_inplace_us']:.2f} us")
    losses: dict = {}
    for r in ours:
        other = best_torch(rows, r)
        if other is not None and r.median_ms > other.median_ms:
            losses.setdefault(loss_reason(r, other, dispatch), []).append(
                {"workload": r.workload, "shape": r.shape, "device": r.device, "impl": r.impl,
                 "ratio": other.median_ms / r.median_ms, "against": other.impl})
    total = sum(map(len, losses.values()))
    lines.append(f"slower than the best torch alternative of its group: {total} of {len(ours)} nytorch_ext rows"
                 + (":" if total else ""))
    for reason, where in losses.items():
        shown = ", ".join(f"{w['workload']} {w['shape']} {w['ratio']:.2f}x" for w in where[:3])
        more = f" and {len(where) - 3} more" if len(where) > 3 else ""
        lines.append(f"  {len(where)}: {reason} ({shown}{more})")
    return {"lines": lines, "headline": headline, "losses": [dict(w, reason=reason) for reason, where in
                                                               losses.items() for w in where]}


# ----------------------------------------------------------------------- output

def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def _fmt_speedup(r: Row, key: str) -> str:
    return f"{r.speedup[key]:.2f}x" if key in r.speedup else "-"


def print_table(rows: list[Row], device: str) -> None:
    timed = [r for r in rows if r.device == device and not r.skipped]
    if not timed:
        return
    print(f"\n{device.upper()}: {device_name(device)}")
    header = (f"{'workload':<10} {'shape':<10} {'implementation':<46} {'n':>3} {'median ms':>10} {'min-max ms':>17} "
              f"{'GB/s':>7} {'%copy':>6} {'vs eager':>9} {'vs foreach':>10} {'vs floor':>9} {'vs nytorch':>10}")
    print(header)
    print("-" * len(header))
    previous = None
    for r in timed:
        if previous is not None and (r.workload, r.shape) != previous:
            print()
        previous = (r.workload, r.shape)
        gbps = "-" if r.gbps != r.gbps else f"{r.gbps:.1f}"
        copy_ = "-" if r.copy_fraction != r.copy_fraction else f"{100 * r.copy_fraction:.0f}%"
        print(f"{r.workload:<10} {r.shape:<10} {r.impl:<46} {r.rounds:>3} {r.median_ms:>10.3f} "
              f"{r.min_ms:>8.3f}-{r.max_ms:<8.3f} {gbps:>7} {copy_:>6} {_fmt_speedup(r, 'eager'):>9} "
              f"{_fmt_speedup(r, 'foreach'):>10} {_fmt_speedup(r, 'floor'):>9} {_fmt_speedup(r, 'nytorch'):>10}")


def print_skipped(rows: list[Row]) -> None:
    """Skipped rows, one line per (device, implementation, reason)."""
    groups: dict = {}
    for r in rows:
        if r.skipped:
            groups.setdefault((r.device, r.impl, r.skipped), []).append(
                "all workloads" if r.workload == "*" else f"{r.workload} {r.shape}")
    if not groups:
        return
    print("\nSkipped:")
    for (device, impl, reason), where in groups.items():
        shown = ", ".join(where[:4]) + (f" and {len(where) - 4} more" if len(where) > 4 else "")
        print(f"  [{device}] {impl} ({shown}): {reason}")


def headline_bars(rows: list[Row]) -> list[tuple[str, dict]]:
    """(workload and model, {peer: speedup}) for each headline row: ours against
    nytorch 1.1.0 and against torch._foreach_* (the plot's first panel)."""
    bars = []
    for label, workload, impl in HEADLINE:
        for r in rows:
            if r.skipped is None and r.workload == workload and r.impl == impl:
                ratios = {k: r.speedup[k] for k in ("nytorch", "foreach") if k in r.speedup}
                if ratios:
                    bars.append((f"{label}\n{r.shape} ({r.device})", ratios))
    return bars


def plot(rows: list[Row], path: str) -> str:
    """The headline speedups (ours against nytorch and against torch._foreach_*, per
    workload and model) in the first panel, then GB/s against size per implementation,
    one panel per (device, kernel workload), with the measured copy bandwidth; returns
    a message for stdout."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"--plot: matplotlib is not installed, no plot written to {path}; install it with `pip install matplotlib`"
    bars = headline_bars(rows)
    sweep = [r for r in rows if not r.skipped and r.shape.startswith("flat") and r.gbps == r.gbps]
    panels = sorted({(r.device, r.workload) for r in sweep}, key=lambda k: (k[0], WORKLOADS.index(k[1])))
    if not panels and not bars:
        return f"--plot: no headline or size-sweep rows to plot; nothing written to {path}"
    fig, axes = plt.subplots(len(panels) + bool(bars), 1, figsize=(9, 3.6 * (len(panels) + bool(bars))),
                             squeeze=False)
    axes = list(axes[:, 0])
    if bars:
        ax = axes.pop(0)
        width = 0.4
        for k, (peer, name) in enumerate((("nytorch", "vs nytorch 1.1.0"), ("foreach", "vs torch._foreach_*"))):
            xs = [i + (k - 0.5) * width for i, (_, ratios) in enumerate(bars) if peer in ratios]
            ys = [ratios[peer] for _, ratios in bars if peer in ratios]
            if xs:
                ax.bar(xs, ys, width, label=name)
        ax.axhline(1.0, color="k", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([label for label, _ in bars], fontsize=6)
        ax.set_ylabel("speedup (above 1: nytorch_ext faster)")
        ax.set_title("nytorch_ext's headline speedups (ratios of medians)", fontsize=9)
        ax.legend(fontsize=7)
    for ax, (device, workload) in zip(axes, panels):
        mine = [r for r in sweep if (r.device, r.workload) == (device, workload)]
        for impl in dict.fromkeys(r.impl for r in mine):
            pts = sorted((r.elements, r.gbps) for r in mine if r.impl == impl)
            ax.plot(*zip(*pts), marker="o", label=impl)
        dtype = DTYPES[mine[0].dtype]
        copies = sorted((n, bw / 1e9) for (n, dt, dev), bw in _COPY_BW.items()
                        if dev == device and dt == dtype and n in {r.elements for r in mine})
        if copies:
            ax.plot(*zip(*copies), "k--", label="copy (read n + write n)")
        ax.set_xscale("log")
        ax.set_xlabel("elements per operand")
        ax.set_ylabel("effective GB/s")
        ax.set_title(f"{workload} on {device} ({mine[0].dtype}): {device_name(device)}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: str, rows: list[Row], meta: dict) -> None:
    data = dict(meta, rows=[asdict(r) for r in rows],
                copy_bandwidth_gbps=[{"elements": n, "dtype": str(dt).replace("torch.", ""), "device": dev,
                                      "gbps": bw / 1e9} for (n, dt, dev), bw in _COPY_BW.items()])
    with open(path, "w") as f:
        json.dump(_jsonable(data), f, indent=1, allow_nan=False)


# ----------------------------------------------------------------------- main

def _csv(kind, values: str, allowed=None) -> list:
    items = [v.strip() for v in values.split(",") if v.strip()]
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {kind} {bad}; choose from {allowed}")
    return items


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="sizes up to 1e6, two models, few rounds (< 60 s on 2 cores)")
    mode.add_argument("--tiny", action="store_true", help="tiny sizes and models, 3 rounds: checks that everything runs")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="where to run (default all: CPU, and CUDA when available)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--rounds", type=int, default=None, help="at most this many timed rounds per case")
    p.add_argument("--budget", type=float, default=None, help="about this many seconds of timed rounds per case")
    p.add_argument("--sizes", type=lambda s: [int(float(v)) for v in _csv("size", s)], default=None,
                   help="flat sizes of the sweep, e.g. 1e4,1e6 (default 1e4..1e8; capped by free memory)")
    p.add_argument("--shapes", type=lambda s: _csv("shape", s), default=None,
                   help="models: mlpNxD, convnet; 'flat' for the size sweep (default: flat and the full set)")
    p.add_argument("--workloads", type=lambda s: _csv("workload", s, WORKLOADS), default=None,
                   help=f"subset of {','.join(WORKLOADS)}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) first (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the eager expressions")
    p.add_argument("--cold", action="store_true",
                   help="one call per sample, right after the other implementations' (default: each sample is "
                        "the mean of back-to-back calls lasting about 10 ms)")
    p.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    p.add_argument("--plot", metavar="PATH",
                   help="draw the headline speedups and GB/s against size (PNG; needs matplotlib)")
    args = p.parse_args(argv)
    if args.shapes is not None:
        for s in args.shapes:
            if s not in ("flat", "convnet"):
                try:
                    _mlp_spec(s)
                except ValueError as exc:
                    p.error(str(exc))
    if args.sizes is not None and any(n < 1 for n in args.sizes):
        p.error("--sizes must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:  # leave the caller's autograd mode, RNG and threads as they were
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            if args.threads:
                torch.set_num_threads(args.threads)
            return run(args, argv)
    finally:
        torch.set_num_threads(threads)


def run(args, argv) -> int:
    global COLD
    COLD = bool(args.cold)
    settings = dict(TINY if args.tiny else QUICK if args.quick else FULL)
    if args.rounds:
        settings["rounds"] = args.rounds
    if args.budget is not None:
        settings["budget"] = args.budget
    shapes = args.shapes or ["flat"] + settings["shapes"]
    sizes = (args.sizes or settings["sizes"]) if "flat" in shapes else []
    models = [s for s in shapes if s != "flat"]
    workloads = args.workloads or WORKLOADS
    dtype = DTYPES[args.dtype]
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]

    command = "python benchmarks/fused_vs_eager.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    print(f"nytorch_ext {nytorch_ext.__version__}  torch {torch.__version__}  backend {ops.backend_info()}")
    _, _, ny = import_nytorch()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"peer: {ny}; {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in load) if load else 'unknown'} "
          "at the start (other work on a shared machine slows the multi-threaded rows)")
    sampling = ("one call per sample (--cold)" if COLD else
                f"a sample is the mean of back-to-back calls lasting about {SAMPLE_SECONDS * 1e3:g} ms")
    print(f"{command}\nround-robin timing ({sampling}) after {max(2, settings['warmup'])} warm-up rounds (at least 2 and about "
          f"{settings['budget']:g} s at most); "
          f"n: timed rounds, up to {settings['rounds']} (at least {min(5, settings['rounds'])}, about "
          f"{settings['budget']:g} s per case); GB/s: the bytes that must move over the median time; %copy: of a "
          f"same-size copy's best round; every timed row matched a float64 reference before timing")
    plot_note = None
    if args.plot:
        if importlib.util.find_spec("matplotlib") is None:
            plot_note = (f"--plot: matplotlib is not installed, so no plot will be written to {args.plot}; "
                         "install it with `pip install matplotlib`")
            print(plot_note)

    rows: list[Row] = []
    meta = {"command": command, "torch": torch.__version__, "nytorch_ext": nytorch_ext.__version__,
            "backend": ops.backend_info(), "peer": ny, "dtype": args.dtype, "settings": settings,
            "threads": torch.get_num_threads(), "load_average": load,
            "devices": {}, "ok": True, "error": None}
    status = 0
    dispatch = None  # the fixed cost of a call, measured on the first device
    try:
        for device in devices:
            if device == "cuda" and not torch.cuda.is_available():
                why = ("CUDA is not available here: this torch is a CPU-only build" if torch.version.cuda is None
                       else "CUDA is not available here: no GPU is visible")
                rows.append(Row("*", "*", "all CUDA rows", "cuda", "cuda", args.dtype, skipped=why))
                print(f"\nCUDA: skipped ({why})")
                continue
            meta["devices"][device] = device_name(device)
            dispatch = dispatch or dispatch_cost(device, settings)
            jobs = [(w, size_name(n), [(n,)]) for w in workloads if w in KERNEL_WORKLOADS for n in sizes]
            jobs += [(w, m, model_shapes(m)) for w in workloads if w in KERNEL_WORKLOADS for m in models]
            jobs += [(w, m, model_shapes(m)) for w in workloads if w in PARTICLE_WORKLOADS for m in models]
            for workload, shape, shp in jobs:
                need = memory_needed(workload, numel(shp), torch.empty(0, dtype=dtype).element_size())
                have = available_bytes(device)
                if need > 0.6 * have:
                    rows.append(Row(workload, shape, "all implementations", "*", device, args.dtype, numel(shp),
                                    skipped=f"needs about {_mb(need)}, {_mb(have)} available"))
                    continue
                t0 = time.perf_counter()
                case = (kernel_case(workload, shape, shp, device, dtype, args) if workload in KERNEL_WORKLOADS
                        else particle_case(workload, shape, device, dtype, args))
                rows += run_case(case, args, settings)
                del case
                gc.collect()
                if device == "cuda":
                    torch.cuda.empty_cache()
                print(f"  {device} {workload} {shape}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    except BenchmarkError as exc:
        print(f"\nFAILED, nothing further was timed: {exc}")
        meta.update(ok=False, error=str(exc))
        status = 1
    for device in devices:
        print_table(rows, device)
    print_skipped(rows)
    if status == 0:
        meta["dispatch"] = dispatch
        meta["verdict"] = verdict(rows, dispatch)
        print("\nVerdict (ratios of medians, above 1: nytorch_ext is faster):")
        print("\n".join(f"  {line}" for line in meta["verdict"]["lines"]))
    if args.plot and status == 0:
        message = plot_note or plot(rows, args.plot)
        print(f"\n{message}")
        meta["plot"] = message
    if args.json:
        write_json(args.json, rows, meta)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BenchmarkError:  # pragma: no cover - main() handles these
        traceback.print_exc()
        sys.exit(1)
