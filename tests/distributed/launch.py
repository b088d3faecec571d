"""Starting a scenario on W local ranks (127.0.0.1, a free port), each bounded in time."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scenario.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(rank: int, world_size: int, port: int) -> dict:
    return dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


def launch(name: str, world_size: int, out, args: dict | None = None, timeout: float = 90) -> dict:
    """Run scenario ``name`` on ``world_size`` ranks; every rank is killed at ``timeout``.
    Returns {"codes": [...], "results": {rank: result}, "errors": {rank: traceback}, "stderr": [...]}."""
    out = str(out)
    port = free_port()
    procs = [subprocess.Popen([sys.executable, SCRIPT, name, out, json.dumps(args or {})],
                              env=env_for(r, world_size, port), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for r in range(world_size)]
    deadline = time.monotonic() + timeout
    stderr = []
    try:
        for p in procs:
            try:
                _, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                err = (err or "") + f"\n[killed after {timeout} s]"
            stderr.append(err)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return collect(out, world_size, [p.returncode for p in procs], stderr)


def collect(out, world_size: int, codes, stderr) -> dict:
    results, errors = {}, {}
    for r in range(world_size):
        path = os.path.join(out, f"rank{r}.pt")
        if os.path.exists(path):
            results[r] = torch.load(path, weights_only=False)
        err = os.path.join(out, f"rank{r}.err")
        if os.path.exists(err):
            errors[r] = open(err).read()
    return {"codes": codes, "results": results, "errors": errors, "stderr": stderr}


def explain(run: dict) -> str:
    return "\n".join([f"codes {run['codes']}"] + [f"rank {r}: {e}" for r, e in run["errors"].items()]
                     + [s[-3000:] for s in run["stderr"] if s])
