"""benchmarks/distributed_swarm.py runs end to end (--quick: the single-process runs, torchrun
with two gloo ranks on 127.0.0.1, the APSO traffic of both designs) and reports what it
measured: the byte counts are exact, the times only positive (speed targets live in the
benchmark's output, not here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "distributed_swarm.py"


@pytest.mark.slow
def test_quick_run_reports_epoch_times_and_apso_traffic(tmp_path):
    out = tmp_path / "dist.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--batched", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["batched"] is True and result["K"] == 12
    for run in ("single_1_thread", "single_2_thread", "w2_1_thread_each"):
        assert result["median_epoch_seconds"][run] > 0
    for row in result["apso"].values():
        n = row["parameters"]
        # ours: the best's row (float32) plus the 12 losses (float64); naive: every member's row too
        assert row["ours"]["bytes_per_step"] == 4 * n + 8 * 12
        assert row["naive"]["bytes_per_step"] == 12 * 4 * n + 8 * 12
        assert row["bytes_ratio"] >= 6
    assert "fewer bytes" in proc.stdout
