"""Markdown tables from a `benchmarks/fused_vs_eager.py --json` file.

    python tools/bench_tables.py RUN.json              # the headline table (README)
    python tools/bench_tables.py RUN.json --summary    # every workload's fused row vs the peers

The headline puts nytorch_ext's row of each particle and swarm workload against
nytorch 1.1.0, torch._foreach_* and the floor (one native op over one flat buffer):
ratios of medians, above 1 when nytorch_ext is faster.
"""
from __future__ import annotations

import argparse
import json

# (workload, nytorch_ext's implementation row, how the README names the operation)
HEADLINE = [
    ("p.blend", "nytorch_ext: p1.blend(p0, a)", "APSO blend, new particle: `p1.blend(p0, a)`"),
    ("p.blend", "nytorch_ext: (a*p0+(1-a)*p1).module()", "the same written `(a*p0 + (1-a)*p1).module()`"),
    ("p.blend_", "nytorch_ext: c.blend_(b, a)", "in place: `c.blend_(b, a)`"),
    ("p.momentum", "nytorch_ext: (w2+beta*(w1-w0)).module()", "momentum: `(w2 + beta*(w1-w0)).module()`"),
    ("apso", "nytorch_ext: swarm.apso_step(pool)", "APSO step, 12 particles: `apso_step(pool, ...)`"),
]
SHAPES = {"mlp200x64": "200 x Linear(64,64)", "mlp10x1000": "10 x Linear(1000,1000)", "convnet": "ConvNet"}
PEERS = ["nytorch", "foreach", "floor"]


def ratio(row: dict, peer: str) -> str:
    value = row["speedup"].get(peer)
    return "-" if value is None else f"{value:.2f}x"


def timed_rows(run: dict) -> list[dict]:
    return [r for r in run["rows"] if r["median_ms"] is not None and r["device"] == "cpu"]


def headline(run: dict) -> str:
    rows = {(r["workload"], r["shape"], r["impl"]): r for r in timed_rows(run)}
    lines = ["| operation | model | median ms | vs nytorch 1.1.0 | vs torch._foreach | vs floor |",
             "|---|---|---:|---:|---:|---:|"]
    for workload, impl, label in HEADLINE:
        for shape, model in SHAPES.items():
            row = rows.get((workload, shape, impl))
            if row is None:
                continue
            lines.append(f"| {label} | {model} | {row['median_ms']:.3f} | "
                         + " | ".join(ratio(row, p) for p in PEERS) + " |")
    return "\n".join(lines)


def summary(run: dict) -> str:
    """Every nytorch_ext row (ops and particles), with its ratios against each peer."""
    lines = ["| workload | shape | implementation | median ms | vs eager | vs foreach | vs floor | vs nytorch |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in timed_rows(run):
        if r["family"] not in ("ext-ops", "ext-particle"):
            continue
        ratios = " | ".join(ratio(r, p) for p in ["eager", "foreach", "floor", "nytorch"])
        lines.append(f"| {r['workload']} | {r['shape']} | {r['impl']} | {r['median_ms']:.3f} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a JSON file written by benchmarks/fused_vs_eager.py --json")
    parser.add_argument("--summary", action="store_true", help="every nytorch_ext row instead of the headline")
    args = parser.parse_args()
    with open(args.run) as f:
        run = json.load(f)
    print(summary(run) if args.summary else headline(run))


if __name__ == "__main__":
    main()
