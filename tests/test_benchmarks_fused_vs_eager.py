"""benchmarks/fused_vs_eager.py runs end to end on tiny shapes: every implementation
is timed (after agreeing with the float64 reference) or skipped with a reason, the
JSON parses, and a disagreement stops the run naming the implementation."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "fused_vs_eager.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("fused_vs_eager", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def run_script(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def strict_json(path):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(Path(path).read_text(), parse_constant=reject)


def assert_rows_checked_or_skipped(rows):
    for r in rows:
        where = f"{r['workload']} {r['shape']} {r['device']} {r['impl']!r}"
        if r["skipped"] is not None:
            assert r["skipped"].strip(), f"{where}: skipped without a reason"
            continue
        assert r["checked"], f"{where}: timed without being checked"
        assert r["max_error"] is not None and r["max_error"] <= r["tolerance"], where
        assert r["rounds"] >= 1 and r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] <= r["max_ms"], where
        for key in ("eager", "foreach", "floor", "nytorch"):
            if key in r["speedup"]:
                assert r["speedup"][key] > 0, where


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = run_script("--tiny", "--json", str(out / "bench.json"), "--plot", str(out / "bench.png"))
    return proc, out


def test_tiny_run_times_or_skips_every_implementation(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    data = strict_json(out / "bench.json")
    assert data["ok"] and data["error"] is None
    rows = data["rows"]
    assert_rows_checked_or_skipped(rows)

    timed = [r for r in rows if r["skipped"] is None]
    # every workload ran on the flat sweep and/or every tiny model
    for workload in bench.KERNEL_WORKLOADS:
        shapes = {r["shape"] for r in timed if r["workload"] == workload}
        assert shapes == {"flat 1e3", "flat 1e4", "mlp4x32", "mlp20x8", "convnet"}, (workload, shapes)
    for workload in bench.PARTICLE_WORKLOADS:
        shapes = {r["shape"] for r in timed if r["workload"] == workload}
        assert shapes == {"mlp4x32", "mlp20x8", "convnet"}, (workload, shapes)
    # every implementation family the issue names is present, or skipped with a reason
    families = {r["family"] for r in rows}
    assert set(bench.FAMILIES) <= families, set(bench.FAMILIES) - families
    for r in rows:
        if r["family"] == "compile":
            assert r["skipped"] and "--compile" in r["skipped"]
    # the rows each workload must have on a model shape (timed or skipped)
    def impls(workload, shape="mlp20x8"):
        return {r["family"] for r in rows if r["workload"] == workload and r["shape"] == shape}
    for workload in ("blend_", "axpby_", "axpby", "momentum"):
        assert {"eager", "foreach", "ext-ops", "compile"} <= impls(workload), workload
    for workload in ("blend_", "axpby_", "axpby"):
        assert "floor" in impls(workload)
    for workload in ("p.blend", "p.blend_", "p.momentum", "apso"):
        assert {"nytorch", "eager", "foreach", "ext-particle"} <= impls(workload), workload
    assert {"nytorch", "ext-particle"} <= impls("p.module")
    apso = {r["impl"]: r for r in rows if r["workload"] == "apso" and r["shape"] == "mlp20x8"}
    assert "nytorch_ext multi_blend_ (flat members)" in apso and "torch lerp_ per member (flat, floor)" in apso
    assert "nytorch_ext: swarm.apso_step(pool)" in apso  # timed, or skipped saying why
    # GB/s and the copy fraction for the particle rows too
    for r in timed:
        if r["workload"] in ("p.blend", "p.blend_", "p.momentum", "apso"):
            assert r["gbps"] > 0 and r["copy_fraction"] > 0, r
        if r["family"] == "nytorch":
            assert r["speedup"]["nytorch"] == pytest.approx(1.0)
    # CUDA: run, or one row that says why not
    cuda_rows = [r for r in rows if r["device"] == "cuda"]
    if torch.cuda.is_available():
        assert any(r["skipped"] is None for r in cuda_rows)
    else:
        assert len(cuda_rows) == 1 and "CUDA is not available" in cuda_rows[0]["skipped"]
        assert "CUDA: skipped" in proc.stdout
    # the verdict: a few lines, printed and in the JSON; every losing row with its reason
    lines = data["verdict"]["lines"]
    assert 2 <= len(lines) <= 12 and "Verdict" in proc.stdout and all(line in proc.stdout for line in lines)
    assert lines[0].startswith("vs nytorch 1.1.0") and "APSO step" in lines[0]
    assert set(data["verdict"]["headline"]) >= {"APSO step", "blend", "momentum", "module()", "vs foreach"}
    for loss in data["verdict"]["losses"]:
        assert loss["reason"] and loss["ratio"] < 1.0 and loss["against"], loss
    if data["dispatch"] is not None:  # the fixed cost of a call with no work
        assert data["dispatch"]["custom_op_us"] > 0 and data["dispatch"]["torch_inplace_us"] > 0
    bare = {r["shape"] for r in rows if r["family"] == "dispatch"}
    assert {"flat 1e3", "flat 1e4", "convnet"} <= bare
    # the table names the implementations; the plot is written or its absence explained
    assert "nytorch_ext multi_blend_" in proc.stdout and "vs nytorch" in proc.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench.png").stat().st_size > 0
    else:
        assert "pip install matplotlib" in proc.stdout and not (out / "bench.png").exists()


def test_a_disagreeing_implementation_stops_the_run_by_name(monkeypatch, capsys, tmp_path):
    def wrong_blend_(x, y, alpha):
        return x.lerp_(y, alpha + 1e-3)
    monkeypatch.setattr(bench.ops, "blend_", wrong_blend_)
    status = bench.main(["--tiny", "--device", "cpu", "--workloads", "blend_", "--shapes", "flat",
                         "--sizes", "1000", "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED" in out and "'nytorch_ext blend_ (flat)' disagrees with the float64 reference" in out
    data = strict_json(tmp_path / "out.json")
    assert data["ok"] is False and "nytorch_ext blend_ (flat)" in data["error"]
    assert not any(r["impl"] == "nytorch_ext blend_ (flat)" for r in data["rows"])


def test_an_implementation_that_raises_stops_the_run_by_name(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(bench.ops, "lincomb", broken)
    status = bench.main(["--tiny", "--device", "cpu", "--workloads", "momentum", "--shapes", "flat", "--sizes", "1000"])
    assert status == 1
    assert "'nytorch_ext lincomb (flat)' raised RuntimeError: boom" in capsys.readouterr().out


def test_sizes_that_do_not_fit_in_memory_are_skipped_with_a_reason(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(bench, "available_bytes", lambda device: 10 ** 6)
    status = bench.main(["--tiny", "--device", "cpu", "--workloads", "blend_,apso", "--shapes", "flat,mlp4x32",
                         "--sizes", "1e3,1e5", "--json", str(tmp_path / "out.json")])
    assert status == 0
    rows = strict_json(tmp_path / "out.json")["rows"]
    def rows_of(workload, shape):
        return [r for r in rows if (r["workload"], r["shape"]) == (workload, shape)]
    assert any(r["skipped"] is None for r in rows_of("blend_", "flat 1e3"))
    for key in (("blend_", "flat 1e5"), ("apso", "mlp4x32")):
        [row] = rows_of(*key)
        assert row["impl"] == "all implementations" and "MB available" in row["skipped"]
    assert "needs about" in capsys.readouterr().out


def test_missing_nytorch_is_a_skipped_row_with_the_reason(tmp_path):
    fake = tmp_path / "nytorch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('nytorch is hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    proc = run_script("--tiny", "--device", "cpu", "--workloads", "p.blend,p.module,apso", "--shapes", "mlp4x32",
                      "--json", str(tmp_path / "out.json"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    rows = strict_json(tmp_path / "out.json")["rows"]
    assert_rows_checked_or_skipped(rows)
    ny = [r for r in rows if r["family"] == "nytorch"]
    assert len(ny) == 3 and all("pip install nytorch" in r["skipped"] for r in ny)
    assert all(r["skipped"] is None for r in rows if r["family"] != "nytorch")
    assert "pip install nytorch" in proc.stdout


def test_bad_arguments_are_a_usage_error_not_a_traceback(capsys):
    for args, message in ((["--workloads", "blend_,nonsense"], "unknown workload"),
                          (["--shapes", "resnet"], "unknown shape"),
                          (["--sizes", "0"], "--sizes must be positive")):
        with pytest.raises(SystemExit) as exit_:
            bench.main(args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_compile_rows_agree_and_are_timed(tmp_path):
    proc = run_script("--tiny", "--device", "cpu", "--compile", "--workloads", "axpby", "--shapes", "flat,mlp4x32",
                      "--sizes", "1000", "--json", str(tmp_path / "out.json"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = strict_json(tmp_path / "out.json")["rows"]
    assert_rows_checked_or_skipped(rows)
    compiled = [r for r in rows if r["family"] == "compile"]
    assert len(compiled) == 2
    for r in compiled:  # timed, or torch.compile cannot run on this machine and says why
        assert r["skipped"] is None or r["skipped"].startswith("failed to run here")


def fake_matplotlib(monkeypatch, figure, axes) -> None:
    """A stand-in for matplotlib (optional, and maybe not installed): subplots(rows, 1)
    gives ``figure()`` and a grid of ``axes()``."""
    import types

    class Grid(list):
        def __getitem__(self, key):
            return list(self) if key == (slice(None), 0) else super().__getitem__(key)

    pyplot = types.ModuleType("matplotlib.pyplot")
    pyplot.subplots = lambda rows, cols, **kw: (figure(), Grid(axes() for _ in range(rows)))
    pyplot.close = lambda fig: None
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.use = lambda backend: None
    matplotlib.pyplot = pyplot
    monkeypatch.setitem(sys.modules, "matplotlib", matplotlib)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", pyplot)


def test_plot_draws_gbps_against_size_per_implementation(monkeypatch, tmp_path):
    """With a stand-in for matplotlib (it is optional, and may not be installed):
    one panel per (device, kernel workload) of the sweep, one line per
    implementation, plus the measured copy bandwidth."""

    calls = {"lines": [], "saved": None}

    class Axes:
        def plot(self, xs, ys, *style, label=None, **kw):
            calls["lines"].append((label, list(xs), list(ys)))

        def __getattr__(self, name):
            return lambda *a, **k: None

    class Figure:
        def tight_layout(self):
            pass

        def savefig(self, path, **kw):
            calls["saved"] = path

    fake_matplotlib(monkeypatch, Figure, Axes)
    monkeypatch.setattr(bench, "_COPY_BW", {(1000, torch.float32, "cpu"): 4e9, (10000, torch.float32, "cpu"): 8e9})

    def row(impl, n, gbps, workload="blend_", shape=None):
        return bench.Row(workload, shape or bench.size_name(n), impl, "floor", "cpu", "float32", n, 12 * n,
                         gbps=gbps, median_ms=1.0)
    rows = [row("torch lerp_", 1000, 1.0), row("torch lerp_", 10000, 2.0), row("ext blend_", 1000, 1.5),
            row("ext blend_", 10000, 2.5), row("eager", 1000, 0.5, shape="mlp20x8"),
            bench.Row("blend_", "flat 1e5", "all implementations", "*", "cpu", "float32", skipped="no memory")]
    message = bench.plot(rows, str(tmp_path / "p.png"))
    assert message == f"plot written to {tmp_path / 'p.png'}" and calls["saved"] == str(tmp_path / "p.png")
    assert calls["lines"] == [("torch lerp_", [1000, 10000], [1.0, 2.0]), ("ext blend_", [1000, 10000], [1.5, 2.5]),
                              ("copy (read n + write n)", [1000, 10000], [4.0, 8.0])]


def test_verdict_names_each_loss_and_its_reason():
    def row(workload, shape, impl, family, ms, **speedup):
        return bench.Row(workload, shape, impl, family, "cpu", "float32", 10 ** 4, median_ms=ms, min_ms=ms,
                         max_ms=ms, speedup=speedup)
    rows = [row("blend_", "flat 1e4", "torch lerp_ (flat, floor)", "floor", 2.0),
            row("blend_", "flat 1e4", "nytorch_ext blend_ (flat)", "ext-ops", 2.5, floor=0.8),
            row("blend_", "convnet", "torch._foreach_lerp_", "foreach", 1.0),
            row("blend_", "convnet", "torch lerp_ (flat, floor)", "floor", 0.1),
            row("blend_", "convnet", "nytorch_ext multi_blend_", "ext-ops", 0.9, foreach=1.11),
            row("apso", "convnet", "nytorch 1.1.0: seed swarm_algorithm", "nytorch", 100.0),
            row("apso", "convnet", "torch._foreach_lerp_ (all members)", "foreach", 3.0),
            row("apso", "convnet", "nytorch_ext: Swarm.apso_step", "ext-particle", 4.0, nytorch=25.0, foreach=0.75)]
    result = bench.verdict(rows, {"custom_op_us": 1.8, "torch_inplace_us": 1.1})
    assert len(result["lines"]) <= 10
    assert result["lines"][0] == "vs nytorch 1.1.0 (convnet): APSO step 25.00x"
    losses = {(x["workload"], x["shape"]): x for x in result["losses"]}
    # multi_blend_ on per-parameter tensors is judged against foreach, not the one-buffer floor: a win
    assert set(losses) == {("blend_", "flat 1e4"), ("apso", "convnet")}
    assert "1.8 us with no work" in losses[("blend_", "flat 1e4")]["reason"]
    assert losses[("apso", "convnet")]["ratio"] == pytest.approx(0.75)
    assert "Python per step" in losses[("apso", "convnet")]["reason"]
    assert any("2 of 3 nytorch_ext rows" in line for line in result["lines"])


def test_plot_draws_the_headline_speedups_first(monkeypatch, tmp_path):
    bars, titles = [], []

    class Axes:
        def bar(self, xs, ys, width, label=None):
            bars.append((label, list(xs), list(ys)))

        def set_title(self, title, **kw):
            titles.append(title)

        def __getattr__(self, name):
            return lambda *a, **k: None

    class Figure:
        def __getattr__(self, name):
            return lambda *a, **k: None

    fake_matplotlib(monkeypatch, Figure, Axes)
    rows = [bench.Row("apso", "convnet", "nytorch_ext: Swarm.apso_step", "ext-particle", "cpu", "float32",
                      median_ms=1.0, speedup={"nytorch": 10.0, "foreach": 1.2}),
            bench.Row("p.blend", "convnet", "nytorch_ext: p1.blend(p0, a)", "ext-particle", "cpu", "float32",
                      median_ms=1.0, speedup={"nytorch": 3.0, "foreach": 0.5})]
    assert bench.plot(rows, str(tmp_path / "p.png")).startswith("plot written")
    assert bars == [("vs nytorch 1.1.0", [-0.2, 0.8], [10.0, 3.0]), ("vs torch._foreach_*", [0.2, 1.2], [1.2, 0.5])]
    assert "headline speedups" in titles[0]


@pytest.mark.parametrize("cold", [False, True])
def test_a_sample_is_back_to_back_calls_unless_cold(monkeypatch, cold):
    """Warm (default): each sample is the mean of back-to-back calls lasting about
    SAMPLE_SECONDS, so a fast call is timed many times per sample and a slow one once;
    --cold: one call per sample."""
    monkeypatch.setattr(bench, "COLD", cold)
    counts = {"fast": 0, "slow": 0}

    def fast():
        counts["fast"] += 1

    def slow():
        counts["slow"] += 1
        end = bench.time.perf_counter() + 2 * bench.SAMPLE_SECONDS
        while bench.time.perf_counter() < end:
            pass

    times = bench.time_round_robin({"fast": fast, "slow": slow}, "cpu", rounds=5, warmup=2, budget=0.0)
    assert len(times["fast"]) == len(times["slow"]) == 5
    assert counts["slow"] == 2 + 5  # warm-up rounds, then one call per sample
    if cold:
        assert counts["fast"] == 2 + 5
    else:
        assert counts["fast"] > 2 + 5 * 10
    assert min(times["slow"]) >= 2 * bench.SAMPLE_SECONDS > max(times["fast"])


def test_cold_flag_is_reported(tmp_path):
    out = run_script("--tiny", "--device", "cpu", "--workloads", "axpby_", "--shapes", "flat", "--sizes", "1e3",
                     "--cold")
    assert out.returncode == 0, out.stderr
    assert "one call per sample (--cold)" in out.stdout
