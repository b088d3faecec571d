"""Training a swarm of particles: gradient descent on every member, APSO every few batches.

PyBlaze-style ergonomics (``fit`` / ``evaluate`` / ``predict``, callbacks, a History)
for the seed chapter's hybrid algorithm::

    import torch
    from nytorch_ext import ParticleModule
    from nytorch_ext.swarm import Swarm
    from nytorch_ext.train import SwarmTrainer, accuracy
    from nytorch_ext.train import EarlyStopping, Checkpoint

    swarm = Swarm.spawn(ParticleModule(Net()), 12, init="randn")
    trainer = SwarmTrainer(swarm, device="auto", seed=0)
    history = trainer.fit(train_loader, val_data=val_loader, epochs=10,
                          optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
                          loss=torch.nn.functional.cross_entropy,
                          evolve_every=16, alpha=0.5, subset_size=6,
                          metrics={"accuracy": accuracy},
                          callbacks=[EarlyStopping("val_loss", patience=3),
                                     Checkpoint("run.pt")])
    history.best_val_accuracy            # per epoch, the best particle's value
    trainer.evaluate(test_loader, {"accuracy": accuracy}, ensemble=True)
    trainer.predict(test_loader, use="ensemble")   # mean softmax probabilities

Every batch, each member takes one gradient step with its own optimizer
(:mod:`~nytorch_ext.train.step`); every ``evolve_every`` batches (counted over the whole
run) the swarm takes one in-place APSO step (:meth:`Swarm.apso_step`) on that batch's
losses, drawing its subset from the trainer's own generator. Members keep their
Parameter objects, so optimizer state (momentum, Adam moments) carries across APSO steps.

This module is the loop and the trainer's state; the rest lives beside it: ``options``
(fit's arguments), ``batches``, ``step`` (the gradient step), ``inference`` (evaluate,
predict), ``checkpoints`` and ``rng`` (saving and resuming), ``callbacks``, ``history``.
"""
from __future__ import annotations

import numbers
import time
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.validation import positive_int
from ..swarm import Swarm
from ..swarm.distributed import preferred_device
from .batched_step import (BatchedRun, BatchedSteps, batched_checkpoint_entries, batched_checkpoint_view,
                           check_batched, member_learning_rates, plan_run, plateau_values)
from .batches import BatchFormat, check_batches, reiterable, sample_count, to_device
from .callbacks import Callback
from .checkpoints import (CHECKPOINT_FORMAT, CheckedResume, CheckpointFile, check_resume, checkpoint_state,
                          read_checkpoint)
from .device import resolve_device
from .history import Evaluation, History, best_of
from .inference import check_use, measure, predict_outputs
from .metrics import accuracy, check_loss, check_metrics, loss_mass
from .options import EvolveSettings, callback_list
from .precision import Precision
from .rng import PERSISTENT_WORKERS_WARNING, persistent_workers, rng_state, set_rng_state
from .schedulers import make_schedulers, param_group_settings, restore_settings, step_epoch
from .step import GradientSteps, StepSettings
from .world import run_world

__all__ = ["SwarmTrainer", "accuracy", "rng_state", "set_rng_state", "CHECKPOINT_FORMAT"]


class SwarmTrainer:
    """Trains every member of a :class:`Swarm` by gradient descent and evolves the
    swarm by APSO.

    ``swarm``: a Swarm or a sequence of particles of one species (made into a Swarm),
    or a :class:`~nytorch_ext.swarm.distributed.ShardedSwarm` (``nytorch_ext.distributed.shard``;
    a plain Swarm is sharded too when torch.distributed is initialised with several
    processes): each rank then trains its block (``swarm`` is that block, ``sharded``
    the ShardedSwarm, ``len(trainer)`` the whole K) and the APSO step, the History,
    evaluate, predict and checkpoints are the whole swarm's, as in one process (see
    :mod:`~nytorch_ext.train.world`; docs/swarm-and-training.md, "Distributed swarms").
    ``device``: see :func:`nytorch_ext.train.device.resolve_device` (``"auto"``: the CUDA GPU
    with the most free memory, else the CPU); the swarm is moved there.
    ``seed``: seeds the trainer's APSO generator (drawn from torch's global RNG when
    None, so ``torch.manual_seed`` before building the trainer reproduces a run).
    ``batched``: False (the default: each member takes its own gradient step), True
    (all members in one vmapped forward, one backward and one optimizer step over the
    swarm's buffers; a model or optimizer that cannot be batched raises before
    training) or ``"auto"`` (batched when it can be and measured faster: at least 8
    members, and convolutions only ``Conv2d`` ones with small outputs on the run's first
    batch; else one by one with a warning naming the cause); see
    :mod:`~nytorch_ext.train.batched_step`.

    Attributes: ``swarm``, ``device``, ``generator`` (the APSO subset draws),
    ``optimizers`` (one per member, after ``fit``; a batched run's one optimizer, in a
    list), ``history`` (the latest run), ``epoch`` (0-based current epoch), ``epochs``
    (the run's total), ``stop_training``, ``log_keys``, ``batches_per_epoch``."""

    def __init__(self, swarm, device="auto", *, seed: int | None = None, batched=False) -> None:
        self.batched = check_batched(batched)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        device = resolve_device(preferred_device(device))  # before the swarm is built or moved
        self._world = run_world(swarm)  # one process, or this rank's block of a sharded swarm
        self.sharded = self._world.sharded
        self.swarm: Swarm = self.sharded.local
        self.device = device
        if any(p.device != self.device for m in self.swarm for p in m.parameters()):
            self.swarm.to(self.device)
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.generator = torch.Generator().manual_seed(int(seed))
        self.optimizers: list | None = None
        self.schedulers: list | None = None
        self.scheduler_interval = "epoch"
        self.scalers: list | None = None
        self.step_settings = StepSettings(precision=Precision("32", self.device.type))
        self.batch_format = BatchFormat()
        self.loss_fn: Callable = F.cross_entropy
        self.history = History(len(self))
        self.epoch = 0
        self.epochs = 0
        self.stop_training = False
        self.log_keys: list[str] = []
        self.batches_per_epoch: int | None = None
        self._callbacks: list = []
        self._train_loader = None
        self._pending: CheckpointFile | None = None
        self._batched_run: BatchedRun | None = None  # the batched model of the current (last) run

    def __len__(self) -> int:
        return self._world.size  # the whole swarm's K (self.swarm is this rank's block)

    # ---------------------------------------------------------- callbacks

    def _dispatch(self, hook: str, *args) -> None:
        for cb in self._callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None and self._world.runs(cb):
                fn(self, *args)

    # ---------------------------------------------------------- fit

    def fit(self, train_loader, val_data=None, epochs: int = 1, optimizer=None, loss=None, *,
            evolve_every: int | None = 16, alpha: float = 0.5, subset_size: int | str | None = "auto",
            noise: float = 0.0, replace: bool = True, callbacks=None, metrics=None,
            progress: bool | None = None, resume_from=None, scheduler=None, scheduler_interval: str = "epoch",
            grad_clip_norm: float | None = None, grad_clip_value: float | None = None,
            accumulate_grad_batches: int = 1, precision: str = "32", batch_keys=None) -> History:
        """Train the swarm for ``epochs`` epochs and return the run's :class:`History`.

        ``train_loader``: re-iterable batches (a DataLoader, a list): ``(x, y)``,
        ``(x, y, sample_weight)`` or dicts (see :class:`~nytorch_ext.train.batches.BatchFormat`;
        ``batch_keys`` renames the dict keys). With sample weights the loss is called as
        ``loss(output, target, reduction="none")`` and the batch's loss is the weighted
        mean ``sum(w * l) / sum(w)`` (metrics are unweighted).
        ``val_data``: None, a loader, or one ``(x, y)`` pair of tensors; evaluated after
        every epoch (``val_loss``, ``val_<metric>`` per particle), under ``precision``.
        ``optimizer``: a factory ``params -> Optimizer`` called once per member (a batched
        trainer calls it once, on the swarm's buffers), a list of one optimizer per member, or None (keep the trainer's optimizers from the previous
        run; the seed's ``SGD(lr=0.01)`` if there are none).
        ``loss``: ``loss(output, target)`` -> a scalar tensor averaged over the batch
        (default ``F.cross_entropy``, which also fits models ending in ``log_softmax``).
        ``evolve_every``: APSO every that many batches (counted over the run; 0 or None:
        never). ``alpha``, ``subset_size``, ``noise``, ``replace``: the APSO step's
        (see :func:`nytorch_ext.swarm.apso_step`). ``subset_size``: ``"auto"`` (the
        default) draws ``min(6, K)`` members, the seed's 6 capped at the swarm size, so
        the default fits any swarm; None draws K (as ``apso_step``); an int must be in
        1..K. A member whose loss is NaN counts as the worst in the step.
        ``metrics``: name -> ``fn(output, target)`` -> float, a batch mean (e.g.
        :func:`accuracy`); logged as ``train_<name>`` (on the training forward passes) and
        ``val_<name>``.
        ``scheduler``: a factory ``optimizer -> LR scheduler``, one per member, stepped
        every epoch or, with ``scheduler_interval="batch"``, after every optimizer step
        (see :mod:`~nytorch_ext.train.schedulers`); each member's learning rate is
        logged as ``lr``. ``grad_clip_norm`` / ``grad_clip_value``: clip each member's
        gradients (its own total norm; each element) before its optimizer step.
        ``accumulate_grad_batches``: step every that many batches on the mean gradient
        (the last window of an epoch may be shorter). ``precision``: ``"32"``,
        ``"bf16"`` or ``"fp16"`` (CUDA only; see :mod:`~nytorch_ext.train.precision`).
        ``callbacks``: see :mod:`nytorch_ext.train.callbacks`. ``progress``: None or True
        (the default output: a tqdm bar per epoch when stderr is a terminal, else one
        line per epoch, and a line saying why a run stopped early), False (nothing).
        ``resume_from``: a checkpoint written by :class:`Checkpoint` /
        :meth:`save_checkpoint`; the run continues from the epoch after it up to
        ``epochs`` in total (so the same call restarts an interrupted job), with the same
        arguments as the run that wrote it. Without it, each ``fit`` starts a new run
        (epoch 0, a new History). ``resume_from="auto"``: the latest file the run's
        :class:`Checkpoint` callback wrote, when there is one, else a new run (what a job
        restarted by ``torchrun --max-restarts`` wants). A loader with
        ``persistent_workers=True`` (and workers) resumes, with a warning, but not bit for bit.

        Every argument is checked (``ValueError`` / ``TypeError`` naming it) before any
        training or any change to the swarm or the trainer: loaders known to be empty,
        the callbacks (their ``check_fit``: an ``EarlyStopping`` monitor this run does not
        log, a ``Checkpoint`` path that cannot be written) and the whole checkpoint to
        resume from (the swarm's keys and shapes, the optimizers' and schedulers' classes
        and state, the precision, the callbacks' states, the RNG states): a checkpoint
        that does not fit raises and loads nothing. Then callbacks' ``on_fit_start``
        runs, before the first batch."""
        batch_format = BatchFormat.checked(batch_keys)
        train = reiterable(train_loader, "train_loader")
        if train is None:
            raise ValueError("train_loader must be given")
        val = reiterable(val_data, "val_data")
        batches_per_epoch = check_batches(train, "train_loader", batch_format=batch_format)
        check_batches(val, "val_data", batch_format=batch_format)
        epochs = positive_int(epochs, "epochs", type_error=ValueError)
        evolve = EvolveSettings.checked(evolve_every, alpha, subset_size, noise, replace, len(self))
        settings = StepSettings.checked(grad_clip_norm, grad_clip_value, accumulate_grad_batches, precision,
                                        self.device)
        metrics = check_metrics(metrics)
        loss_fn = check_loss(loss, F.cross_entropy)
        checkpoint = self._pending
        resume_from = self._world.resume_path(resume_from, callbacks, epochs)
        if resume_from is not None:
            checkpoint = read_checkpoint(resume_from, self.swarm, view=self._world.local_view)
        # every rank runs the same fit (one collective when distributed; nothing with one process)
        self._world.check_fit(epochs=epochs, evolve=evolve, batches_per_epoch=batches_per_epoch,
                              metrics=sorted(metrics), validation=val is not None, generator=self.generator,
                              resume_from=None if checkpoint is None else checkpoint.path)
        callbacks = callback_list(callbacks, progress)
        batched_run, optimizers = plan_run(self.batched, self.swarm, self._batched_run, optimizer,
                                           self.optimizers, train, batch_format, loss_fn, settings, self.device)
        log_keys = ["train_loss"] + [f"train_{m}" for m in metrics]
        if val is not None:
            log_keys += ["val_loss"] + [f"val_{m}" for m in metrics]
        if scheduler is not None:
            log_keys.append("lr")
        for cb in callbacks:
            check = getattr(cb, "check_fit", None)
            if callable(check):
                check(self, log_keys=list(log_keys), epochs=epochs)
        lr_settings = param_group_settings(optimizers)
        try:  # a scheduler sets its optimizer's learning rate: undone if the run is refused
            schedulers = make_schedulers(scheduler, optimizers, scheduler_interval)
            resumed = None
            if checkpoint is not None and batched_run is not None:
                checkpoint = batched_checkpoint_view(checkpoint, batched_run, optimizers[0])
            if checkpoint is not None:
                resumed = check_resume(checkpoint, self, optimizers, callbacks, train_loader,
                                       schedulers=schedulers, precision=settings.precision.name)
        except BaseException:
            restore_settings(optimizers, lr_settings)
            raise
        if checkpoint is not None and persistent_workers(train_loader):
            warnings.warn(PERSISTENT_WORKERS_WARNING, UserWarning, stacklevel=2)

        # ---- everything is checked: from here on the run is applied
        self._pending = None
        self._batched_run = batched_run
        self.optimizers = optimizers
        self.schedulers = schedulers
        self.scheduler_interval = scheduler_interval
        self.scalers = settings.precision.make_scalers(len(optimizers))
        self.step_settings = settings
        self.batch_format = batch_format
        self.loss_fn = loss_fn
        self._callbacks = callbacks
        self._train_loader = train_loader
        self.epochs = epochs
        self.stop_training = False
        self.history = History(len(self))
        self.log_keys = log_keys
        self.batches_per_epoch = batches_per_epoch
        start = 0
        if checkpoint is not None:
            start = self._load_training_state(checkpoint, resumed)
        self._dispatch("on_fit_start")
        if checkpoint is not None:
            self._load_callback_states(resumed)
            set_rng_state(checkpoint.state["rng"], train_loader)
        try:
            for epoch in range(start, epochs):
                if self.stop_training:
                    break
                self._epoch(epoch, train, val, metrics, evolve)
        finally:
            self._train_loader = None
        self._dispatch("on_fit_end")
        return self.history

    def stop(self, reason: str | None = None) -> None:
        """End the run after the current batch or epoch (as ``stop_training = True``),
        recording why (``history.stop_reason``; the default output prints it)."""
        self.stop_training = True
        if reason is not None:
            self.history.stop_reason = str(reason)

    def _gradient_steps(self, members: list) -> GradientSteps:
        hooks = []
        for cb in self._callbacks:
            fn = getattr(cb, "on_before_optimizer_step", None)
            if callable(fn) and getattr(type(cb), "on_before_optimizer_step", None) \
                    is not Callback.on_before_optimizer_step:
                hooks.append(lambda i, opt, fn=fn: fn(self, i, opt))
        per_batch = self.schedulers if self.scheduler_interval == "batch" else None
        if self._batched_run is not None:
            return BatchedSteps(self._batched_run, self.optimizers[0], self.loss_fn, self.step_settings,
                                scheduler=per_batch[0] if per_batch else None, before_step=hooks)
        return GradientSteps(members, self.optimizers, self.loss_fn, self.step_settings, scalers=self.scalers,
                             schedulers=per_batch, before_step=hooks)

    def _epoch(self, epoch: int, train, val, metrics: dict, evolve: EvolveSettings) -> None:
        self.epoch = epoch
        members, device, fmt = list(self.swarm), self.device, self.batch_format
        k = len(members)
        for m in members:
            m.train()
        self._dispatch("on_epoch_start", epoch)
        started = time.perf_counter()
        steps = self._gradient_steps(members)
        every, known = self.step_settings.accumulate, self.batches_per_epoch
        loss_sum = [0.0] * k
        metric_sum = {name: [0.0] * k for name in metrics}
        samples = batches = 0
        mass = 0.0
        history = self.history
        for batch_index, batch in enumerate(train):
            x, y, w = fmt.split(batch)
            x, y, w = to_device(x, device), to_device(y, device), to_device(w, device)
            n = sample_count(x, y)
            if batch_index % every == 0:
                steps.start_window(every if known is None else min(every, known - batch_index))
            step = (batch_index + 1) % every == 0 or batch_index + 1 == known
            losses = steps.batch(x, y, w, metrics, metric_sum, n, step)
            weight = loss_mass(w, n)
            for i in range(k):
                loss_sum[i] += losses[i] * weight
            mass += weight
            samples += n
            batches += 1
            self._world.record_batch(history, losses)
            done = self._world.batches_done(history)
            if evolve.due(done):  # distributed: the run's one synchronisation (sharded_apso_step)
                result = evolve.step(self.sharded, losses, self.generator)
                history.add_evolution(done, result.indices, result.best)
                self._dispatch("on_evolve", result)
            self._dispatch("on_batch_end", batch_index, losses)
            if self.stop_training:
                break
        if batches == 0:
            raise ValueError("train_loader yielded no batches")  # one without a len()
        steps.flush()
        record = {"epoch": epoch, "batches": batches, "samples": samples,
                  "train_loss": [s / mass for s in loss_sum]}
        for name, sums in metric_sum.items():
            record[f"train_{name}"] = [s / samples for s in sums]
        if val is not None:
            ev = measure(members, val, metrics, self.loss_fn, False, device, name="val_data",
                         autocast=self.step_settings.precision.autocast, batch_format=fmt,
                         forward=self._batched_forward())
            record["val_loss"] = ev.loss
            for name, values in ev.metrics.items():
                record[f"val_{name}"] = values
        if self.schedulers is not None:
            record["lr"] = member_learning_rates(self.optimizers, k)
            if self.scheduler_interval == "epoch":
                step_epoch(self.schedulers,
                           plateau_values(self.schedulers, record["val_loss" if val is not None else "train_loss"]))
        record = self._world.finish_epoch(record, history)  # the whole swarm's values
        record["best"] = best_of(record["val_loss" if val is not None else "train_loss"])
        record["seconds"] = time.perf_counter() - started
        history.add_epoch(record)
        self._dispatch("on_epoch_end", epoch, record)

    # ---------------------------------------------------------- evaluate / predict

    def evaluate(self, loader, metrics=None, *, loss=None, ensemble: bool = False) -> Evaluation:
        """Every member's sample-averaged loss and ``metrics`` on ``loader`` (or one
        ``(x, y)`` pair), in eval mode without gradients (members' train/eval modes and
        torch's global RNG are restored afterwards, so evaluating during training does
        not change the training run). ``loss`` defaults to the last ``fit``'s loss (else
        ``F.cross_entropy``). ``ensemble=True`` also scores the ensemble: the mean of
        the members' softmax probabilities, whose log goes to ``loss`` and ``metrics``
        (right for classification losses on logits or log-probabilities). Returns an
        :class:`Evaluation`."""
        data = reiterable(loader, "loader")
        if data is None:
            raise ValueError("loader must be given")
        check_batches(data, "loader", batch_format=self.batch_format)
        metrics = check_metrics(metrics)
        loss_fn = check_loss(loss, self.loss_fn)
        whole = bool(ensemble) and self._world.distributed  # the ensemble needs every member
        ev = measure(self._world.members(whole), data, metrics, loss_fn, bool(ensemble), self.device,
                     batch_format=self.batch_format, forward=None if whole else self._batched_forward())
        return ev if whole else self._world.evaluation(ev)

    @property
    def best_index(self) -> int:
        """The best particle (lowest validation loss, else lowest training loss) of the
        epoch whose weights the swarm holds: the latest epoch's, or after
        ``EarlyStopping(restore_best=True)`` the restored epoch's
        (:attr:`History.current_best`)."""
        if not self.history.records:
            raise ValueError("use='best': no epoch has been trained yet, so there is no best "
                             "particle; fit first or pass use=<member index>")
        return self.history.current_best

    def predict(self, loader, use="best") -> Tensor:
        """Outputs on ``loader``'s inputs (batches ``x`` or ``(x, ...)``), concatenated
        along dim 0, on the CPU, in eval mode without gradients (modes and torch's global
        RNG restored afterwards, as in :meth:`evaluate`).

        ``use``: ``"best"`` (the latest epoch's best particle's outputs), a member index
        (that member's outputs), ``"all"`` (every member's, stacked: ``[K, N, ...]``), or
        ``"ensemble"``: the mean over members of ``softmax(output, dim=1)`` — class
        probabilities ``[N, C]`` whose rows sum to 1, not logits."""
        use = check_use(use, len(self))
        if isinstance(loader, Tensor):
            loader = [loader]
        data = reiterable(loader, "loader")
        if data is None:
            raise ValueError("loader must be given")
        check_batches(data, "loader", pairs=False)
        whole = self._world.distributed  # the whole swarm, gathered on demand
        members = self._world.members(whole)
        chosen = members if use in ("ensemble", "all") else \
            [members[self.best_index if use == "best" else int(use)]]
        return predict_outputs(chosen, data, use, self.device, self.batch_format,
                               forward=self._batched_forward() if len(chosen) > 1 and not whole else None)

    def _batched_forward(self):
        """All members' forward at once when the trainer trains batched (None: one by one)."""
        run = self._batched_run
        if run is None or not run.model.current():
            return None
        return run.model.forward

    # ---------------------------------------------------------- checkpoints

    def checkpoint_state(self) -> dict:
        """What :meth:`save_checkpoint` writes (see :class:`Checkpoint`)."""
        if self.optimizers is None:
            raise ValueError("nothing to checkpoint: the trainer has no optimizers yet (call fit)")
        state = checkpoint_state(swarm=self.swarm, optimizers=self.optimizers, callbacks=self._callbacks,
                                 epoch=len(self.history.records), stopped=self.stop_training,
                                 generator=self.generator, loader=self._train_loader, history=self.history,
                                 schedulers=self.schedulers, scalers=self.scalers,
                                 precision=self.step_settings.precision.name)
        if self._batched_run is not None:  # per-member states, as a sequential run saves them
            state.update(batched_checkpoint_entries(self._batched_run, self.optimizers[0],
                                                    self.schedulers[0] if self.schedulers else None))
        return self._world.global_checkpoint(state)  # distributed: the whole swarm's (a collective)

    def save_checkpoint(self, path) -> str:
        """Write :meth:`checkpoint_state` with ``torch.save`` (to a temporary file, then
        renamed over ``path``, so an interrupted save leaves the last checkpoint
        intact). Returns the path."""
        return self._world.save(self.checkpoint_state(), path)  # distributed: rank 0 writes

    def resume(self, path) -> "SwarmTrainer":
        """Stage the checkpoint at ``path``: the next :meth:`fit` continues its run (as
        ``fit(..., resume_from=path)``). The swarm's parameters are loaded now (after
        checking that all of them fit; the rest is checked by that ``fit``)."""
        checkpoint = read_checkpoint(path, self.swarm, view=self._world.local_view)
        self.swarm.load_state_dict(checkpoint.state["swarm"])
        self._pending = checkpoint
        return self

    def _load_training_state(self, checkpoint: CheckpointFile, resumed: CheckedResume) -> int:
        """Load a checkpoint's swarm, optimizers, schedulers, scalers, generator and History (all checked by
        :func:`~nytorch_ext.train.checkpoints.check_resume`); return the epoch to continue from."""
        state = checkpoint.state
        self.swarm.load_state_dict(state["swarm"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        for objects, key in ((self.schedulers, "schedulers"), (self.scalers, "scalers")):
            for obj, s in zip(objects or [], state.get(key) or []):
                obj.load_state_dict(s)
        self.generator.set_state(state["generator"])
        self.history = resumed.history
        self.stop_training = bool(state["stopped"])
        return int(state["epoch"])

    def _load_callback_states(self, resumed: CheckedResume) -> None:
        for cb, s in resumed.callback_states:
            if callable(getattr(cb, "load_state_dict", None)):
                cb.load_state_dict(s)

    def __repr__(self) -> str:
        return f"SwarmTrainer({self.swarm!r}, device={str(self.device)!r})"
