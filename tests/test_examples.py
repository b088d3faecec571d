"""examples/: each runs offline with small arguments; the full digits run reaches 0.90 (slow)."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

pytest.importorskip("sklearn")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_script(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{name}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ apso_digits


def test_apso_digits_runs_as_a_script_with_small_arguments():
    out = run_script("apso_digits", "--epochs", "1", "--pool-size", "4", "--swarm-size", "3",
                     "--swarm-interval", "4", "--print-interval", "8")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    progress = [line for line in lines if line.startswith("batch:")]
    assert progress[0].startswith("batch:   0 Accuracy: [0]") and len(progress) == 1 + 20 // 8
    assert all(len(re.findall(r"\[\d+\]\d\.\d\d", line)) == 4 for line in progress)
    assert "End" in lines
    final = [line for line in lines if line.startswith("best particle")]
    assert final and "ensemble accuracy" in final[0]
    assert "Epoch 1/1: [" in out.stderr and "\r" not in out.stderr  # not a terminal: lines, no tqdm frames


def test_apso_digits_selects_on_a_validation_split_and_plots(tmp_path, capsys):
    module = load("apso_digits")
    train, val, test, side = module.digits_data(0.25, 0.2, seed=0)
    assert (len(train), len(val), len(test), side) == (1077, 270, 450, 8)  # disjoint splits of the 1797
    assert not set(map(tuple, val.tensors[0].flatten(1).tolist())) & set(map(tuple, test.tensors[0].flatten(1).tolist()))
    pytest.importorskip("matplotlib")
    path = tmp_path / "out.png"
    result = module.main(["--epochs", "1", "--pool-size", "3", "--swarm-size", "2", "--swarm-interval", "4",
                          "--print-interval", "4", "--quiet", "--plot", str(path)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr()
    assert "chosen on validation" in out.out and "Epoch" not in out.err  # --quiet
    assert result["best_accuracy"] == result["accuracy"][result["best"]] and 0 <= result["val_accuracy"] <= 1


def test_apso_digits_mnist_never_downloads_unasked(tmp_path):
    module = load("apso_digits")
    with pytest.raises(SystemExit) as exc:
        module.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1"])
    assert "torchvision" in str(exc.value) or "--download" in str(exc.value)
    assert list(tmp_path.iterdir()) == [] or not any(p.is_file() for p in tmp_path.rglob("*"))


def test_apso_digits_convnet_fits_both_input_sizes():
    module = load("apso_digits")
    for side in (8, 28):
        out = module.ConvNet(side)(torch.randn(2, 1, side, side))
        assert out.shape == (2, 10)
    assert module.ConvNet(28).fc.in_features == 20 * 10 * 10  # the seed's


@pytest.mark.slow
def test_apso_digits_default_run_reaches_90_percent(capsys):
    result = load("apso_digits").main([])
    assert result["best_accuracy"] >= 0.90 and result["ensemble_accuracy"] >= 0.90, result


# ------------------------------------------------------------------ momentum_iris


def test_momentum_iris_learns_and_fused_matches(capsys):
    module = load("momentum_iris")
    plain = module.main(["--epochs", "200", "--print-every", "100"])
    fused = module.main(["--epochs", "200", "--print-every", "0", "--fused"])
    assert plain["accuracy"] >= 0.9 and plain["accuracy"] > plain["start_accuracy"]
    assert fused["accuracy"] == pytest.approx(plain["accuracy"], abs=0.04)
    out = capsys.readouterr().out
    assert "epoch=99 acc=" in out and "epoch=199 acc=" in out


# ------------------------------------------------------------------ particle_gc


def seed_particle_module_output(iterations: int) -> list[str]:
    """The chapter's printed sequence for the ParticleModule version."""
    lines = ["init cnn=1"]
    for i in range(iterations):
        a, b = 2 * i + 2, 2 * i + 3
        lines += [f"init cnn={a}", f"init cnn={b}", f"delete cnn={a}", f"delete cnn={a - 1}"]
    return lines + [f"delete cnn={2 * iterations + 1}"]


def test_particle_gc_frees_particle_modules_promptly(capsys):
    result = load("particle_gc").main([])
    out = capsys.readouterr().out.split("--- ParticleModule\n")
    assert result["particle_module"] == {"made": 21, "peak_alive": 3, "alive_after_loop": 0,
                                         "alive_after_collect": 0}
    # a bare NytoModule is in a reference cycle: nothing is freed before the collector runs
    assert result["nytomodule"] == {"made": 21, "peak_alive": 21, "alive_after_loop": 21,
                                    "alive_after_collect": 0}
    assert out[1].splitlines()[:-1] == seed_particle_module_output(10)


def test_particle_gc_quiet_and_gc_flags(capsys):
    result = load("particle_gc").main(["--quiet", "--iterations", "3", "--gc"])
    assert result["particle_module"]["peak_alive"] == 3 and result["particle_module"]["made"] == 7
    assert "init cnn" not in capsys.readouterr().out


# ------------------------------------------------------------------ apso_digits_distributed


def test_apso_digits_distributed_under_torchrun_matches_one_process():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    small = ["--epochs", "1", "--pool-size", "4", "--swarm-size", "3", "--swarm-interval", "4",
             "--print-interval", "8", "--quiet", "--timeout", "60"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    script = os.path.join(EXAMPLES, "apso_digits_distributed.py")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
                          "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", script, *small],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run_script("apso_digits_distributed", *small, timeout=240)
    assert one.returncode == 0, one.stderr

    def lines(out):  # rank 0's output only; the same numbers as one process (timings aside)
        return [re.sub(r"\d+\.\d s, \d process\(es\)", "", line) for line in out.splitlines()
                if line.startswith(("batch:", "Test accuracy", "best particle"))]
    assert lines(two.stdout) == lines(one.stdout) and len(lines(one.stdout)) == 1 + 20 // 8 + 2
    assert "2 process(es)" in two.stdout and two.stdout.count("End\n") == 1
