"""SwarmTrainer(batched=True): the same members as sequential training, no copies
between the gradient and APSO phases, refusals before anything is trained, checkpoints
that resume either kind of run, and evaluate/predict through the batched forward.

Tolerance: batched and sequential training agree to ATOL/RTOL below, not bit for bit.
Each member's arithmetic is the same, but the batched forward runs K members' matmuls
and convolutions as one batched (or grouped) kernel, whose reductions add the same
products in another order, so the gradients differ in the last bits (~1e-7 relative);
over a few steps (and APSO blends of those weights) the members stay within ~1e-6.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nytorch_ext as nyto
from nytorch_ext import NytoModule, ParticleModule
from nytorch_ext.swarm import Swarm
from nytorch_ext.train import Callback, Checkpoint, SwarmTrainer

ATOL, RTOL = 2e-5, 1e-4


class MLP(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class Conv(NytoModule):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 3 * 3, 4)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(F.relu(self.conv2(out)).flatten(1))


class Dropped(NytoModule):
    def __init__(self, p=0.5):
        super().__init__()
        self.fc1, self.drop, self.fc2 = nn.Linear(8, 16), nn.Dropout(p), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


SHAPES = {MLP: (8,), Conv: (1, 6, 6), Dropped: (8,)}


def make_swarm(cls=MLP, k=4, seed=0):
    torch.manual_seed(seed)
    return Swarm.spawn(ParticleModule(cls()), k)


def make_data(cls=MLP, batches=4, n=12, weights=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(batches):
        batch = (torch.randn(n, *SHAPES[cls], generator=g), torch.randint(0, 4, (n,), generator=g))
        data.append(batch + (torch.rand(n, generator=g) + 0.5,) if weights else batch)
    return data


def rows(swarm):
    return torch.cat([b.detach().clone().flatten() for b in swarm.buffers()])


class MomentumEvery(Callback):
    """The swarm's momentum step (Swarm.momentum_) every third batch, as a user callback would."""

    def __init__(self):
        self.history = []

    def on_batch_end(self, trainer, batch, losses):
        self.history = (self.history + [trainer.swarm.snapshot()])[-2:]
        if batch % 3 == 2 and len(self.history) == 2:
            trainer.swarm.momentum_(self.history[1], self.history[0], 0.3)


def run(batched, cls=MLP, epochs=2, optimizer=None, data=None, **fit):
    swarm = make_swarm(cls)
    trainer = SwarmTrainer(swarm, "cpu", seed=3, batched=batched)
    history = trainer.fit(data or make_data(cls), epochs=epochs, progress=False, optimizer=optimizer, **fit)
    return swarm, trainer, history


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw-wd": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("cls", [MLP, Conv], ids=["mlp", "conv"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_batched_equals_sequential(cls, opt):
    kw = dict(cls=cls, optimizer=OPTIMIZERS[opt], evolve_every=3, subset_size=3, callbacks=[MomentumEvery()])
    seq_swarm, _, seq_hist = run(False, **kw)
    kw["callbacks"] = [MomentumEvery()]
    bat_swarm, _, bat_hist = run(True, **kw)
    assert seq_hist.evolutions == bat_hist.evolutions  # the same APSO draws, bests and members moved
    torch.testing.assert_close(torch.tensor(bat_hist.batch_loss), torch.tensor(seq_hist.batch_loss),
                               atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(rows(bat_swarm), rows(seq_swarm), atol=ATOL, rtol=RTOL)
    assert not torch.equal(rows(bat_swarm), rows(make_swarm(cls))), "training must have moved the members"


def test_batched_equals_sequential_with_every_gradient_option():
    kw = dict(optimizer=OPTIMIZERS["sgd-momentum-wd"], data=make_data(weights=True, batches=5),
              grad_clip_norm=0.3, grad_clip_value=0.05, accumulate_grad_batches=2, evolve_every=2,
              scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.5), metrics={"accuracy": nyto.accuracy},
              val_data=make_data(batches=1, seed=5)[0])
    seq_swarm, _, seq_hist = run(False, **kw)
    bat_swarm, bat_trainer, bat_hist = run(True, **kw)
    torch.testing.assert_close(rows(bat_swarm), rows(seq_swarm), atol=ATOL, rtol=RTOL)
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr"):
        torch.testing.assert_close(torch.tensor(bat_hist.column(key)), torch.tensor(seq_hist.column(key)),
                                   atol=ATOL, rtol=RTOL)
    assert bat_hist.column("lr")[-1] == [0.025] * 4          # one scheduler, every member's rate
    assert len(bat_trainer.optimizers) == 1 and bat_trainer.optimizers[0].param_groups[0]["params"] == \
        bat_trainer._batched_run.model.leaves


def test_bf16_batched_follows_bf16_sequential():
    kw = dict(optimizer=OPTIMIZERS["sgd"], precision="bf16", evolve_every=2)
    seq_swarm, _, seq_hist = run(False, **kw)
    bat_swarm, _, bat_hist = run(True, **kw)
    # bfloat16 products (8 bits of mantissa) summed in another order: a looser tolerance
    torch.testing.assert_close(rows(bat_swarm), rows(seq_swarm), atol=2e-3, rtol=1e-2)
    torch.testing.assert_close(torch.tensor(bat_hist.batch_loss), torch.tensor(seq_hist.batch_loss),
                               atol=2e-2, rtol=1e-2)


def test_clipping_is_per_member():
    """grad_clip_norm between the members' gradient norms: the members above it are
    scaled to it, each by its own norm; the members below it step as unclipped (a
    norm over the whole swarm would scale them all)."""
    data = make_data(batches=1)
    kw = dict(optimizer=OPTIMIZERS["sgd"], data=data, epochs=1, evolve_every=0)
    start = rows(make_swarm())
    unclipped, _, _ = run(True, **kw)
    free = (rows(unclipped) - start).view(4, -1)
    norms = free.norm(dim=1) / 0.05
    clip = float(norms.median())
    clipped, _, _ = run(True, grad_clip_norm=clip, **kw)
    steps = (rows(clipped) - start).view(4, -1)
    for i in range(4):
        if norms[i] > clip:
            torch.testing.assert_close(steps[i].norm(), torch.tensor(0.05 * clip), rtol=1e-4, atol=0)
            torch.testing.assert_close(steps[i], free[i] * (clip / norms[i]), rtol=1e-3, atol=1e-6)
        else:
            torch.testing.assert_close(steps[i], free[i], rtol=1e-4, atol=1e-7)
    assert (norms > clip).any() and (norms < clip).any()


class Tempered(NytoModule):
    """A 0-dim parameter (its leaf is [K]) next to matrices: clipping and Adam's state per member."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.temperature = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return F.log_softmax(self.fc(x) / self.temperature, dim=1)


SHAPES[Tempered] = (8,)


@pytest.mark.filterwarnings("ignore:Swarm.spawn")  # the temperature starts equal in every member
def test_scalar_parameters_clip_and_step_per_member():
    kw = dict(cls=Tempered, optimizer=OPTIMIZERS["adam"], grad_clip_norm=0.05, evolve_every=2)
    seq_swarm, _, _ = run(False, **kw)
    bat_swarm, trainer, _ = run(True, **kw)
    assert [tuple(leaf.shape) for leaf in trainer._batched_run.model.leaves] == [(4,), (4, 4, 8), (4, 4)]
    torch.testing.assert_close(rows(bat_swarm), rows(seq_swarm), atol=ATOL, rtol=RTOL)


def test_dropout_members_draw_their_own_masks():
    """Dropout statistically: in train mode each member draws its own mask (K different
    masks per batch), zeroing about p of the units; in eval mode the batched forward
    is every member's own forward."""
    class Gate(NytoModule):
        def __init__(self):
            super().__init__()
            self.scale, self.drop = nn.Parameter(torch.ones(50)), nn.Dropout(0.5)

        def reset_parameters(self):
            nn.init.ones_(self.scale)

        def forward(self, x):
            return self.drop(x * self.scale)

    torch.manual_seed(0)
    gates = SwarmTrainer(Swarm.spawn(ParticleModule(Gate()), 6), "cpu", seed=0, batched=True)
    gates.fit([(torch.ones(4, 50), torch.zeros(4, 50))], epochs=1, progress=False, evolve_every=0,
              loss=F.mse_loss, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    with torch.no_grad():
        out = gates._batched_run.model.forward(torch.ones(40, 50))   # [6, 40, 50], train mode
    kept = out != 0
    assert abs(float(kept.float().mean()) - 0.5) < 0.03, float(kept.float().mean())  # 12000 draws: ~7 sigma
    assert torch.all(out[kept] == 2.0)                                 # kept units scaled by 1 / (1 - p)
    masks = kept.flatten(1)
    assert all(not torch.equal(masks[i], masks[j]) for i in range(6) for j in range(i))
    swarm = make_swarm(Dropped, k=6)
    trainer = SwarmTrainer(swarm, "cpu", seed=0, batched=True)
    trainer.fit(make_data(Dropped, batches=1), epochs=1, progress=False, evolve_every=0)
    ev = trainer.evaluate(make_data(Dropped, batches=2))
    seq = SwarmTrainer(swarm, "cpu", seed=0).evaluate(make_data(Dropped, batches=2))
    torch.testing.assert_close(torch.tensor(ev.loss), torch.tensor(seq.loss), atol=ATOL, rtol=RTOL)


def test_no_copies_between_gradient_and_apso_phases():
    swarm = make_swarm()
    pointers = [b.data_ptr() for b in swarm.buffers()] + [p.data_ptr() for m in swarm for p in m.parameters()]
    params = [list(m.parameters()) for m in swarm]
    row0 = [p.data_ptr() for p in params[0]]  # a leaf is a parameter's [K, *shape] view: starts at row 0
    seen = []

    class Watch(Callback):
        def on_evolve(self, trainer, result):
            seen.append([leaf.data_ptr() for leaf in trainer.optimizers[0].param_groups[0]["params"]])

    trainer = SwarmTrainer(swarm, "cpu", seed=0, batched=True)
    trainer.fit(make_data(batches=6), epochs=2, progress=False, evolve_every=2, subset_size=4,
                optimizer=OPTIMIZERS["adam"], callbacks=[Watch()])
    assert len(seen) == 6
    assert all(s == row0 for s in seen)  # the optimizer steps the swarm's own buffer
    assert [b.data_ptr() for b in swarm.buffers()] + [p.data_ptr() for m in swarm for p in m.parameters()] == pointers
    assert all(a is b for ps, m in zip(params, swarm) for a, b in zip(ps, m.parameters()))
    # and a member is an ordinary module with the trained values
    x = make_data(batches=1)[0][0]
    torch.testing.assert_close(swarm[2](x), trainer.predict([x], use="all")[2], atol=ATOL, rtol=RTOL)


# ------------------------------------------------------------------ refusals

class Normed(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc, self.bn = nn.Linear(8, 4), nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.fc(x))


class Item(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        out = self.fc(x)
        return out / float(out.abs().max().item())  # .item() of a member's (batched) tensor


class Branchy(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        out = self.fc(x)
        return out if out.sum() > 0 else -out


class InPlace(NytoModule):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.register_buffer("total", torch.zeros(4))

    def forward(self, x):
        out = self.fc(x)
        self.total.add_(out.detach().sum(0))  # a buffer written in the forward
        return out


for _cls in (Normed, Item, Branchy, InPlace):
    SHAPES[_cls] = (8,)

REFUSALS = [
    (Normed, {}, ValueError, "running statistics"),
    (Item, {}, ValueError, "vmap cannot run the model's forward"),
    (Branchy, {}, ValueError, "vmap cannot run the model's forward"),
    (InPlace, {}, ValueError, "forward writes into its buffers"),
    (MLP, {"optimizer": lambda p: torch.optim.LBFGS(p)}, TypeError, "LBFGS"),
    (MLP, {"optimizer": "members"}, TypeError, "a list of per-member optimizers"),
]


@pytest.mark.parametrize("cls,fit,error,match", REFUSALS,
                         ids=["batchnorm", "item", "control-flow", "in-place", "lbfgs", "optimizer-list"])
def test_refusals_change_nothing(cls, fit, error, match):
    swarm = make_swarm(cls)
    if fit.get("optimizer") == "members":
        fit = {"optimizer": [torch.optim.SGD(m.parameters(), lr=0.1) for m in swarm]}
    data = make_data(cls, batches=2)
    data_before = [tuple(t.clone() for t in b) for b in data]
    weights, buffers = rows(swarm), [b.clone() for m in swarm for b in m.buffers()]
    trainer = SwarmTrainer(swarm, "cpu", seed=0, batched=True)
    rng = torch.get_rng_state()
    with pytest.raises(error, match=match):
        trainer.fit(data, epochs=1, progress=False, **fit)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(rows(swarm), weights)
    assert all(torch.equal(a, b) for a, b in zip(buffers, [b for m in swarm for b in m.buffers()]))
    assert all(torch.equal(a, b) for x, y in zip(data, data_before) for a, b in zip(x, y))
    assert trainer.optimizers is None and not trainer.history.batch_loss
    assert all(p.grad is None for m in swarm for p in m.parameters())
    # "auto" trains the same model one member at a time, saying why
    if error is ValueError:
        auto = SwarmTrainer(make_swarm(cls, k=8), "cpu", seed=0, batched="auto")
        with pytest.warns(UserWarning, match="batched='auto': training the members one by one: .*" + match[:12]):
            auto.fit(data, epochs=1, progress=False, evolve_every=0, **fit)
        assert len(auto.optimizers) == 8 and auto._batched_run is None


def test_auto_batches_where_it_measured_faster_and_bad_choices_are_refused():
    trainer = SwarmTrainer(make_swarm(k=8), "cpu", seed=0, batched="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(make_data(), epochs=1, progress=False)
    assert trainer._batched_run is not None and len(trainer.optimizers) == 1
    for cls, k, why in ((MLP, 4, "a swarm of 4 members"), (Conv1dNet, 8, r"convolutions \(root_module.conv: Conv1d\)")):
        trainer = SwarmTrainer(make_swarm(cls, k=k), "cpu", seed=0, batched="auto")
        with pytest.warns(UserWarning, match=why):
            trainer.fit(make_data(cls), epochs=1, progress=False)
        assert trainer._batched_run is None and len(trainer.optimizers) == k
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="batched must be False, True or 'auto'"):
            SwarmTrainer(make_swarm(), "cpu", batched=bad)


class Conv1dNet(NytoModule):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.conv(x.unsqueeze(1)).flatten(1))


class Pooled(NytoModule):
    """A Conv2d whose output grows with the image (8 channels x H x W), any image size."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 3 * 3, 4)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 3).flatten(1))


SHAPES[Conv1dNet] = (8,)


def images(side, batches=2, n=6):
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(n, 1, side, side, generator=g), torch.randint(0, 4, (n,), generator=g))
            for _ in range(batches)]


def test_auto_batches_small_convolutions_and_judges_each_runs_data():
    # the test ConvNet on 6x6 images: conv1 outputs 4 x 6 x 6 = 144 elements per sample
    trainer = SwarmTrainer(make_swarm(Conv, k=8), "cpu", seed=0, batched="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(make_data(Conv), epochs=1, progress=False)
    assert trainer._batched_run is not None and len(trainer.optimizers) == 1
    # 8 x 16 x 16 = 2048 elements: at the limit, batched; 8 x 17 x 17 = 2312: one by one
    trainer = SwarmTrainer(make_swarm(Pooled, k=8), "cpu", seed=0, batched="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(images(16), epochs=1, progress=False)
    assert trainer._batched_run is not None
    before = rows(trainer.swarm)
    with pytest.warns(UserWarning, match=r"convolution root_module.conv outputs 2312 elements per sample"):
        trainer.fit(images(17), epochs=1, progress=False, optimizer=lambda p: torch.optim.SGD(p, lr=0.01))
    assert trainer._batched_run is None and len(trainer.optimizers) == 8
    assert not torch.equal(rows(trainer.swarm), before)  # it trained, one member at a time
    # batched=True batches large convolutions anyway
    forced = SwarmTrainer(make_swarm(Pooled, k=8), "cpu", seed=0, batched=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forced.fit(images(17), epochs=1, progress=False)
    assert forced._batched_run is not None


def test_a_loss_vmap_cannot_run_is_computed_per_member():
    def item_loss(out, y):
        return F.nll_loss(out, y) * (1.0 + 0.0 * out.sum().item())

    seq_swarm, _, seq_hist = run(False, loss=item_loss, optimizer=OPTIMIZERS["adam"])
    bat_swarm, trainer, bat_hist = run(True, loss=item_loss, optimizer=OPTIMIZERS["adam"])
    assert trainer._batched_run.loss_mode == "loop"
    torch.testing.assert_close(rows(bat_swarm), rows(seq_swarm), atol=ATOL, rtol=RTOL)
    _, trainer, _ = run(True, loss=F.nll_loss, epochs=1)
    assert trainer._batched_run.loss_mode == "flat"


def test_a_custom_loss_runs_inside_the_vmap():
    def smooth_nll(out, y, reduction="mean"):
        return F.nll_loss(out, y, reduction=reduction) + 0.1 * out.exp().square().mean()

    kw = dict(loss=smooth_nll, optimizer=OPTIMIZERS["adam"], data=make_data(weights=True))
    seq_swarm, _, seq_hist = run(False, **kw)
    bat_swarm, trainer, bat_hist = run(True, **kw)
    assert trainer._batched_run.loss_mode == "mapped"
    torch.testing.assert_close(rows(bat_swarm), rows(seq_swarm), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(torch.tensor(bat_hist.batch_loss), torch.tensor(seq_hist.batch_loss),
                               atol=ATOL, rtol=RTOL)


def test_the_probe_restores_every_random_state_and_drops_its_gradients():
    from nytorch_ext.swarm.batched import BatchedSwarm
    from nytorch_ext.train.batched_step import probe
    from nytorch_ext.train.batches import BatchFormat
    from nytorch_ext.train.step import StepSettings

    model = BatchedSwarm(make_swarm(Dropped))
    g = torch.Generator().manual_seed(4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(24, 8), torch.randint(0, 4, (24,))),
                                         batch_size=6, shuffle=True, generator=g)
    states = torch.get_rng_state(), g.get_state()
    assert probe(model, loader, BatchFormat(), F.cross_entropy, StepSettings(), torch.device("cpu")) == (None, "flat")
    assert torch.equal(torch.get_rng_state(), states[0]) and torch.equal(g.get_state(), states[1])
    assert all(leaf.grad is None for leaf in model.leaves)


# ------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("first,second", [(True, False), (False, True)], ids=["batched-to-seq", "seq-to-batched"])
def test_checkpoint_resumes_the_other_kind_of_run(tmp_path, first, second):
    path = tmp_path / "run.pt"
    kw = dict(optimizer=OPTIMIZERS["adam"], evolve_every=3,
              scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.5))
    full, _, full_hist = run(second, epochs=3, **kw)
    data = make_data()
    swarm = make_swarm()
    trainer = SwarmTrainer(swarm, "cpu", seed=3, batched=first)
    trainer.fit(data, epochs=1, progress=False, callbacks=[Checkpoint(path)], **kw)
    state = torch.load(path, weights_only=False)
    assert len(state["optimizers"]) == 4 and len(state["schedulers"]) == 4
    for s, m in zip(state["optimizers"], swarm):  # the per-member form, whichever run wrote it
        assert [tuple(s["state"][j]["exp_avg"].shape) for j in range(4)] == [tuple(p.shape) for p in m.parameters()]
    resumed_swarm = make_swarm()
    resumed = SwarmTrainer(resumed_swarm, "cpu", seed=3, batched=second)
    hist = resumed.fit(data, epochs=3, progress=False, resume_from=path, **kw)
    torch.testing.assert_close(rows(resumed_swarm), rows(full), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(torch.tensor(hist.batch_loss), torch.tensor(full_hist.batch_loss), atol=ATOL,
                               rtol=RTOL)


def test_batched_resume_refuses_members_that_do_not_merge(tmp_path):
    path = tmp_path / "run.pt"
    swarm = make_swarm()
    trainer = SwarmTrainer(swarm, "cpu", seed=3)
    # per-member optimizers with different learning rates cannot become one batched optimizer
    opts = [torch.optim.SGD(m.parameters(), lr=0.01 * (i + 1)) for i, m in enumerate(swarm)]
    trainer.fit(make_data(), epochs=1, progress=False, optimizer=opts, callbacks=[Checkpoint(path)])
    other = make_swarm(seed=9)
    before = rows(other)
    batched = SwarmTrainer(other, "cpu", seed=3, batched=True)
    with pytest.raises(ValueError, match=r"resume_from .*settings differ"):
        batched.fit(make_data(), epochs=2, progress=False, resume_from=path,
                    optimizer=lambda p: torch.optim.SGD(p, lr=0.01))
    assert torch.equal(rows(other), before)


def test_evaluate_and_predict_agree_with_sequential():
    swarm, trainer, _ = run(True, cls=Conv, epochs=1)
    seq = SwarmTrainer(swarm, "cpu", seed=0)
    data = make_data(Conv, batches=2, weights=True)
    ev, ev_seq = (t.evaluate(data, {"accuracy": nyto.accuracy}, ensemble=True) for t in (trainer, seq))
    torch.testing.assert_close(torch.tensor(ev.loss), torch.tensor(ev_seq.loss), atol=ATOL, rtol=RTOL)
    assert ev.accuracy == ev_seq.accuracy
    assert ev.ensemble["loss"] == pytest.approx(ev_seq.ensemble["loss"], abs=ATOL)
    xs = [b[0] for b in data]
    for use in ("all", "ensemble", 2):
        torch.testing.assert_close(trainer.predict(xs, use=use), seq.predict(xs, use=use), atol=ATOL, rtol=RTOL)
