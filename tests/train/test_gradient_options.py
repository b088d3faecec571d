"""fit's gradient options: clipping, accumulation, the optimizer-step hook, mixed precision."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from nytorch_ext.train import Callback, Checkpoint, SwarmTrainer
from test_train import ExplodingLoader, flat, make_swarm, one_thread, sgd, toy_data  # noqa: F401


def batches(n=4, size=8, seed=0):
    x, y = toy_data(n * size, seed=seed)
    return [(x[i:i + size], y[i:i + size]) for i in range(0, n * size, size)]


def hand_written(swarm, data, *, lr=0.5, clip_norm=None, clip_value=None, accumulate=1):
    """The reference loop: per member, mean gradient over windows of ``accumulate``
    batches (the last may be shorter), clipped, then one SGD step."""
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in swarm]
    windows = [data[i:i + accumulate] for i in range(0, len(data), accumulate)]
    for window in windows:
        for m, o in zip(swarm, opts):
            o.zero_grad()
            for x, y in window:
                (F.cross_entropy(m(x), y) / len(window)).backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(m.parameters(), clip_norm)
            if clip_value is not None:
                torch.nn.utils.clip_grad_value_(m.parameters(), clip_value)
            o.step()


def fit(data, **kw):
    trainer = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    trainer.fit(data, epochs=1, optimizer=sgd(0.5), evolve_every=0, progress=False, **kw)
    return trainer


@pytest.mark.parametrize("kw", [{"clip_norm": 0.05}, {"clip_value": 0.001}, {"clip_norm": 0.05, "clip_value": 0.001}])
def test_gradient_clipping_per_member_matches_hand_written_code(kw):
    data = batches()
    hand = make_swarm(3)
    hand_written(hand, data, **kw)
    trainer = fit(data, **{f"grad_{k}": v for k, v in kw.items()})
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(hand, trainer.swarm))
    unclipped = fit(data)
    assert not torch.equal(flat(unclipped.swarm[0]), flat(trainer.swarm[0]))


@pytest.mark.parametrize("n_batches, accumulate", [(4, 2), (5, 2), (3, 3), (3, 5)])
def test_gradient_accumulation_steps_on_the_mean_gradient(n_batches, accumulate):
    data = batches(n_batches)
    hand = make_swarm(3)
    hand_written(hand, data, accumulate=accumulate, clip_norm=0.5)
    trainer = fit(data, accumulate_grad_batches=accumulate, grad_clip_norm=0.5)
    assert all(torch.allclose(flat(a), flat(b), rtol=0, atol=1e-6) for a, b in zip(hand, trainer.swarm))
    assert len(trainer.history.batch_loss) == n_batches  # every batch's loss is still logged


class Unsized:
    """Re-iterable batches without a len(): the window lengths are not known ahead."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return iter(self.data)


def test_accumulation_without_a_known_epoch_length_rescales_the_last_window():
    data = batches(5)
    hand = make_swarm(3)
    hand_written(hand, data, accumulate=2)
    trainer = fit(Unsized(data), accumulate_grad_batches=2)
    assert all(torch.allclose(flat(a), flat(b), rtol=0, atol=1e-6) for a, b in zip(hand, trainer.swarm))


class Steps(Callback):
    def __init__(self, clip=None):
        self.calls, self.norms, self.clip = [], [], clip

    def on_before_optimizer_step(self, trainer, member_index, optimizer):
        self.calls.append((member_index, optimizer is trainer.optimizers[member_index]))
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))


def test_on_before_optimizer_step_runs_once_per_member_step_before_clipping():
    steps = Steps()
    trainer = SwarmTrainer(make_swarm(3), device="cpu", seed=0)
    trainer.fit(batches(4), epochs=1, optimizer=sgd(0.5), evolve_every=0, progress=False, callbacks=[steps],
                accumulate_grad_batches=2, grad_clip_norm=1e-3)
    assert steps.calls == [(i, True) for _ in range(2) for i in range(3)]  # 2 windows x 3 members
    assert min(steps.norms) > 1e-3  # the hook sees the gradients before they are clipped
    plain = Callback()  # the base class's no-op is not called at all
    trainer.fit(batches(2), epochs=1, evolve_every=0, progress=False, callbacks=[plain])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"grad_clip_norm": 0.0}, ValueError, "grad_clip_norm"),
    ({"grad_clip_norm": float("inf")}, ValueError, "grad_clip_norm"),
    ({"grad_clip_value": "1"}, TypeError, "grad_clip_value"),
    ({"accumulate_grad_batches": 0}, ValueError, "accumulate_grad_batches"),
    ({"accumulate_grad_batches": 1.5}, ValueError, "accumulate_grad_batches"),
    ({"precision": "16"}, ValueError, "precision must be"),
    ({"precision": "fp16"}, ValueError, "precision='fp16' needs a CUDA device"),
])
def test_bad_gradient_options_are_refused_before_training(kwargs, error, match):
    swarm = make_swarm(2)
    before = [flat(m).clone() for m in swarm]
    trainer = SwarmTrainer(swarm, device="cpu")
    with pytest.raises(error, match=match):
        trainer.fit(ExplodingLoader(), evolve_every=0, progress=False, **kwargs)
    assert trainer.optimizers is None and all(torch.equal(flat(m), b) for m, b in zip(swarm, before))


def test_bf16_autocast_on_cpu_runs_forward_passes_in_bfloat16():
    dtypes = []

    def seen(out, y):
        dtypes.append(out.dtype)
        return 0.0

    x, y = toy_data(16)
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    history = trainer.fit([(x, y)], val_data=(x, y), epochs=2, optimizer=sgd(0.1), evolve_every=0,
                          metrics={"seen": seen}, precision="bf16", progress=False)
    assert set(dtypes) == {torch.bfloat16}  # training and validation forwards
    assert all(p.dtype == torch.float32 for m in trainer.swarm for p in m.parameters())
    reference = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    full = reference.fit([(x, y)], val_data=(x, y), epochs=2, optimizer=sgd(0.1), evolve_every=0, progress=False)
    assert history.val_loss[-1] != full.val_loss[-1]
    assert history.val_loss[-1] == pytest.approx(full.val_loss[-1], rel=0.05)
    plain = SwarmTrainer(make_swarm(2), device="cpu")
    plain.fit([(x, y)], epochs=1, evolve_every=0, precision=32, progress=False)  # the int 32 is "32"
    assert plain.step_settings.precision.name == "32"


def everything_run(tmp_path, name, epochs, resume_from=None, seed=0):
    """bf16 autocast + a per-batch scheduler + clipping + accumulation + APSO + dropout +
    a shuffling loader, checkpointed every epoch."""
    x, y = toy_data(56)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)  # 7 batches: windows of 2, 2, 2, 1
    trainer = SwarmTrainer(make_swarm(3, seed=seed, dropout=0.2), device="cpu", seed=seed)
    trainer.fit(loader, val_data=(x[:16], y[:16]), epochs=epochs, optimizer=sgd(0.1, 0.9), evolve_every=3,
                subset_size=2, precision="bf16", grad_clip_norm=0.5, accumulate_grad_batches=2,
                scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1 / (1 + step)),
                scheduler_interval="batch",
                callbacks=[Checkpoint(tmp_path / (name + "-{epoch}.pt"))], progress=False, resume_from=resume_from)
    return trainer


def test_resume_is_bit_for_bit_with_bf16_scheduler_clipping_and_accumulation(tmp_path):
    torch.manual_seed(0)
    straight = everything_run(tmp_path, "straight", 3)
    torch.manual_seed(0)
    everything_run(tmp_path, "first", 1)
    torch.manual_seed(321)
    resumed = everything_run(tmp_path, "resumed", 3, resume_from=tmp_path / "first-1.pt", seed=5)
    assert all(torch.equal(flat(a), flat(b)) for a, b in zip(straight.swarm, resumed.swarm))
    assert resumed.history.batch_loss == straight.history.batch_loss
    assert resumed.history.lr == straight.history.lr and len(resumed.history.evolutions) == 7
    state = torch.load(tmp_path / "first-1.pt", weights_only=False)
    assert state["precision"] == "bf16" and state["scalers"] is None
    with pytest.raises(ValueError, match="precision='bf16', this run in '32'"):
        SwarmTrainer(make_swarm(3), device="cpu").fit(
            [toy_data(8)], epochs=2, evolve_every=0, progress=False, resume_from=tmp_path / "first-1.pt",
            scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_uses_one_grad_scaler_per_member_saved_in_checkpoints(tmp_path):
    x, y = toy_data(32)
    trainer = SwarmTrainer(make_swarm(3), device="cuda", seed=0)
    history = trainer.fit([(x, y)] * 4, val_data=(x, y), epochs=2, optimizer=sgd(0.1), evolve_every=2,
                          subset_size=2, precision="fp16", grad_clip_norm=1.0,
                          callbacks=[Checkpoint(tmp_path / "fp16.pt")], progress=False)
    assert len(trainer.scalers) == 3 and all(s.is_enabled() for s in trainer.scalers)
    assert history.best_val_loss[-1] < history.best_val_loss[0]
    state = torch.load(tmp_path / "fp16.pt", weights_only=False)
    assert state["precision"] == "fp16" and len(state["scalers"]) == 3 and "scale" in state["scalers"][0]
    again = SwarmTrainer(make_swarm(3), device="cuda", seed=0)
    again.fit([(x, y)] * 4, epochs=3, optimizer=sgd(0.1), evolve_every=2, subset_size=2, precision="fp16",
              grad_clip_norm=1.0, progress=False, resume_from=tmp_path / "fp16.pt")
    assert [s.get_scale() for s in again.scalers][0] > 0
