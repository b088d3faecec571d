"""tools/gpu_check.sh, the one-call GPU check: its shell logic runs here as a dry run
(every GPU step skipped and named, the CUDA test selection collected, the benchmark's
CUDA path answering that no GPU is visible), results land in $OUT within its limits."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
MAX_FILES = 8  # what comes back from the device machine's $OUT


def run(out: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)  # this interpreter, activated or not
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is the check for machines without a GPU")
def test_dry_run_skips_the_gpu_steps_and_reports_every_step(tmp_path):
    proc = run(tmp_path, "--dry-run", "--no-build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (tmp_path / "summary.txt").read_text()
    for name in ("env: ok", "build: skipped (--no-build)", "tests-collect: ok", "bench: ok"):
        assert name in summary, (name, summary)
    for name in ("tests", "memcheck", "racecheck", "apso12"):
        assert f"{name}: skipped (dry run): would run:" in summary, (name, summary)
    assert "--tool memcheck" in summary and "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in summary
    assert "-m cuda" in summary
    assert "no CUDA rows" in summary and "gpu_check finished" in summary
    assert "test_ops_cuda.py" in (tmp_path / "tests.log").read_text()  # the selection is not empty
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) <= MAX_FILES and all(p.is_file() for p in tmp_path.iterdir()), files


def test_a_step_that_runs_out_of_time_is_skipped_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CHECK_SECONDS", "20")  # less than the test step's own limit
    proc = run(tmp_path, "--dry-run", "--no-build")
    summary = (tmp_path / "summary.txt").read_text()
    assert proc.returncode == 0, summary
    assert "tests-collect: skipped (" in summary and "the step needs up to 90s" in summary


def test_bad_arguments_are_refused():
    proc = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr


@pytest.mark.slow
def test_dry_run_builds_the_cuda_extension_against_this_torch(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH")
    run(tmp_path, "--dry-run", timeout=1200)
    summary = (tmp_path / "summary.txt").read_text()
    assert "build: ok" in summary, summary + (tmp_path / "build.log").read_text()[-3000:]
