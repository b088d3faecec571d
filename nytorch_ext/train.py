"""Training a swarm of particles: gradient descent on every member, APSO every few batches.

PyBlaze-style ergonomics (``fit`` / ``evaluate`` / ``predict``, callbacks, a History)
for the seed chapter's hybrid algorithm::

    import torch
    from nytorch_ext import ParticleModule
    from nytorch_ext.swarm import Swarm
    from nytorch_ext.train import SwarmTrainer, accuracy
    from nytorch_ext.callbacks import EarlyStopping, Checkpoint

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

Every batch, each member takes one gradient step with its own optimizer; every
``evolve_every`` batches (counted over the whole run) the swarm takes one in-place APSO
step (:meth:`Swarm.apso_step`) on that batch's losses, drawing its subset from the
trainer's own generator. Members keep their Parameter objects, so optimizer state
(momentum, Adam moments) carries across APSO steps.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .callbacks import ProgressBar
from .device import resolve_device
from .history import Evaluation, History, best_of
from .swarm import Swarm, _noise, _open_unit, _subset_size

__all__ = ["SwarmTrainer", "accuracy", "rng_state", "set_rng_state", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "nytorch_ext.SwarmTrainer/1"
_HOOKS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_evolve", "on_epoch_end", "on_fit_end")
_USES = ("best", "ensemble", "all")


def accuracy(pred: Tensor, target: Tensor) -> float:
    """The fraction of rows of ``pred`` (logits, log-probabilities or probabilities,
    classes on dim 1) whose argmax is ``target``."""
    return (pred.argmax(dim=1) == target).float().mean().item()


# ------------------------------------------------------------------ batches

def _to(obj, device):
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    return obj


def _split(batch) -> tuple:
    """(inputs, target) of a batch: a pair (or longer sequence) ``(x, y, ...)``."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"a batch must be a pair (inputs, target), got {type(batch).__name__}"
                     + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else ""))


def _inputs(batch):
    """The inputs of a batch given to predict: ``x`` or ``(x, ...)``."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _call(model, x):
    return model(*x) if isinstance(x, (list, tuple)) else model(x)


def _count(x, y) -> int:
    ref = y if isinstance(y, Tensor) and y.dim() > 0 else (x[0] if isinstance(x, (list, tuple)) else x)
    return int(ref.shape[0]) if isinstance(ref, Tensor) and ref.dim() > 0 else 1


def _batches(data, name: str):
    """A re-iterable source of batches: a loader / sequence of batches, or one (x, y) pair."""
    if data is None:
        return None
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        return [data]
    if isinstance(data, Iterator) or not isinstance(data, Iterable):
        raise ValueError(f"{name} must be re-iterable (a DataLoader, a list of batches or an "
                         f"(x, y) pair of tensors), not {type(data).__name__}")
    return data


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _metrics(metrics, name: str = "metrics") -> dict:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise TypeError(f"{name} must be a dict of name -> callable(pred, target), got {type(metrics).__name__}")
    for key, fn in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name}: keys must be non-empty strings, got {key!r}")
        if key == "loss":
            raise ValueError(f"{name}: 'loss' is reserved for the loss function")
        if not callable(fn):
            raise TypeError(f"{name}[{key!r}] must be callable(pred, target) -> float")
    return dict(metrics)


def _float(value) -> float:
    return value.item() if isinstance(value, Tensor) else float(value)


# ------------------------------------------------------------------ RNG state

def _loader_generators(loader) -> list:
    """The torch.Generators a loader draws its order from (its own, its samplers')."""
    found, seen = [], set()
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and id(g) not in seen:
            seen.add(id(g))
            found.append(g)
    return found


def rng_state(loader=None) -> dict:
    """torch (CPU and, when initialized, CUDA), Python ``random`` and NumPy RNG states,
    plus the states of ``loader``'s own generators."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "loader": [g.get_state() for g in _loader_generators(loader)] if loader is not None else []}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    return state


def set_rng_state(state: dict, loader=None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np
        np.random.set_state(state["numpy"])
    if loader is not None:
        generators = _loader_generators(loader)
        if len(generators) != len(state["loader"]):
            raise ValueError(f"resume: the train loader has {len(generators)} generator(s), the "
                             f"checkpoint's had {len(state['loader'])}; resume with the same kind of loader")
        for g, s in zip(generators, state["loader"]):
            g.set_state(s)


# ------------------------------------------------------------------ the trainer

class SwarmTrainer:
    """Trains every member of a :class:`Swarm` by gradient descent and evolves the
    swarm by APSO.

    ``swarm``: a Swarm or a sequence of particles of one species (made into a Swarm).
    ``device``: see :func:`nytorch_ext.device.resolve_device` (``"auto"``: the CUDA GPU
    with the most free memory, else the CPU); the swarm is moved there.
    ``seed``: seeds the trainer's APSO generator (drawn from torch's global RNG when
    None, so ``torch.manual_seed`` before building the trainer reproduces a run).

    Attributes: ``swarm``, ``device``, ``generator`` (the APSO subset draws),
    ``optimizers`` (one per member, after ``fit``), ``history`` (the latest run),
    ``epoch`` (0-based current epoch), ``epochs`` (the run's total), ``stop_training``,
    ``log_keys``, ``batches_per_epoch``."""

    def __init__(self, swarm, device="auto", *, seed: int | None = None) -> None:
        self.swarm = swarm if isinstance(swarm, Swarm) else Swarm(swarm)
        self.device = resolve_device(device)
        if any(p.device != self.device for m in self.swarm for p in m.parameters()):
            self.swarm.to(self.device)
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.generator = torch.Generator().manual_seed(int(seed))
        self.optimizers: list | None = None
        self.loss_fn: Callable = F.cross_entropy
        self.history = History(len(self.swarm))
        self.epoch = 0
        self.epochs = 0
        self.stop_training = False
        self.log_keys: list[str] = []
        self.batches_per_epoch: int | None = None
        self._callbacks: list = []
        self._train_loader = None
        self._pending: dict | None = None

    def __len__(self) -> int:
        return len(self.swarm)

    # ---------------------------------------------------------- arguments

    def _make_optimizers(self, optimizer) -> list:
        k = len(self.swarm)
        if optimizer is None:
            if self.optimizers is not None:
                return self.optimizers
            optimizer = lambda params: torch.optim.SGD(params, lr=0.01)  # noqa: E731  (the seed's)
        if isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError("optimizer must be a factory (e.g. lambda params: torch.optim.SGD(params, "
                            "lr=0.01)) or one optimizer per member, not a single optimizer")
        if callable(optimizer):
            made = [optimizer(m.parameters()) for m in self.swarm]
            if not all(isinstance(o, torch.optim.Optimizer) for o in made):
                raise TypeError("optimizer factory must return a torch.optim.Optimizer")
            return made
        if isinstance(optimizer, Sequence) and not isinstance(optimizer, str):
            if len(optimizer) != k or not all(isinstance(o, torch.optim.Optimizer) for o in optimizer):
                raise ValueError(f"optimizer: a list must hold one torch.optim.Optimizer per member ({k})")
            for i, (o, m) in enumerate(zip(optimizer, self.swarm)):
                params = {id(p) for g in o.param_groups for p in g["params"]}
                if not params <= {id(p) for p in m.parameters()}:
                    raise ValueError(f"optimizer[{i}] holds parameters that are not member {i}'s")
            return list(optimizer)
        raise TypeError(f"optimizer must be a factory, a list of optimizers or None, "
                        f"got {type(optimizer).__name__}")

    def _callback_list(self, callbacks, progress) -> list:
        if callbacks is None:
            callbacks = []
        if not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, dict)):
            raise TypeError(f"callbacks must be a list of callbacks, got {type(callbacks).__name__}")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not any(callable(getattr(cb, h, None)) for h in _HOOKS):
                raise TypeError(f"callbacks: {type(cb).__name__} has none of the hooks {_HOOKS}")
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None, got {progress!r}")
        want = sys.stderr.isatty() if progress is None else progress
        if want and not any(isinstance(cb, ProgressBar) for cb in callbacks):
            callbacks.append(ProgressBar())
        if progress is False:
            callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
        return sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))  # stable

    def _dispatch(self, hook: str, *args) -> None:
        for cb in self._callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    # ---------------------------------------------------------- fit

    def fit(self, train_loader, val_data=None, epochs: int = 1, optimizer=None, loss=None, *,
            evolve_every: int | None = 16, alpha: float = 0.5, subset_size: int | None = 6,
            noise: float = 0.0, replace: bool = True, callbacks=None, metrics=None,
            progress: bool | None = None, resume_from=None) -> History:
        """Train the swarm for ``epochs`` epochs and return the run's :class:`History`.

        ``train_loader``: re-iterable batches ``(x, y)`` (a DataLoader, a list).
        ``val_data``: None, a loader, or one ``(x, y)`` pair of tensors; evaluated after
        every epoch (``val_loss``, ``val_<metric>`` per particle).
        ``optimizer``: a factory ``params -> Optimizer`` called once per member, a list of
        one optimizer per member, or None (keep the trainer's optimizers from the previous
        run; the seed's ``SGD(lr=0.01)`` if there are none).
        ``loss``: ``loss(output, target)`` -> a scalar tensor averaged over the batch
        (default ``F.cross_entropy``, which also fits models ending in ``log_softmax``).
        ``evolve_every``: APSO every that many batches (counted over the run; 0 or None:
        never). ``alpha``, ``subset_size``, ``noise``, ``replace``: the APSO step's
        (see :func:`nytorch_ext.swarm.apso_step`). A member whose loss is NaN counts as
        the worst in the step.
        ``metrics``: name -> ``fn(output, target)`` -> float, a batch mean (e.g.
        :func:`accuracy`); logged as ``train_<name>`` (on the training forward passes) and
        ``val_<name>``.
        ``callbacks``: see :mod:`nytorch_ext.callbacks`. ``progress``: None = a progress
        bar when stderr is a terminal; True / False force it on / off.
        ``resume_from``: a checkpoint written by :class:`Checkpoint` /
        :meth:`save_checkpoint`; the run continues from the epoch after it up to
        ``epochs`` in total (so the same call restarts an interrupted job), with the same
        arguments as the run that wrote it. Without it, each ``fit`` starts a new run
        (epoch 0, a new History).

        Every argument is checked (``ValueError`` / ``TypeError`` naming it) before any
        training, and callbacks' ``on_fit_start`` runs before the first batch."""
        train = _batches(train_loader, "train_loader")
        if train is None:
            raise ValueError("train_loader must be given")
        val = _batches(val_data, "val_data")
        epochs = _positive_int(epochs, "epochs")
        if evolve_every is None:
            evolve_every = 0
        evolve_every = _positive_int(evolve_every, "evolve_every", 0)
        alpha = _open_unit(alpha, "alpha")
        if evolve_every:
            subset_size = _subset_size(subset_size, len(self.swarm))
        noise = _noise(noise)
        if not isinstance(replace, bool):
            raise TypeError(f"replace must be a bool, got {type(replace).__name__}")
        metrics = _metrics(metrics)
        loss_fn = F.cross_entropy if loss is None else loss
        if not callable(loss_fn):
            raise TypeError(f"loss must be callable(output, target), got {type(loss).__name__}")
        checkpoint = self._pending
        if resume_from is not None:
            checkpoint = self._read_checkpoint(resume_from)
        callbacks = self._callback_list(callbacks, progress)
        optimizers = self._make_optimizers(optimizer)

        self._pending = None
        self.optimizers = optimizers
        self.loss_fn = loss_fn
        self._callbacks = callbacks
        self._train_loader = train_loader
        self.epochs = epochs
        self.stop_training = False
        self.history = History(len(self.swarm))
        self.log_keys = ["train_loss"] + [f"train_{m}" for m in metrics]
        if val is not None:
            self.log_keys += ["val_loss"] + [f"val_{m}" for m in metrics]
        try:
            self.batches_per_epoch = len(train)
        except TypeError:
            self.batches_per_epoch = None
        start = 0
        if checkpoint is not None:
            start = self._load_training_state(checkpoint)
        self._dispatch("on_fit_start")
        if checkpoint is not None:
            self._load_callback_states(checkpoint)
            set_rng_state(checkpoint["rng"], train_loader)
        try:
            for epoch in range(start, epochs):
                if self.stop_training:
                    break
                self._epoch(epoch, train, val, metrics, evolve_every, alpha, subset_size, noise, replace)
        finally:
            self._train_loader = None
        self._dispatch("on_fit_end")
        return self.history

    def _epoch(self, epoch, train, val, metrics, evolve_every, alpha, subset_size, noise, replace) -> None:
        self.epoch = epoch
        members, optimizers, loss_fn, device = list(self.swarm), self.optimizers, self.loss_fn, self.device
        k = len(members)
        for m in members:
            m.train()
        self._dispatch("on_epoch_start", epoch)
        started = time.perf_counter()
        loss_sum = [0.0] * k
        metric_sum = {name: [0.0] * k for name in metrics}
        samples = batches = 0
        history = self.history
        for batch_index, batch in enumerate(train):
            x, y = _split(batch)
            x, y = _to(x, device), _to(y, device)
            n = _count(x, y)
            step_losses = []
            for i in range(k):
                opt = optimizers[i]
                opt.zero_grad()
                out = _call(members[i], x)
                value = loss_fn(out, y)
                value.backward()
                opt.step()
                step_losses.append(value.detach())
                for name, fn in metrics.items():
                    metric_sum[name][i] += _float(fn(out.detach(), y)) * n
            losses = torch.stack(step_losses).tolist()
            for i in range(k):
                loss_sum[i] += losses[i] * n
            samples += n
            batches += 1
            history.add_batch(losses)
            if evolve_every and len(history.batch_loss) % evolve_every == 0:
                clean = [math.inf if math.isnan(v) else v for v in losses]
                result = self.swarm.apso_step(clean, alpha, subset_size, noise=noise, replace=replace,
                                              generator=self.generator)
                history.add_evolution(len(history.batch_loss), result.indices, result.best)
                self._dispatch("on_evolve", result)
            self._dispatch("on_batch_end", batch_index, losses)
            if self.stop_training:
                break
        if batches == 0:
            raise ValueError("train_loader yielded no batches")
        record = {"epoch": epoch, "batches": batches, "samples": samples,
                  "train_loss": [s / samples for s in loss_sum]}
        for name, sums in metric_sum.items():
            record[f"train_{name}"] = [s / samples for s in sums]
        if val is not None:
            ev = self._measure(val, metrics, loss_fn, ensemble=False)
            record["val_loss"] = ev.loss
            for name, values in ev.metrics.items():
                record[f"val_{name}"] = values
        record["best"] = best_of(record["val_loss" if val is not None else "train_loss"])
        record["seconds"] = time.perf_counter() - started
        history.add_epoch(record)
        self._dispatch("on_epoch_end", epoch, record)

    # ---------------------------------------------------------- evaluate / predict

    def _measure(self, data, metrics: dict, loss_fn, ensemble: bool) -> Evaluation:
        members = list(self.swarm)
        k = len(members)
        loss_sum = [0.0] * k
        metric_sum = {name: [0.0] * k for name in metrics}
        ens_sum = {name: 0.0 for name in ["loss", *metrics]}
        samples = 0
        with _inference(members):
            for batch in data:
                x, y = _split(batch)
                x, y = _to(x, self.device), _to(y, self.device)
                n = _count(x, y)
                outs = [_call(m, x) for m in members]
                values = [loss_fn(out, y) for out in outs]
                for i, v in enumerate(torch.stack([v.detach().float() for v in values]).tolist()):
                    loss_sum[i] += v * n
                for name, fn in metrics.items():
                    for i, out in enumerate(outs):
                        metric_sum[name][i] += _float(fn(out, y)) * n
                if ensemble:
                    log_mean = _log_mean_softmax(outs)
                    ens_sum["loss"] += _float(loss_fn(log_mean, y)) * n
                    for name, fn in metrics.items():
                        ens_sum[name] += _float(fn(log_mean, y)) * n
                samples += n
        if samples == 0:
            raise ValueError("the evaluation data yielded no batches")
        losses = [s / samples for s in loss_sum]
        return Evaluation(loss=losses, metrics={name: [s / samples for s in sums] for name, sums in metric_sum.items()},
                          best=best_of(losses), samples=samples,
                          ensemble={name: s / samples for name, s in ens_sum.items()} if ensemble else None)

    def evaluate(self, loader, metrics=None, *, loss=None, ensemble: bool = False) -> Evaluation:
        """Every member's sample-averaged loss and ``metrics`` on ``loader`` (or one
        ``(x, y)`` pair), in eval mode without gradients (members' train/eval modes and
        torch's global RNG are restored afterwards, so evaluating during training does
        not change the training run). ``loss`` defaults to the last ``fit``'s loss (else
        ``F.cross_entropy``). ``ensemble=True`` also scores the ensemble: the mean of
        the members' softmax probabilities, whose log goes to ``loss`` and ``metrics``
        (right for classification losses on logits or log-probabilities). Returns an
        :class:`Evaluation`."""
        data = _batches(loader, "loader")
        if data is None:
            raise ValueError("loader must be given")
        metrics = _metrics(metrics)
        loss_fn = self.loss_fn if loss is None else loss
        if not callable(loss_fn):
            raise TypeError(f"loss must be callable(output, target), got {type(loss).__name__}")
        return self._measure(data, metrics, loss_fn, bool(ensemble))

    @property
    def best_index(self) -> int:
        """The latest epoch's best particle (lowest validation loss, else lowest training loss)."""
        if not self.history.records:
            raise ValueError("use='best': no epoch has been trained yet, so there is no best "
                             "particle; fit first or pass use=<member index>")
        return self.history.records[-1]["best"]

    def predict(self, loader, use="best") -> Tensor:
        """Outputs on ``loader``'s inputs (batches ``x`` or ``(x, ...)``), concatenated
        along dim 0, on the CPU, in eval mode without gradients (modes and torch's global
        RNG restored afterwards, as in :meth:`evaluate`).

        ``use``: ``"best"`` (the latest epoch's best particle's outputs), a member index
        (that member's outputs), ``"all"`` (every member's, stacked: ``[K, N, ...]``), or
        ``"ensemble"``: the mean over members of ``softmax(output, dim=1)`` — class
        probabilities ``[N, C]`` whose rows sum to 1, not logits."""
        if isinstance(use, bool) or not (use in _USES or isinstance(use, numbers.Integral)):
            raise ValueError(f"use must be 'best', 'ensemble', 'all' or a member index, got {use!r}")
        if isinstance(use, numbers.Integral) and not -len(self.swarm) <= use < len(self.swarm):
            raise ValueError(f"use={use} is not a member index of a swarm of {len(self.swarm)}")
        if isinstance(loader, Tensor):
            loader = [loader]
        data = _batches(loader, "loader")
        members = list(self.swarm)
        chosen = members if use in ("ensemble", "all") else \
            [members[self.best_index if use == "best" else int(use)]]
        pieces = []
        with _inference(chosen):
            for batch in data:
                x = _to(_inputs(batch), self.device)
                outs = [_call(m, x) for m in chosen]
                if use == "ensemble":
                    pieces.append(_log_mean_softmax(outs).exp().cpu())
                elif use == "all":
                    pieces.append(torch.stack(outs).cpu())
                else:
                    pieces.append(outs[0].cpu())
        if not pieces:
            raise ValueError("loader yielded no batches")
        return torch.cat(pieces, dim=1 if use == "all" else 0)

    # ---------------------------------------------------------- checkpoints

    def checkpoint_state(self) -> dict:
        """What :meth:`save_checkpoint` writes (see :class:`Checkpoint`)."""
        if self.optimizers is None:
            raise ValueError("nothing to checkpoint: the trainer has no optimizers yet (call fit)")
        callbacks = {}
        for i, cb in enumerate(self._callbacks):
            if callable(getattr(cb, "state_dict", None)):
                callbacks[f"{i}:{type(cb).__name__}"] = cb.state_dict()
        return {"format": CHECKPOINT_FORMAT, "size": len(self.swarm),
                "epoch": len(self.history.records), "stopped": self.stop_training,
                "swarm": self.swarm.state_dict(),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "generator": self.generator.get_state(),
                "rng": rng_state(self._train_loader),
                "history": self.history.to_dict(),
                "callbacks": callbacks}

    def save_checkpoint(self, path) -> str:
        """Write :meth:`checkpoint_state` with ``torch.save`` (to a temporary file, then
        renamed over ``path``). Returns the path."""
        path = os.fspath(path)
        state = self.checkpoint_state()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def _read_checkpoint(self, path) -> dict:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume_from: no checkpoint at {path!r}")
        # RNG states include Python and NumPy objects: only load checkpoints you trust.
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"resume_from: {path!r} is not a SwarmTrainer checkpoint")
        if state["size"] != len(self.swarm):
            raise ValueError(f"resume_from: the checkpoint holds {state['size']} members, "
                             f"this swarm has {len(self.swarm)}")
        return state

    def resume(self, path) -> "SwarmTrainer":
        """Stage the checkpoint at ``path``: the next :meth:`fit` continues its run (as
        ``fit(..., resume_from=path)``). The swarm's parameters are loaded now."""
        state = self._read_checkpoint(path)
        self.swarm.load_state_dict(state["swarm"])
        self._pending = state
        return self

    def _load_training_state(self, state: dict) -> int:
        """Load a checkpoint's swarm, optimizer, generator and History; return the
        epoch to continue from."""
        self.swarm.load_state_dict(state["swarm"])
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError("resume_from: the checkpoint's optimizer count does not match the swarm")
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        self.generator.set_state(state["generator"])
        self.history = History.from_dict(state["history"])
        self.stop_training = bool(state["stopped"])
        return int(state["epoch"])

    def _load_callback_states(self, state: dict) -> None:
        saved = state["callbacks"]
        for i, cb in enumerate(self._callbacks):
            key = f"{i}:{type(cb).__name__}"
            if key in saved and callable(getattr(cb, "load_state_dict", None)):
                cb.load_state_dict(saved[key])

    def __repr__(self) -> str:
        return f"SwarmTrainer({self.swarm!r}, device={str(self.device)!r})"


@contextlib.contextmanager
def _inference(members: list):
    """Eval mode and no gradients for ``members``; afterwards their train/eval modes and
    torch's global CPU RNG are as before (iterating a DataLoader draws a seed from it,
    so without this, evaluating during training would change the next epoch's shuffle)."""
    modes = [m.training for m in members]
    rng = torch.get_rng_state()
    try:
        for m in members:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(members, modes):
            m.train(mode)
        torch.set_rng_state(rng)


def _log_mean_softmax(outs: list) -> Tensor:
    """log(mean_k softmax(outs[k], dim=1)): the ensemble's log-probabilities."""
    stacked = torch.stack([F.log_softmax(o.float(), dim=1) for o in outs])
    return torch.logsumexp(stacked, dim=0) - math.log(len(outs))

