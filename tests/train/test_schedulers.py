"""fit(scheduler=...): one LR scheduler per member, per epoch or per batch, in checkpoints."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from nytorch_ext.train import Checkpoint, SwarmTrainer
from test_train import ExplodingLoader, flat, make_swarm, one_thread, sgd, toy_data  # noqa: F401


def step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)


def hand_written(swarm, batches, epochs, make_scheduler, per_batch=False):
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in swarm]
    scheds = [make_scheduler(o) for o in opts]
    for _ in range(epochs):
        for x, y in batches:
            for m, o, s in zip(swarm, opts, scheds):
                o.zero_grad()
                F.cross_entropy(m(x), y).backward()
                o.step()
                if per_batch:
                    s.step()
        if not per_batch:
            for s in scheds:
                s.step()
    return opts


def batches(n=4, size=8):
    x, y = toy_data(n * size)
    return [(x[i:i + size], y[i:i + size]) for i in range(0, n * size, size)]


@pytest.mark.parametrize("interval", ["epoch", "batch"])
def test_schedulers_step_like_hand_written_code(interval):
    data = batches()
    hand = make_swarm(3)
    opts = hand_written(hand, data, 3, step_lr, per_batch=interval == "batch")
    trainer = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    history = trainer.fit(data, epochs=3, optimizer=sgd(0.05), evolve_every=0, scheduler=step_lr,
                          scheduler_interval=interval, progress=False)
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(hand, trainer.swarm))
    assert [s.get_last_lr() for s in trainer.schedulers] == [o.param_groups[0]["lr"] and [o.param_groups[0]["lr"]]
                                                              for o in opts]
    assert "lr" in history.keys and "lr" in trainer.log_keys
    if interval == "epoch":  # the rate each epoch trained with
        assert history.best_lr == [0.05, 0.025, 0.0125]
    else:  # after the epoch's 4 steps
        assert history.best_lr == pytest.approx([0.05 / 2 ** 4, 0.05 / 2 ** 8, 0.05 / 2 ** 12])


def test_without_a_scheduler_nothing_changes():
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    history = trainer.fit(batches(), epochs=2, optimizer=sgd(0.05), evolve_every=0, progress=False)
    assert trainer.schedulers is None and "lr" not in history.keys
    assert [o.param_groups[0]["lr"] for o in trainer.optimizers] == [0.05, 0.05]


def test_reduce_on_plateau_follows_each_members_validation_loss():
    x, y = toy_data(16)
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    plateau = lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.1)  # noqa: E731
    history = trainer.fit([(x, y)], val_data=(x, y), epochs=3, optimizer=sgd(1e-6), evolve_every=0,
                          scheduler=plateau, progress=False)  # a tiny lr: the loss does not improve
    assert history.best_lr == pytest.approx([1e-6, 1e-6, 1e-7])
    assert [s.best for s in trainer.schedulers] == history.val_loss[0]  # each member's own loss
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        trainer.fit([(x, y)], epochs=1, optimizer=sgd(0.1), evolve_every=0, scheduler=plateau,
                    scheduler_interval="batch", progress=False)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"scheduler": "steplr"}, TypeError, "scheduler must be a factory"),
    ({"scheduler": lambda opt: 3}, TypeError, "must return an LR scheduler"),
    ({"scheduler": step_lr, "scheduler_interval": "step"}, ValueError, "scheduler_interval"),
    ({"scheduler": lambda opt: step_lr(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1))},
     ValueError, "another optimizer"),
])
def test_bad_scheduler_arguments_are_refused_before_training(kwargs, error, match):
    swarm = make_swarm(2)
    trainer = SwarmTrainer(swarm, device="cpu")
    opts = [torch.optim.SGD(m.parameters(), lr=0.3) for m in swarm]
    with pytest.raises(error, match=match):
        trainer.fit(ExplodingLoader(), optimizer=opts, evolve_every=0, progress=False, **kwargs)
    assert trainer.optimizers is None
    assert [o.param_groups[0]["lr"] for o in opts] == [0.3, 0.3] and "initial_lr" not in opts[0].param_groups[0]


def every_second_epoch(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)  # its step count matters


def resumable_run(tmp_path, name, epochs, resume_from=None, seed=0, scheduler=every_second_epoch):
    x, y = toy_data(48)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
    trainer = SwarmTrainer(make_swarm(3, seed=seed, dropout=0.2), device="cpu", seed=seed)
    trainer.fit(loader, epochs=epochs, optimizer=sgd(0.05, 0.9), evolve_every=2, subset_size=2,
                scheduler=scheduler, callbacks=[Checkpoint(tmp_path / (name + "-{epoch}.pt"))], progress=False,
                resume_from=resume_from)
    return trainer


def test_resume_with_a_scheduler_is_bit_for_bit(tmp_path):
    """The issue's case: a scheduler built in a callback was not saved, so a resumed run
    had the wrong learning rate (0.0125 instead of 0.00625)."""
    torch.manual_seed(0)
    straight = resumable_run(tmp_path, "straight", 4)
    torch.manual_seed(0)
    resumable_run(tmp_path, "first", 1)
    torch.manual_seed(99)
    resumed = resumable_run(tmp_path, "resumed", 4, resume_from=tmp_path / "first-1.pt", seed=7)
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(straight.swarm, resumed.swarm))
    assert [o.param_groups[0]["lr"] for o in resumed.optimizers] == [0.05 / 4] * 3
    assert [s.state_dict() for s in resumed.schedulers] == [s.state_dict() for s in straight.schedulers]
    assert resumed.history.best_lr == straight.history.best_lr == [0.05, 0.05, 0.025, 0.025]
    state = torch.load(tmp_path / "first-1.pt", weights_only=False)
    assert state["format"] == "nytorch_ext.SwarmTrainer/2" and state["precision"] == "32"
    assert state["scheduler_classes"] == ["torch.optim.lr_scheduler.StepLR"] * 3 and state["scalers"] is None


def test_resume_refuses_a_missing_or_another_scheduler(tmp_path):
    torch.manual_seed(0)
    resumable_run(tmp_path, "with", 1)
    resumable_run(tmp_path, "without", 1, scheduler=None)
    with pytest.raises(ValueError, match="had an LR scheduler, this run has none"):
        resumable_run(tmp_path, "x", 2, resume_from=tmp_path / "with-1.pt", scheduler=None)
    with pytest.raises(ValueError, match="had no LR scheduler, this run has one"):
        resumable_run(tmp_path, "x", 2, resume_from=tmp_path / "without-1.pt")
    with pytest.raises(ValueError, match="ExponentialLR"):
        resumable_run(tmp_path, "x", 2, resume_from=tmp_path / "with-1.pt",
                      scheduler=lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.5))


def test_format_1_checkpoints_still_resume_runs_without_a_scheduler(tmp_path):
    torch.manual_seed(0)
    straight = resumable_run(tmp_path, "straight", 2, scheduler=None)
    torch.manual_seed(0)
    resumable_run(tmp_path, "old", 1, scheduler=None)
    state = torch.load(tmp_path / "old-1.pt", weights_only=False)
    state["format"] = "nytorch_ext.SwarmTrainer/1"
    for key in ("schedulers", "scheduler_classes", "scalers", "precision"):
        del state[key]
    del state["history"]["stop_reason"]
    torch.save(state, tmp_path / "old-1.pt")
    resumed = resumable_run(tmp_path, "resumed", 2, resume_from=tmp_path / "old-1.pt", scheduler=None, seed=4)
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(straight.swarm, resumed.swarm))
