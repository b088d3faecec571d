"""CSVLogger, TensorBoardLogger (with a stand-in SummaryWriter; its missing-package error), History.plot."""
from __future__ import annotations

import csv
import sys
import types
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nytorch_ext.train import Checkpoint, CSVLogger, SwarmTrainer, TensorBoardLogger, accuracy
from test_train import flat, make_swarm, one_thread, sgd, toy_data  # noqa: F401


def short_fit(trainer, epochs, callbacks, resume_from=None, **kw):
    x, y = toy_data(32)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    return trainer.fit(loader, val_data=(x, y), epochs=epochs, optimizer=sgd(0.1), evolve_every=2, subset_size=2,
                       metrics={"accuracy": accuracy}, callbacks=callbacks, progress=False,
                       resume_from=resume_from, **kw)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_writes_one_row_per_member_and_epoch(tmp_path):
    path = tmp_path / "logs" / "run.csv"
    trainer = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    history = short_fit(trainer, 2, [CSVLogger(path)], scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1))
    rows = read_csv(path)
    assert list(rows[0]) == ["epoch", "member", "is_best", "train_loss", "train_accuracy", "val_loss",
                             "val_accuracy", "lr", "seconds"]
    assert [(r["epoch"], r["member"]) for r in rows] == [(str(e), str(m)) for e in range(2) for m in range(3)]
    for r in rows:
        e, m = int(r["epoch"]), int(r["member"])
        assert float(r["val_loss"]) == history.val_loss[e][m] and float(r["lr"]) == history.lr[e][m]
        assert r["is_best"] == str(int(m == history.best[e]))


def test_csv_logger_matches_the_run_after_a_resume(tmp_path):
    straight = tmp_path / "straight.csv"
    torch.manual_seed(0)
    short_fit(SwarmTrainer(make_swarm(2), device="cpu", seed=0), 3, [CSVLogger(straight)])
    torch.manual_seed(0)
    resumed_path = tmp_path / "resumed.csv"
    short_fit(SwarmTrainer(make_swarm(2), device="cpu", seed=0), 1,
              [CSVLogger(resumed_path), Checkpoint(tmp_path / "ck.pt")])
    with open(resumed_path, "a") as f:
        f.write("rows of an epoch the crash lost\n")
    short_fit(SwarmTrainer(make_swarm(2), device="cpu", seed=3), 3, [CSVLogger(resumed_path)],
              resume_from=tmp_path / "ck.pt")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(read_csv(resumed_path)) == drop(read_csv(straight))


def test_csv_logger_path_is_checked_before_training(tmp_path):
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(ValueError, match="CSVLogger path .* is a directory"):
        short_fit(trainer, 1, [CSVLogger(tmp_path)])
    assert trainer.optimizers is None
    with pytest.raises(TypeError, match="path must be a str"):
        CSVLogger(3)


class FakeWriter:
    instances = []

    def __init__(self, log_dir, purge_step=None, **kw):
        self.log_dir, self.purge_step, self.kw, self.scalars, self.closed = log_dir, purge_step, kw, [], False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch):
    FakeWriter.instances = []
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    return FakeWriter


def test_tensorboard_logger_writes_best_and_member_scalars(fake_tensorboard, tmp_path):
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    history = short_fit(trainer, 2, [TensorBoardLogger(tmp_path / "tb", comment="x"), Checkpoint(tmp_path / "c.pt")])
    writer = fake_tensorboard.instances[0]
    assert writer.closed and writer.purge_step is None and writer.kw == {"comment": "x"}
    assert ("val_loss/best", history.best_val_loss[1], 1) in writer.scalars
    assert ("train_accuracy/member_1", history.train_accuracy[0][1], 0) in writer.scalars
    assert len(writer.scalars) == 2 * 4 * 3  # epochs x keys x (best + 2 members)
    short_fit(SwarmTrainer(make_swarm(2), device="cpu"), 3, [TensorBoardLogger(tmp_path / "tb")],
              resume_from=tmp_path / "c.pt")
    assert fake_tensorboard.instances[1].purge_step == 2  # a resumed run drops the events after its checkpoint


def test_tensorboard_logger_without_tensorboard_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    with pytest.raises(ImportError, match=r"pip install nytorch_ext\[tensorboard\]"):
        TensorBoardLogger(tmp_path)


def test_resuming_with_persistent_workers_warns(tmp_path):
    x, y = toy_data(16)
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    trainer.fit([(x, y)], epochs=1, evolve_every=0, progress=False, callbacks=[Checkpoint(tmp_path / "c.pt")])
    loader = DataLoader(TensorDataset(x, y), batch_size=8, num_workers=1, persistent_workers=True)
    again = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    with pytest.warns(UserWarning, match="persistent_workers=True.*not bit-for-bit"):
        again.fit(loader, epochs=1, evolve_every=0, progress=False, resume_from=tmp_path / "c.pt")  # nothing to run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = DataLoader(TensorDataset(x, y), batch_size=8)
        SwarmTrainer(make_swarm(2), device="cpu").fit(plain, epochs=1, evolve_every=0, progress=False,
                                                      resume_from=tmp_path / "c.pt")


# ------------------------------------------------------------------ History.plot


def test_history_plot_draws_members_and_the_best(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    trainer = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    history = short_fit(trainer, 3, [])
    figure = history.plot()
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    lines = axes[0].get_lines()
    assert len(lines) == 2 * (3 + 1)  # train and val: 3 members + the best member
    best_val = [line for line in lines if line.get_label() == "val_loss (best member)"][0]
    assert list(best_val.get_ydata()) == history.best_val_loss and list(best_val.get_xdata()) == [0, 1, 2]
    path = tmp_path / "h.png"
    figure = history.plot(keys=["batch_loss", "val_loss"], path=path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    micro = [line for line in figure.get_axes()[0].get_lines() if "best" in line.get_label()][0]
    assert list(micro.get_ydata()) == history.micro_train_loss
    with pytest.raises(ValueError, match="'nope' is not logged"):
        history.plot(keys=["nope"])
    from matplotlib.figure import Figure
    axes = Figure().subplots(1, 2)
    assert history.plot(keys=["loss", "lr"] if "lr" in history.keys else ["loss", "accuracy"], axes=axes) \
        is axes[0].figure
    with pytest.raises(ValueError, match="2 panel"):
        history.plot(keys=["loss", "accuracy"], axes=axes[:1])


def test_history_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    history = short_fit(trainer, 1, [])
    with pytest.raises(ImportError, match=r"pip install nytorch_ext\[plot\]"):
        history.plot()
