"""benchmarks/swarm_training.py runs end to end on a tiny workload: every implementation
is checked to make the same members before it is timed, and the JSON parses."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "swarm_training.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("swarm_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def test_tiny_run_checks_and_times_every_implementation(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--tiny", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    impls = (["seed"] if bench.nytorch is not None else []) + ["sequential", "batched"]
    (row,) = result["rows"]
    assert row["model"] == "mlp" and row["k"] == 2
    assert row["max_diff"] <= 1e-4
    for impl in impls:
        assert row["median_ms"][impl] > 0 and row["min_ms"][impl] <= row["median_ms"][impl]
    assert "batched/seq" in capsys.readouterr().out


def test_a_disagreement_stops_the_run(monkeypatch):
    real = bench.TrainerRun.members

    def skewed(self):
        members = real(self)
        return [m + 1.0 for m in members] if self.trainer.batched else members

    monkeypatch.setattr(bench.TrainerRun, "members", skewed)
    with pytest.raises(SystemExit, match="batched ends .* away from the sequential trainer's members"):
        bench.main(["--tiny"])


def test_the_floor_makes_the_trainers_members(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--tiny", "--floor", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["max_diff"] <= 1e-4 and row["median_ms"]["floor"] > 0
    assert "floor/seq" in capsys.readouterr().out


def test_a_floor_that_disagrees_stops_the_run(monkeypatch):
    real = bench.FloorRun.members
    monkeypatch.setattr(bench.FloorRun, "members", lambda self: [m + 1.0 for m in real(self)])
    with pytest.raises(SystemExit, match="floor ends .* away"):
        bench.main(["--tiny", "--floor"])
