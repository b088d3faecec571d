"""Side-by-side timing of nytorch_ext's fused ops against what users write today.

Every row of one table runs in this process on the same buffers, after warm-up,
and the implementations are timed round-robin (one call of each per round) so
that machine noise hits them alike. Reported: the median and min-max over the
rounds, effective GB/s (bytes that must move), the fraction of a same-size copy's
bandwidth, and ratios against the baselines. Results are checked for agreement
before anything is timed.

    python benchmarks/fused_vs_eager.py            # full run
    python benchmarks/fused_vs_eager.py --quick    # < 60 s on 2 cores
    python benchmarks/fused_vs_eager.py --device all --dtype bfloat16 --json out.json

Workloads (flat buffer of N elements, or a list of tensors shaped like a model):
  blend_   W <- (1-a) W + a W_best        torch: lerp_         foreach: _foreach_lerp_
  axpby_   W <- W + b V (a = 1)           torch: add_(alpha=)  foreach: _foreach_add_
  axpby    out = a x + b y (new buffer)   torch: a*x + b*y
  lincomb3 out = c0 x0 + c1 x1 + c2 x2    torch: c0*x0 + c1*x1 + c2*x2
  momentum W_new + beta (W_prev - W_prev2) as one lincomb
  particle (0.5a + 0.5b).module(), a.blend(b).module(), a.blend_(b) on ParticleModules
           of the model, against nytorch 1.1.0 (skipped with the reason if not installed)
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

import nytorch_ext
from nytorch_ext import ops

DTYPES = {"float32": torch.float32, "float64": torch.float64,
          "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Row:
    workload: str
    shape: str
    impl: str
    device: str
    dtype: str
    elements: int
    bytes_moved: int
    median_ms: float = float("nan")
    min_ms: float = float("nan")
    max_ms: float = float("nan")
    gbps: float = float("nan")
    copy_fraction: float = float("nan")
    speedup: dict = field(default_factory=dict)
    skipped: str | None = None


# --------------------------------------------------------------------- timing

def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_round_robin(fns: dict[str, Callable[[], object]], device: str, rounds: int,
                     warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed one call each per round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def copy_bandwidth(n: int, dtype: torch.dtype, device: str, rounds: int, warmup: int) -> float:
    """Bytes/s of a warm same-size copy (read n + write n elements)."""
    src = torch.randn(n, device=device).to(dtype)
    dst = torch.empty_like(src)
    t = time_round_robin({"copy": lambda: dst.copy_(src)}, device, rounds, warmup)["copy"]
    return 2 * n * src.element_size() / statistics.median(t)


# ------------------------------------------------------------------ workloads

def model_shapes(name: str) -> list[tuple[int, ...]]:
    """Parameter shapes of the benchmark models."""
    if name == "mlp10x1000":       # 10 x Linear(1000, 1000): 10M parameters in 20 tensors
        return [(1000, 1000), (1000,)] * 10
    if name == "mlp200x64":        # 200 x Linear(64, 64): 0.8M parameters in 400 tensors
        return [(64, 64), (64,)] * 200
    if name == "convnet":          # the seed's ConvNet
        return [(10, 1, 5, 5), (10,), (20, 10, 3, 3), (20,), (10, 2000), (10,)]
    raise ValueError(name)


def make_lists(shapes, dtype, device, count: int, seed: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g).to(device=device, dtype=dtype) for s in shapes]
            for _ in range(count)]


def flat_of(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def implementations(workload: str, lists, flats, alpha: float, a: float, b: float):
    """name -> (callable, result getter) for one workload. `lists` are per-parameter
    tensor lists (what a model holds), `flats` the same data as flat buffers."""
    W, V, U = lists
    fW, fV, fU = flats
    impls: dict[str, tuple[Callable[[], object], Callable[[], torch.Tensor]]] = {}
    per_param = len(W) > 1
    if workload == "blend_":
        if per_param:
            impls["eager per-parameter"] = (lambda: [w.lerp_(v, alpha) for w, v in zip(W, V)], lambda: flat_of(W))
            impls["torch._foreach_lerp_"] = (lambda: torch._foreach_lerp_(W, V, alpha), lambda: flat_of(W))
            impls["nytorch_ext multi_blend_"] = (lambda: ops.multi_blend_(W, V, alpha), lambda: flat_of(W))
        impls["torch lerp_ (flat, floor)"] = (lambda: fW.lerp_(fV, alpha), lambda: fW)
        impls["nytorch_ext blend_ (flat)"] = (lambda: ops.blend_(fW, fV, alpha), lambda: fW)
    elif workload == "axpby_":  # a = 1, so torch's single add_(alpha=) is the same math
        if per_param:
            impls["eager per-parameter"] = (lambda: [w.add_(v, alpha=b) for w, v in zip(W, V)], lambda: flat_of(W))
            impls["torch._foreach_add_"] = (lambda: torch._foreach_add_(W, V, alpha=b), lambda: flat_of(W))
            impls["nytorch_ext multi_axpby_"] = (lambda: ops.multi_axpby_(W, 1.0, W, b, V), lambda: flat_of(W))
        impls["torch add_(alpha=) (flat, floor)"] = (lambda: fW.add_(fV, alpha=b), lambda: fW)
        impls["nytorch_ext axpby_ (flat)"] = (lambda: ops.axpby_(1.0, fW, b, fV), lambda: fW)
    elif workload == "axpby":
        out = {}
        if per_param:
            impls["eager per-parameter"] = (lambda: out.__setitem__("e", [a * w + b * v for w, v in zip(W, V)]), lambda: flat_of(out["e"]))
        impls["torch a*x + b*y (flat)"] = (lambda: out.__setitem__("t", a * fW + b * fV), lambda: out["t"])
        impls["nytorch_ext axpby (flat)"] = (lambda: out.__setitem__("n", ops.axpby(a, fW, b, fV)), lambda: out["n"])
    elif workload in ("lincomb3", "momentum"):
        # momentum: W_new + beta*(W_prev - W_prev2), three leaves
        c = (0.5, 0.3, 0.2) if workload == "lincomb3" else (1.0, b, -b)
        out = {}
        if per_param:
            impls["eager per-parameter"] = (lambda: out.__setitem__("e", [c[0] * w + c[1] * v + c[2] * u for w, v, u in zip(W, V, U)]), lambda: flat_of(out["e"]))
        impls["torch c0*x0 + c1*x1 + c2*x2 (flat)"] = (lambda: out.__setitem__("t", c[0] * fW + c[1] * fV + c[2] * fU), lambda: out["t"])
        impls["nytorch_ext lincomb (flat)"] = (lambda: out.__setitem__("n", ops.lincomb(c, [fW, fV, fU])), lambda: out["n"])
    return impls


def bytes_moved(workload: str, n: int, elem: int) -> int:
    # in-place: read 2, write 1; out-of-place 2 inputs: read 2, write 1; lincomb3: read 3, write 1
    return {"blend_": 3, "axpby_": 3, "axpby": 3, "lincomb3": 4, "momentum": 4}[workload] * n * elem


def tolerance(dtype: torch.dtype) -> float:
    return {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]


def verify(impls, lists, flats) -> None:
    """All implementations of one workload agree, starting from the same state."""
    originals = ([t.clone() for t in lists[0]], flats[0].clone())
    results = {}
    for name, (fn, result) in impls.items():
        for t, o in zip(lists[0], originals[0]):
            t.copy_(o)
        flats[0].copy_(originals[1])
        fn()
        results[name] = result().double()
    for t, o in zip(lists[0], originals[0]):
        t.copy_(o)
    flats[0].copy_(originals[1])
    ref_name, ref = next(iter(results.items()))
    for name, r in results.items():
        err = (r - ref).abs().max().item() if r.numel() else 0.0
        scale = max(1.0, ref.abs().max().item() if ref.numel() else 1.0)
        if not err <= tolerance(flats[0].dtype) * scale:
            raise AssertionError(f"{name} disagrees with {ref_name}: max abs error {err:.3g}")


def run_case(workload, shape_name, shapes, dtype, device, rounds, warmup, copy_bw) -> list[Row]:
    lists = make_lists(shapes, dtype, device, 3, seed=0)
    flats = [flat_of(t) for t in lists]
    n = flats[0].numel()
    impls = implementations(workload, lists, flats, alpha=0.3, a=0.9, b=0.1)
    verify(impls, lists, flats)
    times = time_round_robin({k: f for k, (f, _) in impls.items()}, device, rounds, warmup)
    moved = bytes_moved(workload, n, flats[0].element_size())
    rows = []
    for name, t in times.items():
        med = statistics.median(t)
        rows.append(Row(workload, shape_name, name, device, str(dtype).replace("torch.", ""), n, moved,
                        med * 1e3, min(t) * 1e3, max(t) * 1e3, moved / med / 1e9, moved / med / copy_bw))
    medians = {r.impl: r.median_ms for r in rows}
    baselines = {"eager": [k for k in medians if k.startswith("eager")],
                 "foreach": [k for k in medians if "_foreach" in k],
                 "floor": [k for k in medians if "floor" in k]}
    for r in rows:
        for label, names in baselines.items():
            if names:
                r.speedup[label] = medians[names[0]] / r.median_ms
    return rows


# ------------------------------------------------------------ particle level

def particle_model(base, shapes_name: str):
    """The benchmark model as a subclass of `base` (nytorch's or our NytoModule)."""
    import torch.nn as nn

    class Model(base):
        def __init__(self):
            super().__init__()
            if shapes_name == "convnet":
                self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 3)
                self.fc = nn.Linear(2000, 10)
            else:
                n, d = {"mlp10x1000": (10, 1000), "mlp200x64": (200, 64)}[shapes_name]
                self.layers = nn.Sequential(*[nn.Linear(d, d) for _ in range(n)])
    return Model()


def run_particle_case(shape_name: str, rounds: int, warmup: int) -> list[Row]:
    """(0.5*a + 0.5*b).module(), a.blend(b).module() and the in-place blend_ on
    ParticleModules, against nytorch 1.1.0 and one lerp_ over a flat buffer."""
    import nytorch_ext as ne

    torch.manual_seed(0)
    a = ne.ParticleModule(particle_model(ne.NytoModule, shape_name))
    b = a.randn()
    n = sum(p.numel() for p in a.parameters())
    impls: dict[str, Callable[[], object]] = {}
    results: dict[str, Callable[[], list]] = {}
    skipped = []
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nytorch
            from nytorch.particle_module import ParticleModule as NyParticleModule
        na = NyParticleModule(particle_model(nytorch.NytoModule, shape_name))
        na.load_state_dict(a.state_dict())
        nb = na.clone()
        nb.load_state_dict(b.state_dict())
        out = {}
        impls["nytorch 1.1.0 (0.5a+0.5b).module()"] = lambda: out.__setitem__("ny", (0.5 * na.product() + 0.5 * nb.product()).module())
        results["nytorch 1.1.0 (0.5a+0.5b).module()"] = lambda: list(out["ny"].parameters())
    except ImportError as exc:
        skipped.append(("nytorch 1.1.0", f"nytorch is not installed ({exc.name}); pip install nytorch==1.1.0"))
    out2 = {}
    impls["nytorch_ext (0.5a+0.5b).module()"] = lambda: out2.__setitem__("lin", (0.5 * a.product() + 0.5 * b.product()).module())
    results["nytorch_ext (0.5a+0.5b).module()"] = lambda: list(out2["lin"].parameters())
    impls["nytorch_ext a.blend(b, 0.5).module()"] = lambda: out2.__setitem__("bl", a.product().blend(b.product(), 0.5).module())
    results["nytorch_ext a.blend(b, 0.5).module()"] = lambda: list(out2["bl"].parameters())
    c = a.clone()
    impls["nytorch_ext c.blend_(b, 0.5) in place"] = lambda: c.blend_(b, 0.5)
    flat_a, flat_b = torch.randn(n), torch.randn(n)
    impls["torch lerp_ (flat, floor)"] = lambda: flat_a.lerp_(flat_b, 0.5)
    # correctness before timing: every module-producing row holds 0.5a + 0.5b
    for name, fn in impls.items():
        fn()
        if name in results:
            expected = [0.5 * p + 0.5 * q for p, q in zip(a.parameters(), b.parameters())]
            for got, want in zip(results[name](), expected):
                if not torch.allclose(got, want, atol=1e-5, rtol=1e-5):
                    raise AssertionError(f"{name} disagrees with 0.5*a + 0.5*b")
    times = time_round_robin(impls, "cpu", rounds, warmup)
    moved = 3 * n * 4
    rows = []
    for name, t in times.items():
        med = statistics.median(t)
        rows.append(Row("particle", shape_name, name, "cpu", "float32", n, moved, med * 1e3,
                        min(t) * 1e3, max(t) * 1e3, moved / med / 1e9, float("nan")))
    medians = {r.impl: r.median_ms for r in rows}
    for r in rows:
        ny = [k for k in medians if k.startswith("nytorch 1.1.0")]
        if ny:
            r.speedup["nytorch"] = medians[ny[0]] / r.median_ms
        r.speedup["floor"] = medians["torch lerp_ (flat, floor)"] / r.median_ms
    rows += [Row("particle", shape_name, name, "cpu", "float32", n, moved, skipped=why) for name, why in skipped]
    return rows


# ----------------------------------------------------------------------- main

def print_table(rows: list[Row]) -> None:
    header = f"{'workload':<9} {'shape':<11} {'implementation':<36} {'median ms':>10} {'min-max ms':>17} {'GB/s':>7} {'%copy':>6} {'vs eager':>9} {'vs foreach':>10} {'vs floor':>9} {'vs nytorch':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if r.skipped:
            print(f"{r.workload:<9} {r.shape:<11} {r.impl:<36} skipped: {r.skipped}")
            continue
        sp = lambda k: f"{r.speedup[k]:.2f}x" if k in r.speedup else "-"
        copy = "-" if r.copy_fraction != r.copy_fraction else f"{100 * r.copy_fraction:.0f}%"
        print(f"{r.workload:<9} {r.shape:<11} {r.impl:<36} {r.median_ms:>10.3f} {r.min_ms:>8.3f}-{r.max_ms:<8.3f} "
              f"{r.gbps:>7.1f} {copy:>6} {sp('eager'):>9} {sp('foreach'):>10} {sp('floor'):>9} {sp('nytorch'):>10}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds (< 60 s on 2 cores)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per implementation")
    p.add_argument("--json", metavar="PATH", help="write machine-readable results here")
    args = p.parse_args(argv)

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    dtype = DTYPES[args.dtype]
    rounds = args.rounds or (7 if args.quick else 25)
    warmup = 2 if args.quick else 5
    print(f"nytorch_ext {nytorch_ext.__version__}  torch {torch.__version__}  backend {ops.backend_info()}")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"median of {rounds} round-robin rounds after {warmup} warm-up\n")

    cases = [("flat 1e6", [(1_000_000,)])] if args.quick else [("flat 1e7", [(10_000_000,)])]
    cases += [("mlp200x64", model_shapes("mlp200x64"))]
    if not args.quick:
        cases += [("mlp10x1000", model_shapes("mlp10x1000")), ("convnet", model_shapes("convnet"))]
    rows: list[Row] = []
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            rows.append(Row("*", "*", "all CUDA rows", "cuda", args.dtype, 0, 0, skipped="CUDA is not available here"))
            continue
        for shape_name, shapes in cases:
            n = sum(torch.Size(s).numel() for s in shapes)
            bw = copy_bandwidth(n, dtype, device, rounds, warmup)
            for workload in ("blend_", "axpby_", "axpby", "lincomb3", "momentum"):
                rows += run_case(workload, shape_name, shapes, dtype, device, rounds, warmup, bw)
    if "cpu" in devices and dtype == torch.float32:
        for shape_name in (["mlp200x64"] if args.quick else ["mlp200x64", "mlp10x1000", "convnet"]):
            rows += run_particle_case(shape_name, rounds, warmup)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "backend": ops.backend_info(), "device_name":
                       torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor(),
                       "rows": [asdict(r) for r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
