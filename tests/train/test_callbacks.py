"""nytorch_ext.callbacks: early stopping, checkpoint -> resume (bit-for-bit on CPU), progress."""
from __future__ import annotations

import io
import sys
import types

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nytorch_ext.train.callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar, tqdm_available
from nytorch_ext.train.history import History
from nytorch_ext.train import CHECKPOINT_FORMAT, SwarmTrainer, accuracy
from test_train import ExplodingLoader, flat, make_swarm, one_thread, sgd, toy_data, toy_loader  # noqa: F401


def fixed_val_loss(values):
    """A metric-free way to script val_loss: a loss whose value is read from a list."""
    it = iter(values)
    current = {}

    class Script(Callback):
        order = -10

        def on_epoch_end(self, trainer, epoch, logs):
            v = next(it)
            logs["val_loss"] = [v] * len(trainer.swarm)
            current["v"] = v

    return Script()


def zero_lr_fit(trainer, epochs, callbacks, val=True, **kw):
    x, y = toy_data(32)
    return trainer.fit([(x, y)], val_data=(x, y) if val else None, epochs=epochs, optimizer=sgd(0.0),
                       evolve_every=0, callbacks=callbacks, progress=False, **kw)


# ------------------------------------------------------------------ early stopping


def test_early_stopping_waits_patience_epochs_without_improvement():
    es = EarlyStopping("val_loss", patience=2)
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    history = zero_lr_fit(trainer, 20, [fixed_val_loss([5, 4, 4.5, 3.9, 4, 4, 4, 1]), es])
    assert len(history) == 6  # best at epoch 3; epochs 4 and 5 do not improve: stop after 5
    assert es.best_epoch == 3 and es.best_value == 3.9 and es.stopped_epoch == 5
    assert trainer.stop_training


def test_early_stopping_min_delta_and_max_mode():
    es = EarlyStopping("val_loss", patience=0, min_delta=0.5)
    zero_lr_fit(SwarmTrainer(make_swarm(2), device="cpu"), 10, [fixed_val_loss([5, 4.6, 4]), es])
    assert es.stopped_epoch == 1 and es.best_epoch == 0
    es = EarlyStopping("val_accuracy", patience=1)
    assert es.mode == "max"
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    history = zero_lr_fit(trainer, 5, [es], metrics={"accuracy": accuracy})
    assert len(history) == 2  # lr 0: the accuracy never improves after the first epoch
    assert es.stopped_epoch == 1


def test_early_stopping_of_reduces_over_particles():
    logs = {"val_loss": [3.0, 1.0, 2.0], "best": 2}
    assert EarlyStopping(of="best").value(logs) == 2.0
    assert EarlyStopping(of="min").value(logs) == 1.0
    assert EarlyStopping(of="max").value(logs) == 3.0
    assert EarlyStopping(of="mean").value(logs) == 2.0


def test_early_stopping_restore_best_loads_the_best_epochs_swarm():
    swarm = make_swarm(2)
    snapshots = []

    class Snap(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots.append([flat(m).clone() for m in trainer.swarm])

    es = EarlyStopping("val_loss", patience=1, restore_best=True)
    x, y = toy_data(32)
    trainer = SwarmTrainer(swarm, device="cpu")
    trainer.fit([(x, y)], val_data=(x, y), epochs=6, optimizer=sgd(0.5), evolve_every=0, progress=False,
                callbacks=[fixed_val_loss([3, 1, 2, 2, 0, 0]), Snap(), es])
    assert es.best_epoch == 1 and es.stopped_epoch == 2 and len(snapshots) == 3
    assert all(torch.equal(flat(m), s) for m, s in zip(swarm, snapshots[1]))
    assert not torch.equal(flat(swarm[0]), snapshots[2][0])


def scripted_val_losses(per_epoch):
    """Per epoch, every member's val_loss (and so the epoch's best member) from a list."""
    from nytorch_ext.train.history import best_of

    class Script(Callback):
        order = -10

        def on_epoch_end(self, trainer, epoch, logs):
            logs["val_loss"] = list(per_epoch[epoch])
            logs["best"] = best_of(logs["val_loss"])

    return Script()


def test_restore_best_points_best_index_at_the_restored_epochs_best(tmp_path):
    """After EarlyStopping(restore_best=True), trainer.best_index / predict(use="best")
    name the best member of the restored epoch, not the last epoch's."""
    x, y = toy_data(32)
    trainer = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    es = EarlyStopping("val_loss", patience=1, restore_best=True)
    losses = [[3, 2, 1], [0.5, 0.9, 0.7], [2, 2, 1], [3, 3, 1.5]]  # best epoch 1 (member 0); then member 2
    history = trainer.fit([(x, y)], val_data=(x, y), epochs=4, optimizer=sgd(0.5), evolve_every=0,
                          progress=False, callbacks=[scripted_val_losses(losses), es, Checkpoint(tmp_path / "c.pt")])
    assert es.best_epoch == 1 and len(history) == 3 and history.best == [2, 0, 2]
    assert trainer.best_index == 0  # was 2, the last epoch's best
    torch.testing.assert_close(trainer.predict(x), trainer.predict(x, use=0))
    assert history.restored_epoch == 1 and history.current_best == 0
    assert History.from_dict(history.to_dict()).current_best == 0
    # a checkpoint saved now agrees; the one saved at the last epoch is restored again on resume
    trainer.save_checkpoint(tmp_path / "after.pt")
    saved = torch.load(tmp_path / "after.pt", weights_only=False)
    assert History.from_dict(saved["history"]).current_best == 0
    later = SwarmTrainer(make_swarm(3, seed=4), device="cpu").resume(tmp_path / "after.pt")
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(trainer.swarm, later.swarm))  # the restored weights
    again = SwarmTrainer(make_swarm(3, seed=4), device="cpu")
    again.fit([(x, y)], val_data=(x, y), epochs=4, optimizer=sgd(0.5), evolve_every=0, progress=False,
              callbacks=[EarlyStopping("val_loss", patience=1, restore_best=True)], resume_from=tmp_path / "c.pt")
    assert again.best_index == 0 and again.history.restored_epoch == 1
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(trainer.swarm, again.swarm))
    # a new epoch after a restore clears the mark
    history.add_epoch({"epoch": 3, "val_loss": [1, 0, 1], "best": 1})
    assert history.restored_epoch is None and history.current_best == 1


def test_early_stopping_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping("val_f1")
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping("val_loss", mode="down")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(min_delta=float("nan"))
    with pytest.raises(ValueError, match="of"):
        EarlyStopping(of="median")
    with pytest.raises(TypeError, match="restore_best"):
        EarlyStopping(restore_best="yes")
    assert EarlyStopping("val_f1", mode="max").mode == "max"


def test_early_stopping_on_an_unlogged_key_fails_before_training():
    swarm = make_swarm(2)
    before = flat(swarm[0]).clone()
    trainer = SwarmTrainer(swarm, device="cpu")
    with pytest.raises(ValueError, match="monitor='val_loss'.*logged: \\['train_loss'\\]"):
        trainer.fit(toy_loader(), epochs=2, optimizer=sgd(), evolve_every=0, progress=False,
                    callbacks=[EarlyStopping("val_loss")])
    assert torch.equal(flat(swarm[0]), before)


# ------------------------------------------------------------------ checkpoints


def shuffled_loader(kind: str):
    x, y = toy_data(80)
    if kind == "own_generator":
        return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                          generator=torch.Generator().manual_seed(5))
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)  # draws from torch's global RNG


def run(tmp_path, name, epochs, loader_kind, *, resume_from=None, swarm_seed=0, trainer_seed=1):
    """A run with everything that has state: dropout (torch RNG), a shuffling loader,
    SGD momentum, APSO every 3 batches (5 batches an epoch: steps straddle epochs),
    early stopping (patience state), a Checkpoint."""
    swarm = make_swarm(4, seed=swarm_seed, dropout=0.3)
    trainer = SwarmTrainer(swarm, device="cpu", seed=trainer_seed)
    es = EarlyStopping("val_loss", patience=50)
    ckpt = Checkpoint(tmp_path / (name + "-{epoch}.pt"))
    x, y = toy_data(24)
    history = trainer.fit(shuffled_loader(loader_kind), val_data=(x, y), epochs=epochs,
                          optimizer=sgd(0.05, 0.9), evolve_every=3, subset_size=3, alpha=0.4,
                          metrics={"accuracy": accuracy}, callbacks=[es, ckpt], progress=False,
                          resume_from=resume_from)
    return trainer, history, es, ckpt


def comparable(history):
    d = history.to_dict()
    for r in d["records"]:
        r.pop("seconds")
    return d


@pytest.mark.parametrize("loader_kind", ["global_rng", "own_generator"])
def test_checkpoint_resume_is_bit_for_bit(tmp_path, loader_kind):
    torch.manual_seed(0)
    straight, h_straight, es_straight, ckpt = run(tmp_path, "straight", 3, loader_kind)
    assert [p.split("/")[-1] for p in ckpt.saved] == ["straight-1.pt", "straight-2.pt", "straight-3.pt"]

    torch.manual_seed(0)
    run(tmp_path, "first", 1, loader_kind)
    torch.manual_seed(1234)  # a fresh process: other RNG state, other initial weights, other trainer seed
    resumed, h_resumed, es_resumed, _ = run(tmp_path, "resumed", 3, loader_kind,
                                             resume_from=tmp_path / "first-1.pt", swarm_seed=9, trainer_seed=9)

    for a, b in zip(straight.swarm, resumed.swarm):
        assert torch.equal(flat(a), flat(b))
    assert comparable(h_resumed) == comparable(h_straight)
    assert len(h_resumed.evolutions) == 5  # 15 batches, every 3
    for oa, ob in zip(straight.optimizers, resumed.optimizers):
        for (_, sa), (_, sb) in zip(oa.state.items(), ob.state.items()):
            assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())
    assert es_resumed.best_value == es_straight.best_value and es_resumed.best_epoch == es_straight.best_epoch
    last_straight = torch.load(tmp_path / "straight-3.pt", weights_only=False)
    last_resumed = torch.load(tmp_path / "resumed-3.pt", weights_only=False)
    assert torch.equal(last_straight["rng"]["torch"], last_resumed["rng"]["torch"])
    # what the checkpoint holds
    state = torch.load(tmp_path / "straight-1.pt", weights_only=False)
    assert state["format"] == CHECKPOINT_FORMAT and state["epoch"] == 1
    assert {"swarm", "optimizers", "rng", "generator", "history", "callbacks"} <= set(state)
    assert {"torch", "python", "numpy", "loader"} <= set(state["rng"])
    assert len(state["rng"]["loader"]) == (1 if loader_kind == "own_generator" else 0)
    assert len(state["optimizers"]) == 4 and "0:EarlyStopping" in state["callbacks"]


def test_resume_method_and_checkpoint_every(tmp_path):
    x, y = toy_data(32)

    def go(trainer, epochs, callbacks=(), **kw):
        return trainer.fit(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), epochs=epochs,
                           optimizer=sgd(0.05, 0.9), evolve_every=3, subset_size=2, callbacks=list(callbacks),
                           progress=False, **kw)

    torch.manual_seed(0)
    straight = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    ck = Checkpoint(tmp_path / "ck.pt", every=2)
    go(straight, 4, [ck])
    assert len(ck.saved) == 2  # epochs 2 and 4 (the last)

    torch.manual_seed(0)
    first = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    go(first, 2, [Checkpoint(tmp_path / "half.pt", every=2)])
    later = SwarmTrainer(make_swarm(3, seed=5), device="cpu", seed=5).resume(tmp_path / "half.pt")
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(first.swarm, later.swarm))  # loaded at once
    history = go(later, 4)
    assert len(history) == 4
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(straight.swarm, later.swarm))


def test_resuming_a_finished_or_stopped_run_trains_no_more(tmp_path):
    torch.manual_seed(0)
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    zero_lr_fit(trainer, 10, [fixed_val_loss([1, 2, 3]), EarlyStopping(patience=1), Checkpoint(tmp_path / "c.pt")])
    assert len(trainer.history) == 2
    again = SwarmTrainer(make_swarm(2), device="cpu")
    batches = []

    class Count(Callback):
        def on_batch_end(self, trainer, batch, losses):
            batches.append(batch)

    history = zero_lr_fit(again, 10, [EarlyStopping(patience=1), Count()], resume_from=tmp_path / "c.pt")
    assert batches == [] and len(history) == 2


def test_resume_errors(tmp_path):
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(FileNotFoundError, match="resume_from"):
        trainer.fit(toy_loader(), evolve_every=0, progress=False, resume_from=tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a SwarmTrainer checkpoint"):
        trainer.resume(tmp_path / "other.pt")
    zero_lr_fit(trainer, 1, [Checkpoint(tmp_path / "two.pt")])
    with pytest.raises(ValueError, match="2 members"):
        SwarmTrainer(make_swarm(3), device="cpu").resume(tmp_path / "two.pt")
    with pytest.raises(ValueError, match="every"):
        Checkpoint(tmp_path / "x.pt", every=0)
    with pytest.raises(ValueError, match="no optimizers"):
        SwarmTrainer(make_swarm(2), device="cpu").save_checkpoint(tmp_path / "y.pt")


def trainer_state(trainer):
    """Everything a refused fit / resume must leave as it was."""
    return ([flat(m).clone() for m in trainer.swarm],
            [m.root_module.fc1.bias.data_ptr() for m in trainer.swarm],
            trainer.generator.get_state(), trainer.history.to_dict(), trainer.optimizers,
            [o.state_dict()["state"] for o in trainer.optimizers or []], torch.get_rng_state())


def assert_unchanged(trainer, before):
    after = trainer_state(trainer)
    assert all(torch.equal(a, b) for a, b in zip(after[0], before[0]))
    assert after[1] == before[1] and torch.equal(after[2], before[2]) and after[3] == before[3]
    assert after[4] is before[4] and torch.equal(after[6], before[6])
    for sa, sb in zip(after[5], before[5]):
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"]) for k in sa)


def short_run(tmp_path, name="c.pt", k=2, optimizer=None, **kw):
    trainer = SwarmTrainer(make_swarm(k, **kw), device="cpu", seed=0)
    x, y = toy_data(32)
    trainer.fit([(x, y)], val_data=(x, y), epochs=1, optimizer=optimizer or sgd(0.1, 0.9), evolve_every=0,
                progress=False, callbacks=[EarlyStopping(restore_best=True), Checkpoint(tmp_path / name)])
    return tmp_path / name


def resumed_fit(trainer, path, train=None, **kw):
    x, y = toy_data(32)
    args = dict(val_data=(x, y), epochs=3, optimizer=sgd(0.1, 0.9), evolve_every=0, progress=False,
                callbacks=[EarlyStopping(restore_best=True)], resume_from=path)
    args.update(kw)
    return trainer.fit(ExplodingLoader() if train is None else train, **args)


def test_truncated_empty_or_directory_checkpoints_are_refused_naming_the_file(tmp_path):
    good = short_run(tmp_path)
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[:len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "dir.pt").mkdir()
    trainer = SwarmTrainer(make_swarm(2, seed=3), device="cpu")
    before = trainer_state(trainer)
    for name, match in [("truncated.pt", "cannot read the checkpoint .*truncated.pt.*truncated, corrupt"),
                        ("empty.pt", "checkpoint .*empty.pt.* is empty"),
                        ("garbage.pt", "cannot read the checkpoint .*garbage.pt"),
                        ("dir.pt", "dir.pt.* is a directory")]:
        with pytest.raises(ValueError, match=match):
            resumed_fit(trainer, tmp_path / name)
        with pytest.raises(ValueError, match=match):
            trainer.resume(tmp_path / name)
        assert_unchanged(trainer, before)
    with pytest.raises(TypeError, match="resume_from must be a path"):
        resumed_fit(trainer, 3)


def test_resume_into_another_architecture_loads_nothing(tmp_path):
    path = short_run(tmp_path)  # MLP(64, 32, 10)
    for kw in (dict(hidden=16), dict(n_out=5), dict(dropout=0.5, hidden=33)):
        trainer = SwarmTrainer(make_swarm(2, seed=3, **kw), device="cpu")
        before = trainer_state(trainer)
        with pytest.raises(ValueError, match=r"c.pt.* does not fit this swarm: .*has shape"):
            trainer.resume(path)
        with pytest.raises(ValueError, match=r"c.pt.* does not fit this swarm"):
            resumed_fit(trainer, path, train=[toy_data(4, n_in=64)])
        assert_unchanged(trainer, before)
        assert trainer._pending is None


def test_resume_with_another_optimizer_is_refused_before_loading_anything(tmp_path):
    sgd_ckpt = short_run(tmp_path, "sgd.pt")
    adam_ckpt = short_run(tmp_path, "adam.pt", optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    trainer = SwarmTrainer(make_swarm(2, seed=3), device="cpu")
    resumed_fit(trainer, sgd_ckpt, train=[toy_data(32)], epochs=2)  # SGD momentum state exists now
    before = trainer_state(trainer)
    cases = [
        (adam_ckpt, dict(), r"adam.pt.*optimizer\[0\]: the checkpoint's optimizer is torch.optim.adam.Adam, "
                            r"this run's is torch.optim.sgd.SGD"),
        (sgd_ckpt, dict(optimizer=lambda p: torch.optim.Adam(p, lr=1e-3)),
         r"optimizer is torch.optim.sgd.SGD, this run's is torch.optim.adam.Adam"),
        (sgd_ckpt, dict(optimizer=lambda p: torch.optim.SGD([{"params": list(p)[:2]}, {"params": []}], lr=0.1)),
         "has 1 parameter group.*SGD has 2"),
    ]
    for path, kw, match in cases:
        optimizers = trainer.optimizers
        with pytest.raises(ValueError, match=match):
            resumed_fit(trainer, path, **kw)
        assert trainer.optimizers is optimizers
        assert_unchanged(trainer, before)
    # a checkpoint from before optimizer classes were recorded: told apart by the settings
    state = torch.load(adam_ckpt, weights_only=False)
    del state["optimizer_classes"]
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="another kind of optimizer"):
        resumed_fit(trainer, tmp_path / "old.pt")
    assert_unchanged(trainer, before)


def test_resume_checks_rng_and_callback_states_before_loading_anything(tmp_path):
    x, y = toy_data(32)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    trainer.fit(loader, val_data=(x, y), epochs=1, optimizer=sgd(0.1, 0.9), evolve_every=0, progress=False,
                callbacks=[EarlyStopping(restore_best=True), Checkpoint(tmp_path / "own.pt")])
    fresh = SwarmTrainer(make_swarm(2, seed=3), device="cpu")
    before = trainer_state(fresh)
    # the loader's generator count is checked before the swarm is loaded (was: after)
    with pytest.raises(ValueError, match="the train loader has 0 generator") as info:
        resumed_fit(fresh, tmp_path / "own.pt", train=toy_loader(32, 16))
    assert_unchanged(fresh, before)
    assert "own.pt" in str(info.value)
    # a callback refusing the run (an unlogged monitor) refuses before the checkpoint is loaded
    with pytest.raises(ValueError, match="monitor='val_accuracy' is not logged"):
        resumed_fit(fresh, tmp_path / "own.pt", train=loader, callbacks=[EarlyStopping("val_accuracy")])
    assert_unchanged(fresh, before)
    # a saved callback state that does not fit
    state = torch.load(tmp_path / "own.pt", weights_only=False)
    state["callbacks"]["0:EarlyStopping"]["best_state"]["members"][1].pop("root_module.fc2.bias")
    torch.save(state, tmp_path / "bad_cb.pt")
    with pytest.raises(ValueError, match=r"bad_cb.pt.*EarlyStopping does not fit.*missing \['root_module.fc2.bias'\]"):
        resumed_fit(fresh, tmp_path / "bad_cb.pt", train=loader)
    assert_unchanged(fresh, before)
    state = torch.load(tmp_path / "own.pt", weights_only=False)
    del state["callbacks"]["0:EarlyStopping"]["wait"]
    torch.save(state, tmp_path / "bad_cb2.pt")
    with pytest.raises(ValueError, match=r"EarlyStopping state is missing \['wait'\]"):
        resumed_fit(fresh, tmp_path / "bad_cb2.pt", train=loader)
    assert_unchanged(fresh, before)
    # saved states go to the callback of their class, wherever it sits in the list
    es = EarlyStopping(restore_best=True)
    resumed_fit(fresh, tmp_path / "own.pt", train=loader, epochs=1, callbacks=[Callback(), Callback(), es])
    assert es.best_epoch == 0 and es.best_state is not None


@pytest.mark.parametrize("make_path, match", [
    (lambda d: d / "file.txt" / "ck.pt", "file.txt' is a file"),
    (lambda d: d / "file.txt" / "sub" / "ck-{epoch}.pt", "file.txt' is a file"),
    (lambda d: d / "adir", "is a directory"),
])
def test_checkpoint_paths_that_cannot_be_written_fail_before_training(tmp_path, make_path, match):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "adir").mkdir()
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(ValueError, match=match):
        trainer.fit(ExplodingLoader(), epochs=2, evolve_every=0, progress=False,
                    callbacks=[Checkpoint(make_path(tmp_path))])
    assert trainer.optimizers is None


def test_checkpoint_path_format_fields_are_checked_at_construction(tmp_path):
    for path, match in [("run-{x}.pt", r"format field \{x\}"), ("run-{epoch}-{x}.pt", r"\{x\}"),
                        ("run-{}.pt", r"format field \{\}"), ("run-{epoch.pt", "not a valid format string"),
                        ("run-{epoch:q}.pt", "cannot fill in")]:
        with pytest.raises(ValueError, match=match):
            Checkpoint(str(tmp_path / path))
    with pytest.raises(TypeError, match="path must be"):
        Checkpoint(3)
    assert Checkpoint(tmp_path / "r-{epoch:03d}.pt").path_for(7).endswith("r-007.pt")
    assert Checkpoint(tmp_path / "r{{1}}.pt").path_for(7).endswith("r{1}.pt")
    # a directory that does not exist yet is made at the first save
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    ck = Checkpoint(tmp_path / "new" / "deeper" / "ck-{epoch}.pt")
    zero_lr_fit(trainer, 1, [ck])
    assert ck.saved and all(__import__("os").path.exists(p) for p in ck.saved)


# ------------------------------------------------------------------ progress


class FakeTqdm:
    instances = []

    def __init__(self, total=None, desc=None, file=None, **kw):
        self.total, self.desc, self.file, self.n, self.closed, self.postfix = total, desc, file, 0, False, None
        FakeTqdm.instances.append(self)

    def update(self, n=1):
        self.n += n

    def set_postfix(self, refresh=True, **kw):
        self.postfix = kw

    def set_postfix_str(self, s, refresh=True):
        self.postfix = s

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch):
    FakeTqdm.instances = []
    package = types.ModuleType("tqdm")
    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = FakeTqdm
    package.auto = auto
    monkeypatch.setitem(sys.modules, "tqdm", package)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    return FakeTqdm


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def fit_with_progress(progress, callbacks=()):
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    trainer.fit(toy_loader(64, 16), val_data=toy_data(16), epochs=2, optimizer=sgd(), evolve_every=0,
                progress=progress, callbacks=list(callbacks))
    return trainer


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_with_tqdm(fake_tqdm, monkeypatch):
    monkeypatch.setattr(sys, "stderr", TTY())
    assert tqdm_available()
    trainer = fit_with_progress(True)
    bars = fake_tqdm.instances
    assert len(bars) == 2 and all(b.closed and b.total == 4 and b.n == 4 for b in bars)
    assert bars[0].desc == "Epoch 1/2" and "val_loss" in bars[1].postfix and "best particle" in bars[1].postfix
    assert sum(isinstance(cb, ProgressBar) for cb in trainer._callbacks) == 1


@pytest.mark.parametrize("progress", [None, True])
def test_progress_default_prints_one_line_per_epoch_when_stderr_is_not_a_terminal(fake_tqdm, capsys, progress):
    """Piped output gets plain lines (no tqdm frames, no carriage returns), never silence."""
    fit_with_progress(progress)
    err = capsys.readouterr().err
    assert fake_tqdm.instances == []
    assert err.count("\n") == 2 and err.startswith("Epoch 1/2: [") and "val_loss:" in err and "\r" not in err


def test_progress_auto_shows_a_bar_on_a_terminal(fake_tqdm, monkeypatch):
    monkeypatch.setattr(sys, "stderr", TTY())
    fit_with_progress(None)
    assert len(fake_tqdm.instances) == 2


def test_progress_bar_use_tqdm_forces_the_bar_or_the_lines(fake_tqdm, monkeypatch):
    out = io.StringIO()
    fit_with_progress(False, [ProgressBar(file=out, use_tqdm=True)])  # False removes even an explicit bar
    assert fake_tqdm.instances == [] and out.getvalue() == ""
    fit_with_progress(None, [ProgressBar(file=out, use_tqdm=True)])
    assert len(fake_tqdm.instances) == 2
    tty = TTY()
    fit_with_progress(None, [ProgressBar(file=tty, use_tqdm=False)])
    assert len(fake_tqdm.instances) == 2 and tty.getvalue().count("Epoch") == 2


def test_progress_without_tqdm_degrades_to_epoch_lines(no_tqdm, capsys, monkeypatch):
    assert not tqdm_available()
    monkeypatch.setattr(sys, "stderr", TTY())
    fit_with_progress(True)
    err = sys.stderr.getvalue()
    assert err.count("\n") == 2 and err.startswith("Epoch 1/2: [") and "val_loss:" in err


def test_early_stopping_says_when_and_why_it_stopped(capsys):
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    es = EarlyStopping("val_loss", patience=2)
    x, y = toy_data(32)
    history = trainer.fit([(x, y)], val_data=(x, y), epochs=20, optimizer=sgd(0.0), evolve_every=0,
                          callbacks=[fixed_val_loss([5, 4, 4.5, 3.9, 4, 4, 4, 1]), es])
    err = capsys.readouterr().err
    assert len(history) == 6
    assert "the best particle's val_loss has not improved for 2 epoch(s)" in history.stop_reason
    assert "best 3.9 after epoch 4" in history.stop_reason
    last = err.strip().splitlines()[-1]
    assert last.startswith("Stopped after epoch 6/20: EarlyStopping:") and "patience 2" in last
    assert history.stop_reason in last


def test_a_stop_without_a_reason_is_still_reported(capsys):
    class StopNow(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop_training = True

    fit_with_progress(None, [StopNow()])
    assert "Stopped after epoch 1/2: trainer.stop_training was set" in capsys.readouterr().err
