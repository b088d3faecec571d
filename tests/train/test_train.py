"""nytorch_ext.train: SwarmTrainer.fit / evaluate / predict, History, bad arguments."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nytorch_ext as nyto
from nytorch_ext.train.callbacks import Callback
from nytorch_ext.train.history import Evaluation, History
from nytorch_ext.swarm import Swarm
from nytorch_ext.train import SwarmTrainer, accuracy


class MLP(nyto.NytoModule):
    def __init__(self, n_in=64, hidden=32, n_out=10, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x.flatten(1)))))


def make_swarm(k=4, seed=0, **kw) -> Swarm:
    """k independently initialized MLPs made one species (the seed's create_pool)."""
    torch.manual_seed(seed)
    pool = [nyto.ParticleModule(MLP(**kw)) for _ in range(k)]
    return Swarm([pool[0]] + [pool[0].clone_from(p) for p in pool[1:]])


def toy_data(n=96, n_in=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def toy_loader(n=96, batch_size=16, shuffle=False, **kw):
    x, y = toy_data(n)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, **kw)


def sgd(lr=0.05, momentum=0.0):
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum)


def flat(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start",))

    def on_epoch_start(self, trainer, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_batch_end(self, trainer, batch, losses):
        self.calls.append(("batch_end", batch, list(losses)))

    def on_evolve(self, trainer, result):
        self.calls.append(("evolve", result))

    def on_epoch_end(self, trainer, epoch, logs):
        self.calls.append(("epoch_end", epoch, logs))

    def on_fit_end(self, trainer):
        self.calls.append(("fit_end",))

    def names(self):
        return [c[0] for c in self.calls]


@pytest.fixture(autouse=True)
def one_thread():
    """Small models train fastest, and least disturbed by a busy machine, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ learning


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def test_trainer_improves_accuracy_on_digits_in_a_short_run(digits):
    (x_train, y_train), (x_test, y_test) = digits
    swarm = make_swarm(6)
    trainer = SwarmTrainer(swarm, device="cpu", seed=0)
    before = trainer.evaluate((x_test, y_test), {"accuracy": accuracy})
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True)
    history = trainer.fit(loader, val_data=(x_test, y_test), epochs=2, optimizer=sgd(0.1, 0.5),
                          evolve_every=8, subset_size=4, metrics={"accuracy": accuracy}, progress=False)
    after = trainer.evaluate((x_test, y_test), {"accuracy": accuracy}, ensemble=True)
    assert max(before.accuracy) < 0.3
    assert after.best_accuracy >= 0.85, after
    assert min(after.accuracy) > max(before.accuracy)
    assert after.ensemble["accuracy"] >= 0.85
    assert history.best_val_accuracy[-1] == pytest.approx(after.best_accuracy)
    assert history.best_val_loss[-1] < history.best_val_loss[0]
    assert len(history.evolutions) == (2 * len(loader)) // 8


# ------------------------------------------------------------------ History


def test_history_records_batches_epochs_and_the_best_particle():
    k, epochs = 3, 2
    loader = toy_loader(96, 16)
    trainer = SwarmTrainer(make_swarm(k), device="cpu", seed=0)
    history = trainer.fit(loader, val_data=toy_loader(40, 16), epochs=epochs, optimizer=sgd(),
                          evolve_every=4, subset_size=2, metrics={"accuracy": accuracy}, progress=False)
    assert isinstance(history, History) and history is trainer.history and len(history) == epochs
    assert len(history.batch_loss) == epochs * len(loader)
    assert all(len(row) == k and all(isinstance(v, float) for v in row) for row in history.batch_loss)
    assert history.keys == ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    for key in history.keys:
        column = getattr(history, key)
        assert len(column) == epochs and all(len(per_particle) == k for per_particle in column)
    for record in history.records:
        assert record["best"] == min(range(k), key=record["val_loss"].__getitem__)
        assert record["batches"] == len(loader) and record["samples"] == 96
    assert history.best == [r["best"] for r in history.records]
    assert history.best_val_loss == [r["val_loss"][r["best"]] for r in history.records]
    assert history.best_train_accuracy == [r["train_accuracy"][r["best"]] for r in history.records]
    # the epoch's train loss is the sample-weighted mean of its batch losses
    first = history.batch_loss[:len(loader)]
    for i in range(k):
        assert history.train_loss[0][i] == pytest.approx(sum(row[i] for row in first) / len(first))
    assert [e["batch"] for e in history.evolutions] == [4, 8, 12]
    assert history.micro_train_loss == [min(r) for r in history.batch_loss]
    d = history.to_dict()
    assert History.from_dict(d).to_dict() == d
    with pytest.raises(AttributeError, match="val_f1"):
        _ = history.val_f1
    assert "3 APSO step" in repr(history)


def test_without_validation_the_best_is_by_train_loss():
    trainer = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    history = trainer.fit(toy_loader(), epochs=1, optimizer=sgd(), evolve_every=0, progress=False)
    assert history.keys == ["train_loss"]
    assert history.best[0] == min(range(3), key=history.train_loss[0].__getitem__)
    assert trainer.best_index == history.best[0]


# ------------------------------------------------------------------ gradient descent and APSO


def test_each_member_takes_its_own_gradient_step_like_hand_written_code():
    swarm_a, swarm_b = make_swarm(3), make_swarm(3)
    loader = toy_loader(64, 16)
    trainer = SwarmTrainer(swarm_a, device="cpu", seed=0)
    history = trainer.fit(loader, epochs=1, optimizer=sgd(0.1, 0.9), evolve_every=0, progress=False)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in swarm_b]
    losses = []
    for x, y in loader:
        row = []
        for m, o in zip(swarm_b, opts):
            o.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            o.step()
            row.append(loss.item())
        losses.append(row)
    assert history.batch_loss == losses
    for a, b in zip(swarm_a, swarm_b):
        assert torch.equal(flat(a), flat(b))


def test_evolve_every_calls_apso_with_the_trainers_generator():
    swarm = make_swarm(5)
    loader = toy_loader(96, 16)  # 6 batches
    rec = Recorder()
    trainer = SwarmTrainer(swarm, device="cpu", seed=3)
    params_before = [list(m.parameters()) for m in swarm]
    expected_gen = torch.Generator().manual_seed(3)
    trainer.fit(loader, epochs=1, optimizer=sgd(), evolve_every=2, alpha=0.3, subset_size=4,
                callbacks=[rec], progress=False)
    evolves = [c[1] for c in rec.calls if c[0] == "evolve"]
    assert len(evolves) == 3
    from nytorch_ext.swarm import choose_subset
    for result in evolves:
        assert result.indices == choose_subset(5, 4, generator=expected_gen)
    # the APSO step came right after the batch whose losses it used, before on_batch_end
    names = rec.names()
    assert names[2:5] == ["batch_end", "evolve", "batch_end"]  # batch 1 evolves, then its on_batch_end
    batch1 = [c for c in rec.calls if c[0] == "batch_end"][1]
    assert evolves[0].best == min(evolves[0].indices, key=batch1[2].__getitem__)
    # Parameter objects survive (optimizer state stays valid)
    assert all(a is b for before, m in zip(params_before, swarm) for a, b in zip(before, m.parameters()))
    assert trainer.history.evolutions[0] == {"batch": 2, "indices": evolves[0].indices, "best": evolves[0].best}


def test_evolve_every_zero_or_none_never_evolves_and_ignores_subset_size():
    for every in (0, None):
        rec = Recorder()
        trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
        trainer.fit(toy_loader(), epochs=1, optimizer=sgd(), evolve_every=every, subset_size=6,
                    callbacks=[rec], progress=False)
        assert "evolve" not in rec.names() and trainer.history.evolutions == []


def test_apso_blends_toward_the_subset_best():
    swarm = make_swarm(4)
    seen = {}

    class Snapshot(Callback):
        def on_batch_end(self, trainer, batch, losses):
            seen[batch] = [flat(m).clone() for m in trainer.swarm]

    class AtEvolve(Callback):
        order = -1

        def on_evolve(self, trainer, result):
            seen["result"] = result
            seen["after"] = [flat(m).clone() for m in trainer.swarm]

    trainer = SwarmTrainer(swarm, device="cpu", seed=1)
    trainer.fit(toy_loader(32, 16), epochs=1, optimizer=sgd(), evolve_every=2, alpha=0.5, subset_size=4,
                replace=False, callbacks=[Snapshot(), AtEvolve()], progress=False)
    result, before_step = seen["result"], seen[0]
    assert sorted(result.indices) == [0, 1, 2, 3]
    # members of the subset moved halfway toward the best (after batch 1's GD step)
    best_now = seen["after"][result.best]
    for i in result.indices:
        if i != result.best:
            assert not torch.equal(seen["after"][i], before_step[i])
            distance = (seen["after"][i] - best_now).norm()
            assert distance > 0
    assert torch.equal(seen[1][result.best], seen["after"][result.best])


def test_nan_losses_do_not_stop_evolution():
    swarm = make_swarm(3)
    with torch.no_grad():
        swarm[1].root_module.fc2.bias.fill_(float("nan"))
    trainer = SwarmTrainer(swarm, device="cpu", seed=0)
    history = trainer.fit(toy_loader(32, 16), epochs=1, optimizer=sgd(), evolve_every=1, subset_size=3,
                          progress=False)
    assert math.isnan(history.batch_loss[0][1])
    assert all(e["best"] != 1 for e in history.evolutions)
    assert history.best[0] != 1


def test_optimizer_list_and_reuse():
    swarm = make_swarm(2)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in swarm]
    trainer = SwarmTrainer(swarm, device="cpu", seed=0)
    trainer.fit(toy_loader(), epochs=1, optimizer=opts, evolve_every=0, progress=False)
    assert trainer.optimizers == opts and opts[0].state  # Adam moments exist
    steps = opts[0].state[next(iter(swarm[0].parameters()))]["step"].item()
    trainer.fit(toy_loader(), epochs=1, evolve_every=0, progress=False)  # optimizer=None: reuse
    assert trainer.optimizers == opts
    assert opts[0].state[next(iter(swarm[0].parameters()))]["step"].item() == 2 * steps
    fresh = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    fresh.fit(toy_loader(), epochs=1, evolve_every=0, progress=False)  # the seed's SGD(lr=0.01)
    assert all(isinstance(o, torch.optim.SGD) and o.defaults["lr"] == 0.01 for o in fresh.optimizers)


def test_trainer_accepts_a_list_of_particles_and_root_nytomodules():
    torch.manual_seed(0)
    root = MLP()
    members = [root, root.clone(), root.randn()]
    trainer = SwarmTrainer(members, device="cpu", seed=0)
    assert isinstance(trainer.swarm, Swarm) and len(trainer) == 3
    history = trainer.fit(toy_loader(), epochs=1, optimizer=sgd(), evolve_every=2, subset_size=3, progress=False)
    assert len(history.evolutions) == 3


def test_callback_hooks_run_in_order_and_can_stop_training():
    rec = Recorder()

    class StopAfter(Callback):
        def on_batch_end(self, trainer, batch, losses):
            if trainer.epoch == 1 and batch == 1:
                trainer.stop_training = True

    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    loader = toy_loader(64, 16)
    history = trainer.fit(loader, epochs=5, optimizer=sgd(), evolve_every=0, callbacks=[rec, StopAfter()],
                          progress=False)
    names = rec.names()
    assert names[0] == "fit_start" and names[-1] == "fit_end"
    assert names[1:7] == ["epoch_start"] + ["batch_end"] * 4 + ["epoch_end"]
    assert names[7:11] == ["epoch_start", "batch_end", "batch_end", "epoch_end"]
    assert len(history) == 2 and history.records[1]["batches"] == 2 and history.records[1]["samples"] == 32
    assert len(history.batch_loss) == 6


def test_duck_typed_callbacks_and_order_attribute():
    log = []

    class Late:
        order = 5

        def on_epoch_end(self, trainer, epoch, logs):
            log.append("late")

    class Early:
        def on_epoch_end(self, trainer, epoch, logs):
            log.append("early")

    SwarmTrainer(make_swarm(2), device="cpu").fit(toy_loader(), epochs=1, evolve_every=0,
                                                    callbacks=[Late(), Early()], progress=False)
    assert log == ["early", "late"]


# ------------------------------------------------------------------ evaluate / predict


def test_evaluate_per_particle_and_ensemble():
    x, y = toy_data(50)
    swarm = make_swarm(3)
    trainer = SwarmTrainer(swarm, device="cpu")
    loader = DataLoader(TensorDataset(x, y), batch_size=16)  # uneven last batch: sample-weighted
    ev = trainer.evaluate(loader, {"accuracy": accuracy}, ensemble=True)
    assert isinstance(ev, Evaluation) and ev.samples == 50
    with torch.no_grad():
        outs = [m.eval()(x) for m in swarm]
    for i, out in enumerate(outs):
        assert ev.loss[i] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
        assert ev.accuracy[i] == pytest.approx(accuracy(out, y))
    assert ev.best == min(range(3), key=ev.loss.__getitem__) and ev.best_loss == ev.loss[ev.best]
    assert ev.best_accuracy == ev.accuracy[ev.best]
    mean_prob = torch.stack([o.softmax(1) for o in outs]).mean(0)
    assert ev.ensemble["loss"] == pytest.approx(F.nll_loss(mean_prob.log(), y).item(), rel=1e-5)
    assert ev.ensemble["accuracy"] == pytest.approx(accuracy(mean_prob, y))
    assert trainer.evaluate((x, y)).ensemble is None
    assert ev.to_dict()["samples"] == 50


def test_evaluate_and_predict_restore_train_eval_modes():
    swarm = make_swarm(2, dropout=0.5)
    swarm[0].train()
    swarm[1].eval()
    trainer = SwarmTrainer(swarm, device="cpu")
    x, y = toy_data(20)
    a = trainer.evaluate((x, y)).loss
    b = trainer.evaluate((x, y)).loss
    assert a == b  # eval mode: dropout off
    trainer.predict(x, use="all")
    assert swarm[0].training and not swarm[1].training


def test_evaluating_during_training_does_not_change_the_run():
    """A DataLoader draws a seed from torch's RNG whenever it is iterated; evaluate and
    predict put the RNG back, so monitoring does not change the next epoch's shuffle."""
    x, y = toy_data(40)
    monitor_loader = DataLoader(TensorDataset(x, y), batch_size=16)

    class Monitor(Callback):
        def on_batch_end(self, trainer, batch, losses):
            trainer.evaluate(monitor_loader)
            trainer.predict(monitor_loader, use=0)

    runs = []
    for callbacks in ([], [Monitor()]):
        torch.manual_seed(0)
        trainer = SwarmTrainer(make_swarm(3, dropout=0.2), device="cpu", seed=0)
        trainer.fit(toy_loader(64, 16, shuffle=True), val_data=monitor_loader, epochs=3, optimizer=sgd(),
                    evolve_every=2, subset_size=2, callbacks=callbacks, progress=False)
        runs.append((trainer.history.batch_loss, [flat(m) for m in trainer.swarm]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_predict_best_member_all_and_ensemble():
    x, y = toy_data(40)
    swarm = make_swarm(3)
    trainer = SwarmTrainer(swarm, device="cpu", seed=0)
    trainer.fit([(x, y)], val_data=(x, y), epochs=1, optimizer=sgd(), evolve_every=0, progress=False)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    with torch.no_grad():
        outs = [m.eval()(x) for m in swarm]
    best = trainer.best_index
    assert torch.equal(trainer.predict(loader, use="best"), outs[best])
    assert torch.equal(trainer.predict(loader), outs[best])
    assert torch.equal(trainer.predict(loader, use=2), outs[2])
    assert torch.equal(trainer.predict(loader, use=-1), outs[2])
    assert torch.equal(trainer.predict(DataLoader(TensorDataset(x), batch_size=16), use="all"), torch.stack(outs))
    ens = trainer.predict(x, use="ensemble")
    assert ens.shape == (40, 10)
    torch.testing.assert_close(ens.sum(1), torch.ones(40))
    torch.testing.assert_close(ens, torch.stack([o.softmax(1) for o in outs]).mean(0))


def test_predict_best_before_training_is_a_clear_error():
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(ValueError, match="no epoch has been trained"):
        trainer.predict(torch.randn(4, 64))
    assert trainer.predict(torch.randn(4, 64), use=0).shape == (4, 10)


# ------------------------------------------------------------------ bad arguments


class ExplodingLoader:
    """A loader that fails the test if anything iterates it."""

    def __iter__(self):
        raise AssertionError("training started despite a bad argument")

    def __len__(self):
        return 1


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"),
    ({"epochs": 1.5}, "epochs"),
    ({"epochs": True}, "epochs"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 1.0}, "alpha"),
    ({"alpha": -0.5}, "alpha"),
    ({"subset_size": 5}, "subset_size"),
    ({"subset_size": 0}, "subset_size"),
    ({"evolve_every": -1}, "evolve_every"),
    ({"noise": -1.0}, "noise"),
    ({"optimizer": [1, 2]}, "optimizer"),
    ({"subset_size": "all"}, "subset_size must be 'auto'"),
    ({"val_data": []}, "val_data is empty"),
    ({"val_data": DataLoader(TensorDataset(torch.zeros(0, 64), torch.zeros(0)))}, "val_data is empty"),
    ({"val_data": [(torch.zeros(2, 64),)]}, r"val_data\[0\].*pair"),
])
def test_bad_fit_arguments_raise_value_error_before_training(kwargs, match):
    swarm = make_swarm(4)
    before = [flat(m).clone() for m in swarm]
    trainer = SwarmTrainer(swarm, device="cpu")
    args = dict(epochs=1, evolve_every=2, subset_size=2, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        trainer.fit(ExplodingLoader(), **args)
    assert all(torch.equal(flat(m), b) for m, b in zip(swarm, before))
    assert trainer.optimizers is None


def test_empty_train_loader_is_refused_before_anything_runs():
    rec = Recorder()
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    for empty in ([], DataLoader(TensorDataset(torch.zeros(0, 64), torch.zeros(0)))):
        with pytest.raises(ValueError, match="train_loader is empty"):
            trainer.fit(empty, evolve_every=0, callbacks=[rec], progress=False)
    assert rec.calls == [] and trainer.optimizers is None  # on_fit_start never ran
    with pytest.raises(ValueError, match=r"train_loader\[1\].*pair"):
        trainer.fit([toy_data(4), (torch.zeros(4, 64),)], evolve_every=0, callbacks=[rec], progress=False)
    assert rec.calls == []
    with pytest.raises(ValueError, match="loader is empty"):
        trainer.evaluate([])
    with pytest.raises(ValueError, match="loader must be given"):
        trainer.predict(None, use=0)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_the_default_subset_size_fits_every_swarm_size(k):
    """fit's default subset_size ("auto") is min(6, K): valid for any swarm (was 6,
    which failed for K < 6 with an error about an argument nobody passed)."""
    trainer = SwarmTrainer(make_swarm(k, n_in=4, hidden=3, n_out=2), device="cpu", seed=0)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    history = trainer.fit([(x, y)] * 2, epochs=1, optimizer=sgd(), evolve_every=1, progress=False)
    assert [len(e["indices"]) for e in history.evolutions] == [min(6, k)] * 2
    history = trainer.fit([(x, y)], epochs=1, evolve_every=1, subset_size=None, progress=False)
    assert len(history.evolutions[0]["indices"]) == k  # None: the whole swarm, as apso_step


def test_trainer_checks_seed_and_device_before_building_or_moving_the_swarm(monkeypatch):
    torch.manual_seed(0)
    members = [nyto.ParticleModule(MLP()) for _ in range(2)]
    members[1] = members[0].clone_from(members[1])
    ptrs = [[p.data_ptr() for p in m.parameters()] for m in members]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        SwarmTrainer(members, device="cuda")
    with pytest.raises(TypeError, match="seed must be an int"):
        SwarmTrainer(members, device="cpu", seed=1.5)
    assert [[p.data_ptr() for p in m.parameters()] for m in members] == ptrs  # not packed into a Swarm


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "mse"}, "loss"),
    ({"metrics": [accuracy]}, "metrics"),
    ({"metrics": {"acc": 3}}, "metrics"),
    ({"callbacks": [object()]}, "callbacks"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"progress": "yes"}, "progress"),
    ({"replace": 1}, "replace"),
])
def test_bad_fit_argument_types_raise_type_error(kwargs, match):
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(TypeError, match=match):
        trainer.fit(ExplodingLoader(), epochs=1, evolve_every=0, progress=False, **kwargs)


def test_a_single_optimizer_is_refused_with_a_hint():
    swarm = make_swarm(2)
    trainer = SwarmTrainer(swarm, device="cpu")
    with pytest.raises(TypeError, match="factory"):
        trainer.fit(ExplodingLoader(), optimizer=torch.optim.SGD(swarm[0].parameters(), lr=0.1), evolve_every=0,
                    progress=False)


def test_optimizer_list_must_match_the_members():
    swarm = make_swarm(2)
    wrong = [torch.optim.SGD(swarm[1].parameters(), lr=0.1), torch.optim.SGD(swarm[0].parameters(), lr=0.1)]
    with pytest.raises(ValueError, match=r"optimizer\[0\]"):
        SwarmTrainer(swarm, device="cpu").fit(ExplodingLoader(), optimizer=wrong, evolve_every=0, progress=False)


def test_one_shot_iterators_and_bad_batches_are_refused():
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(ValueError, match="train_loader"):
        trainer.fit(iter(toy_loader()), evolve_every=0, progress=False)
    with pytest.raises(ValueError, match="val_data"):
        trainer.fit(toy_loader(), val_data=iter(toy_loader()), evolve_every=0, progress=False)
    with pytest.raises(ValueError, match="pair"):
        trainer.fit([torch.randn(4, 64)], evolve_every=0, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        trainer.fit([], evolve_every=0, progress=False)


@pytest.mark.parametrize("use", ["mean", "", None, True, 3, -4])
def test_unknown_predict_use_raises_value_error(use):
    trainer = SwarmTrainer(make_swarm(3), device="cpu")
    with pytest.raises(ValueError, match="use"):
        trainer.predict(ExplodingLoader(), use=use)


def test_trainer_moves_the_swarm_to_its_device_and_refuses_missing_cuda(monkeypatch):
    trainer = SwarmTrainer(make_swarm(2), device="auto" if not torch.cuda.is_available() else "cpu")
    assert trainer.device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        SwarmTrainer(make_swarm(2), device="cuda")


def test_swarm_spawn_members_train():
    torch.manual_seed(0)
    swarm = Swarm.spawn(nyto.ParticleModule(MLP()), 3, init="clone")
    trainer = SwarmTrainer(swarm, device="cpu", seed=0)
    history = trainer.fit(toy_loader(), epochs=1, optimizer=sgd(), evolve_every=3, subset_size=3, progress=False)
    # clones on the same batches stay equal: the same losses, and APSO between equals changes nothing
    assert all(row == [row[0]] * 3 for row in history.batch_loss)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trainer_on_cuda_moves_swarm_and_batches():
    trainer = SwarmTrainer(make_swarm(3), device="cuda", seed=0)
    assert all(p.is_cuda for m in trainer.swarm for p in m.parameters())
    x, y = toy_data(32)
    history = trainer.fit([(x, y)] * 4, val_data=(x, y), epochs=2, optimizer=sgd(), evolve_every=2,
                          subset_size=2, metrics={"accuracy": accuracy}, progress=False)
    assert len(history.evolutions) == 4
    out = trainer.predict(x, use="ensemble")
    assert out.device.type == "cpu" and out.shape == (32, 10)
