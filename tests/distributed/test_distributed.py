"""Distributed swarms on gloo, 127.0.0.1: every run is bit-identical to one process.

Each launch starts W rank processes of ``scenario.py`` (killed after a time limit).
The one-process reference runs in this process with one thread, as the ranks do.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import scenario
from launch import SCRIPT, collect, explain, free_port, launch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")


@pytest.fixture(scope="module")
def one_thread():
    with scenario.single_thread():  # as every rank runs
        yield


@pytest.fixture(scope="module")
def reference(one_thread):
    """The uninterrupted one-process run."""
    return scenario.summary(scenario.train(scenario.make_swarm()))


@pytest.fixture(scope="module")
def w2(tmp_path_factory):
    """A counted W=2 run from scratch, checkpointing every epoch (ck<epoch>.pt)."""
    out = tmp_path_factory.mktemp("w2")
    run = launch("train", 2, out, {"count": True, "checkpoint": str(out / "ck{epoch}.pt")}, timeout=120)
    assert run["codes"] == [0, 0], explain(run)
    return out, run["results"]


def assert_same(summary, ref):
    """Bit for bit: every member's parameters and buffers, the History (timings aside),
    evaluate (with and without the ensemble) and predict."""
    members, expected = summary["swarm"]["members"], ref["swarm"]["members"]
    assert len(members) == len(expected) == scenario.K
    for i, (a, b) in enumerate(zip(members, expected)):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"member {i} {key} differs"
    assert summary["history"] == ref["history"]
    assert summary["evaluate"] == ref["evaluate"] and summary["evaluate_plain"] == ref["evaluate_plain"]
    for key in ("predict_ensemble", "predict_best", "predict_2"):
        assert torch.equal(summary[key], ref[key]), key


def test_two_ranks_are_bit_identical_to_one_process(w2, reference):
    _, results = w2
    assert len(reference["history"]["evolutions"]) == scenario.EPOCHS * 6 // 2  # APSO did run
    for rank in (0, 1):
        assert_same(results[rank]["scratch"], reference)


def test_batched_training_on_two_ranks_matches_one_batched_process(tmp_path, one_thread):
    """batched=True on each rank's block: the members one process's batched run makes (to
    rounding: a batched matmul over 2-3 members may add in another order than over 5), the
    same History structure on both ranks."""
    ref = scenario.summary(scenario.train(scenario.make_swarm(), batched=True))
    run = launch("train", 2, tmp_path, {"batched": True}, timeout=120)
    assert run["codes"] == [0, 0], explain(run)
    for rank in (0, 1):
        got = run["results"][rank]["scratch"]
        for i, (a, b) in enumerate(zip(got["swarm"]["members"], ref["swarm"]["members"])):
            for key in a:
                torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=f"member {i} {key}")
        assert [e["best"] for e in got["history"]["evolutions"]] == [e["best"] for e in ref["history"]["evolutions"]]
        torch.testing.assert_close(torch.tensor(got["history"]["batch_loss"]), torch.tensor(ref["history"]["batch_loss"]),
                                   atol=1e-5, rtol=1e-4)
    assert run["results"][0]["scratch"]["history"] == run["results"][1]["scratch"]["history"]


def test_one_loss_all_gather_and_one_broadcast_per_group_per_apso_step_and_nothing_per_batch(w2):
    _, results = w2
    for rank in (0, 1):
        res = results[rank]
        steps, groups = res["steps"], res["groups"]
        assert groups == 2 and len(steps) == scenario.EPOCHS * 6
        evolved = {e["batch"] for e in res["scratch"]["history"]["evolutions"] if len(set(e["indices"])) > 1}
        batch = 0
        for taken in steps:
            batch += 1
            if batch % scenario.FIT["evolve_every"]:
                assert taken == {}, f"batch {batch}: collectives without an APSO step: {taken}"
            else:
                expected = {"all_gather": 1, "all_gather_bytes": 3 * 8}  # the longest block (3) of float64 losses
                if batch in evolved:  # somebody moved: the best's rows, one broadcast per group
                    expected.update(broadcast=groups, broadcast_bytes=sum(res["row_bytes"]))
                assert taken == expected, f"batch {batch}: {taken}"
        n_steps = len(res["scratch"]["history"]["evolutions"])
        calls = res["world_counts"]["calls"]
        assert calls["all_gather"] >= n_steps and calls["broadcast"] <= groups * n_steps


def test_three_ranks_from_scratch_and_resumed_from_a_two_rank_checkpoint(w2, reference, tmp_path):
    w2_dir, _ = w2
    run = launch("train", 3, tmp_path, {"resume": str(w2_dir / "ck2.pt")}, timeout=150)
    assert run["codes"] == [0, 0, 0], explain(run)
    for rank in range(3):
        assert_same(run["results"][rank]["scratch"], reference)
        assert_same(run["results"][rank]["resumed"], reference)


def test_a_two_rank_checkpoint_holds_the_whole_swarm_and_resumes_in_one_process(w2, reference):
    w2_dir, _ = w2
    state = torch.load(w2_dir / "ck2.pt", weights_only=False)
    assert state["size"] == scenario.K and len(state["swarm"]["members"]) == scenario.K
    assert len(state["optimizers"]) == scenario.K and state["epoch"] == 2
    (stopper,) = [v for k, v in state["callbacks"].items() if k.endswith("EarlyStopping")]
    assert len(stopper["best_state"]["members"]) == scenario.K  # the callback's swarm state, gathered
    assert not [p for p in os.listdir(w2_dir) if ".tmp" in p]  # written atomically, nothing left over
    trainer = scenario.train(scenario.make_swarm(), resume_from=str(w2_dir / "ck2.pt"))
    assert_same(scenario.summary(trainer), reference)


def test_a_truncated_or_foreign_checkpoint_is_refused_naming_the_file(w2, tmp_path, one_thread):
    w2_dir, _ = w2
    data = (w2_dir / "ck1.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something else"}, foreign)
    for path in (truncated, foreign):
        with pytest.raises(ValueError, match=str(path.name)):
            scenario.train(scenario.make_swarm(), resume_from=str(path))


def test_bad_inputs_raise_on_every_rank_before_anything_changes(tmp_path):
    run = launch("bad", 2, tmp_path, timeout=90)
    assert run["codes"] == [0, 0], explain(run)
    for rank in (0, 1):
        errors = run["results"][rank]
        assert "K < W" in errors["k_lt_w"]
        assert "different swarms" in errors["differ"] and "rank 0" in errors["differ"]
        assert "alpha" in errors["alpha"] and "different arguments" in errors["alpha"]
        assert "epochs" in errors["epochs"]
        assert "generator" in errors["seed"]
        assert errors["unchanged"] is True


def test_a_hung_peer_makes_the_others_raise_a_timeout_error(tmp_path):
    run = launch("hang", 2, tmp_path, {"timeout": 3, "sleep": 12}, timeout=60)
    result = run["results"].get(0)
    assert result is not None, explain(run)
    assert result["error"] is not None and "timeout (3 s)" in result["error"], result
    assert 3 <= result["seconds"] < 10, result  # the timeout (plus training up to the hang), not the peer's 12 s


def test_a_rank_killed_after_a_checkpoint_is_restarted_by_torchrun_and_resumes(tmp_path, reference):
    port = free_port()
    args = '{"checkpoint": "%s", "marker": "%s"}' % (tmp_path / "ck.pt", tmp_path / "killed")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2", "--max-restarts=1",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--monitor-interval=0.5",
           SCRIPT, "elastic", str(tmp_path), args]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish: {e.stderr}")
    run = collect(tmp_path, 2, [proc.returncode], [proc.stderr])
    assert proc.returncode == 0 and (tmp_path / "killed").exists(), explain(run)
    for rank in (0, 1):
        assert run["results"][rank]["restart"] == 1  # the run was restarted once
        assert_same(run["results"][rank], reference)
