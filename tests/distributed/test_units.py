"""The distributed pieces that need no second process: ownership, the one-process world,
resume_from="auto"."""
from __future__ import annotations

import pytest
import torch

import scenario
from nytorch_ext import distributed
from nytorch_ext.swarm.distributed.ownership import owner_of


def test_blocks_are_contiguous_and_as_even_as_possible():
    assert distributed.blocks(5, 2) == [range(0, 3), range(3, 5)]
    assert distributed.blocks(5, 3) == [range(0, 2), range(2, 4), range(4, 5)]
    assert distributed.blocks(4, 4) == [range(i, i + 1) for i in range(4)]
    assert [owner_of(i, distributed.blocks(7, 3)) for i in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="K < W"):
        distributed.blocks(2, 3)


def test_one_process_shard_is_the_swarm_and_its_apso_step_is_the_swarms():
    with scenario.single_thread():
        a, b = scenario.make_swarm(), scenario.make_swarm()
        sharded = distributed.shard(a, distributed.LocalWorld())
        assert sharded.local is a and len(sharded) == scenario.K and sharded.gather() is a
        losses = [0.5, 0.1, 0.9, 0.3, 0.7]
        r1 = sharded.apso_step(losses, 0.4, 4, noise=0.01, generator=torch.Generator().manual_seed(3))
        r2 = b.apso_step(losses, 0.4, 4, noise=0.01, generator=torch.Generator().manual_seed(3))
        assert r1 == r2 and all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))
        assert distributed.fingerprint(a) == distributed.fingerprint(b)
        assert distributed.fingerprint(a) != distributed.fingerprint(scenario.make_swarm(seed=1))


def test_resume_auto_starts_a_new_run_then_resumes_the_last_checkpoint(tmp_path):
    with scenario.single_thread():
        path = str(tmp_path / "ck{epoch}.pt")
        first = scenario.train(scenario.make_swarm(), epochs=2, checkpoint=path, resume_from="auto")
        assert len(first.history) == 2  # no checkpoint yet: a new run
        resumed = scenario.train(scenario.make_swarm(), epochs=3, checkpoint=path, resume_from="auto")
        uninterrupted = scenario.train(scenario.make_swarm(), epochs=3)
        assert resumed.history.records[0] == first.history.records[0]  # picked up epoch 2's file
        for x, y in zip(resumed.swarm.buffers(), uninterrupted.swarm.buffers()):
            assert torch.equal(x, y)
        with pytest.raises(ValueError, match="Checkpoint callback"):
            scenario.train(scenario.make_swarm(), resume_from="auto")


def test_init_process_group_outside_torchrun_says_how_to_start(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialised")
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.init_process_group()
    with pytest.raises(ValueError, match="timeout"):
        distributed.init_process_group(timeout=0)
