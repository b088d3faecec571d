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
from ..swarm.swarm import Swarm, _noise, _open_unit, _subset_size

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


def _check_batches(data, name: str, pairs: bool = True):
    """What can be checked of ``data`` before training without iterating it: its
    ``len()`` (0 raises; returned, None when it has none) and, for a list or tuple of
    batches, that every batch is an ``(x, y)`` pair (``pairs``)."""
    if data is None:
        return None
    try:
        n = len(data)
    except TypeError:
        return None
    if n == 0:
        raise ValueError(f"{name} is empty (it has no batches)")
    if pairs and isinstance(data, (list, tuple)):
        for i, batch in enumerate(data):
            try:
                _split(batch)
            except ValueError as e:
                raise ValueError(f"{name}[{i}]: {e}") from None
    return n


def _fit_subset_size(subset_size, size: int) -> int:
    """fit's ``subset_size``: "auto" = min(6, K); None = K; else an int in 1..K."""
    if isinstance(subset_size, str):
        if subset_size != "auto":
            raise ValueError(f"subset_size must be 'auto', an int or None, got {subset_size!r}")
        return min(6, size)
    return _subset_size(subset_size, size)


# ------------------------------------------------------------------ checkpoints

_CHECKPOINT_KEYS = ("size", "epoch", "stopped", "swarm", "optimizers", "generator", "rng", "history",
                    "callbacks")
# torch.optim optimizers whose per-parameter state tensors have the parameter's shape
_ELEMENTWISE = {"SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Rprop", "Adagrad",
                "Adadelta", "ASGD"}
# param-group entries that differ between torch versions (filled in by Optimizer.__setstate__)
# or are added by LR schedulers: not evidence of another kind of optimizer
_VERSION_FLAGS = {"foreach", "maximize", "capturable", "differentiable", "fused", "decoupled_weight_decay",
                  "initial_lr"}


class _Checkpoint:
    """A checkpoint read by :meth:`SwarmTrainer._read_checkpoint`: its path and state."""
    __slots__ = ("path", "state")

    def __init__(self, path: str, state: dict) -> None:
        self.path, self.state = path, state


def _class_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _optimizer_mismatch(opt, saved, saved_class) -> str | None:
    """Why ``opt.load_state_dict(saved)`` would fail or load a state of another
    optimizer (None when it fits)."""
    if saved_class is not None and saved_class != _class_name(opt):
        return f"the checkpoint's optimizer is {saved_class}, this run's is {_class_name(opt)}"
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), (list, tuple)):
        return "the saved state is not an optimizer state_dict"
    groups = opt.param_groups
    if len(saved["param_groups"]) != len(groups):
        return (f"the checkpoint's optimizer has {len(saved['param_groups'])} parameter group(s), "
                f"this run's {type(opt).__name__} has {len(groups)}")
    params = {}
    for j, (g, sg) in enumerate(zip(groups, saved["param_groups"])):
        if not isinstance(sg, dict) or not isinstance(sg.get("params"), (list, tuple)):
            return f"param_groups[{j}] is not a parameter group"
        if len(sg["params"]) != len(g["params"]):
            return (f"param_groups[{j}] holds {len(sg['params'])} parameters in the checkpoint, "
                    f"{len(g['params'])} here")
        ours, theirs = set(g) - {"params"}, set(sg) - {"params"}
        if (theirs ^ ours) - _VERSION_FLAGS:
            return (f"the checkpoint's optimizer ({saved_class or 'of unrecorded class'}) has the settings "
                    f"{sorted(theirs)}, this run's {type(opt).__name__} has {sorted(ours)}: another kind "
                    f"of optimizer")
        params.update(zip(sg["params"], g["params"]))
    for key, value in saved["state"].items():
        if key not in params:
            return f"the saved state is for parameter {key!r}, which no parameter group holds"
        if not isinstance(value, dict):
            return f"the saved state of parameter {key!r} is not a dict"
        if type(opt).__module__.startswith("torch.optim") and type(opt).__name__ in _ELEMENTWISE:
            p = params[key]
            for name, v in value.items():
                if isinstance(v, Tensor) and v.dim() > 0 and v.shape != p.shape:
                    return (f"the saved {name!r} of parameter {key!r} has shape {tuple(v.shape)}, "
                            f"the parameter {tuple(p.shape)}")
    return None


def _check_rng_state(rng, loader, refuse) -> None:
    """``set_rng_state(rng, loader)`` would succeed (checked on throwaway generators)."""
    if not isinstance(rng, dict) or "torch" not in rng or "python" not in rng:
        refuse("the RNG states are not valid (no torch / python state)")
    try:
        torch.Generator().set_state(rng["torch"])
        random.Random().setstate(rng["python"])
        if "numpy" in rng:
            import numpy as np
            np.random.RandomState().set_state(rng["numpy"])
        for s in rng.get("loader", []):
            torch.Generator().set_state(s)
    except (TypeError, RuntimeError, ValueError, ImportError) as e:
        refuse(f"the RNG states are not valid ({type(e).__name__}: {e})")
    generators = _loader_generators(loader)
    if len(generators) != len(rng.get("loader", [])):
        refuse(f"the train loader has {len(generators)} generator(s), the checkpoint's had "
               f"{len(rng.get('loader', []))}; resume with the same kind of loader")
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) > torch.cuda.device_count():
        refuse(f"the checkpoint holds the RNG states of {len(rng['cuda'])} CUDA devices, "
               f"this machine has {torch.cuda.device_count()}")


def _match_callback_states(callbacks: list, saved: dict) -> list:
    """(callback, saved state) pairs: saved keys are ``"<index>:<ClassName>"``; the
    n-th saved state of a class goes to the n-th callback of that class that has a
    state (so a progress bar added or not does not shift them)."""
    def position(key) -> int:
        index = str(key).split(":", 1)[0]
        return int(index) if index.isdigit() else -1

    by_class: dict = {}
    for key in sorted(saved, key=position):
        by_class.setdefault(str(key).split(":", 1)[-1], []).append(saved[key])
    pairs, seen = [], {}
    for cb in callbacks:
        if not callable(getattr(cb, "state_dict", None)):
            continue
        name = type(cb).__name__
        rank = seen.get(name, 0)
        seen[name] = rank + 1
        states = by_class.get(name, [])
        if rank < len(states):
            pairs.append((cb, states[rank]))
    return pairs


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
    ``device``: see :func:`nytorch_ext.train.device.resolve_device` (``"auto"``: the CUDA GPU
    with the most free memory, else the CPU); the swarm is moved there.
    ``seed``: seeds the trainer's APSO generator (drawn from torch's global RNG when
    None, so ``torch.manual_seed`` before building the trainer reproduces a run).

    Attributes: ``swarm``, ``device``, ``generator`` (the APSO subset draws),
    ``optimizers`` (one per member, after ``fit``), ``history`` (the latest run),
    ``epoch`` (0-based current epoch), ``epochs`` (the run's total), ``stop_training``,
    ``log_keys``, ``batches_per_epoch``."""

    def __init__(self, swarm, device="auto", *, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        device = resolve_device(device)  # before the swarm is built or moved
        self.swarm = swarm if isinstance(swarm, Swarm) else Swarm(swarm)
        self.device = device
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
            evolve_every: int | None = 16, alpha: float = 0.5, subset_size: int | str | None = "auto",
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
        (see :func:`nytorch_ext.swarm.apso_step`). ``subset_size``: ``"auto"`` (the
        default) draws ``min(6, K)`` members, the seed's 6 capped at the swarm size, so
        the default fits any swarm; None draws K (as ``apso_step``); an int must be in
        1..K. A member whose loss is NaN counts as the worst in the step.
        ``metrics``: name -> ``fn(output, target)`` -> float, a batch mean (e.g.
        :func:`accuracy`); logged as ``train_<name>`` (on the training forward passes) and
        ``val_<name>``.
        ``callbacks``: see :mod:`nytorch_ext.train.callbacks`. ``progress``: None = a progress
        bar when stderr is a terminal; True / False force it on / off.
        ``resume_from``: a checkpoint written by :class:`Checkpoint` /
        :meth:`save_checkpoint`; the run continues from the epoch after it up to
        ``epochs`` in total (so the same call restarts an interrupted job), with the same
        arguments as the run that wrote it. Without it, each ``fit`` starts a new run
        (epoch 0, a new History).

        Every argument is checked (``ValueError`` / ``TypeError`` naming it) before any
        training or any change to the swarm or the trainer: loaders known to be empty,
        the callbacks (their ``check_fit``: an ``EarlyStopping`` monitor this run does not
        log, a ``Checkpoint`` path that cannot be written) and the whole checkpoint to
        resume from (the swarm's keys and shapes, the optimizers' classes and state, the
        callbacks' states, the RNG states): a checkpoint that does not fit raises and
        loads nothing. Then callbacks' ``on_fit_start`` runs, before the first batch."""
        train = _batches(train_loader, "train_loader")
        if train is None:
            raise ValueError("train_loader must be given")
        val = _batches(val_data, "val_data")
        batches_per_epoch = _check_batches(train, "train_loader")
        _check_batches(val, "val_data")
        epochs = _positive_int(epochs, "epochs")
        if evolve_every is None:
            evolve_every = 0
        evolve_every = _positive_int(evolve_every, "evolve_every", 0)
        alpha = _open_unit(alpha, "alpha")
        if evolve_every:
            subset_size = _fit_subset_size(subset_size, len(self.swarm))
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
        log_keys = ["train_loss"] + [f"train_{m}" for m in metrics]
        if val is not None:
            log_keys += ["val_loss"] + [f"val_{m}" for m in metrics]
        for cb in callbacks:
            check = getattr(cb, "check_fit", None)
            if callable(check):
                check(self, log_keys=list(log_keys), epochs=epochs)
        loaded = None
        if checkpoint is not None:
            loaded = self._check_checkpoint(checkpoint, optimizers, callbacks, train_loader)

        # ---- everything is checked: from here on the run is applied
        self._pending = None
        self.optimizers = optimizers
        self.loss_fn = loss_fn
        self._callbacks = callbacks
        self._train_loader = train_loader
        self.epochs = epochs
        self.stop_training = False
        self.history = History(len(self.swarm))
        self.log_keys = log_keys
        self.batches_per_epoch = batches_per_epoch
        start = 0
        if checkpoint is not None:
            start = self._load_training_state(checkpoint, loaded)
        self._dispatch("on_fit_start")
        if checkpoint is not None:
            self._load_callback_states(loaded)
            set_rng_state(checkpoint.state["rng"], train_loader)
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
            raise ValueError("train_loader yielded no batches")  # one without a len()
        record = {"epoch": epoch, "batches": batches, "samples": samples,
                  "train_loss": [s / samples for s in loss_sum]}
        for name, sums in metric_sum.items():
            record[f"train_{name}"] = [s / samples for s in sums]
        if val is not None:
            ev = self._measure(val, metrics, loss_fn, ensemble=False, name="val_data")
            record["val_loss"] = ev.loss
            for name, values in ev.metrics.items():
                record[f"val_{name}"] = values
        record["best"] = best_of(record["val_loss" if val is not None else "train_loss"])
        record["seconds"] = time.perf_counter() - started
        history.add_epoch(record)
        self._dispatch("on_epoch_end", epoch, record)

    # ---------------------------------------------------------- evaluate / predict

    def _measure(self, data, metrics: dict, loss_fn, ensemble: bool, name: str = "loader") -> Evaluation:
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
            raise ValueError(f"{name} yielded no batches")
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
        _check_batches(data, "loader")
        metrics = _metrics(metrics)
        loss_fn = self.loss_fn if loss is None else loss
        if not callable(loss_fn):
            raise TypeError(f"loss must be callable(output, target), got {type(loss).__name__}")
        return self._measure(data, metrics, loss_fn, bool(ensemble))

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
        if isinstance(use, bool) or not (use in _USES or isinstance(use, numbers.Integral)):
            raise ValueError(f"use must be 'best', 'ensemble', 'all' or a member index, got {use!r}")
        if isinstance(use, numbers.Integral) and not -len(self.swarm) <= use < len(self.swarm):
            raise ValueError(f"use={use} is not a member index of a swarm of {len(self.swarm)}")
        if isinstance(loader, Tensor):
            loader = [loader]
        data = _batches(loader, "loader")
        if data is None:
            raise ValueError("loader must be given")
        _check_batches(data, "loader", pairs=False)
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
                "optimizer_classes": [_class_name(o) for o in self.optimizers],
                "generator": self.generator.get_state(),
                "rng": rng_state(self._train_loader),
                "history": self.history.to_dict(),
                "callbacks": callbacks}

    def save_checkpoint(self, path) -> str:
        """Write :meth:`checkpoint_state` with ``torch.save`` (to a temporary file, then
        renamed over ``path``, so an interrupted save leaves the last checkpoint
        intact). Returns the path."""
        path = os.fspath(path)
        state = self.checkpoint_state()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return path

    def _read_checkpoint(self, path) -> "_Checkpoint":
        """The checkpoint at ``path``, read and checked against this swarm (its size,
        keys and shapes); errors name the file. Changes nothing."""
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            raise TypeError(f"resume_from must be a path (str or os.PathLike), got {type(path).__name__}") from None
        if os.path.isdir(path):
            raise ValueError(f"resume_from: {path!r} is a directory, not a checkpoint file")
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume_from: no checkpoint at {path!r}")
        if os.path.getsize(path) == 0:
            raise ValueError(f"resume_from: the checkpoint {path!r} is empty (0 bytes): an interrupted "
                             f"write or not a checkpoint")
        # RNG states include Python and NumPy objects: only load checkpoints you trust.
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"resume_from: cannot read the checkpoint {path!r}: it is truncated, corrupt "
                             f"or not a torch.save file ({type(e).__name__}: {e})") from e
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"resume_from: {path!r} is not a SwarmTrainer checkpoint")
        missing = [k for k in _CHECKPOINT_KEYS if k not in state]
        if missing:
            raise ValueError(f"resume_from: the checkpoint {path!r} is incomplete (missing {missing})")
        if state["size"] != len(self.swarm):
            raise ValueError(f"resume_from: the checkpoint {path!r} holds {state['size']} members, "
                             f"this swarm has {len(self.swarm)}")
        try:
            self.swarm.check_state_dict(state["swarm"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"resume_from: the checkpoint {path!r} does not fit this swarm: {e}") from None
        return _Checkpoint(path, state)

    def resume(self, path) -> "SwarmTrainer":
        """Stage the checkpoint at ``path``: the next :meth:`fit` continues its run (as
        ``fit(..., resume_from=path)``). The swarm's parameters are loaded now (after
        checking that all of them fit; the rest is checked by that ``fit``)."""
        checkpoint = self._read_checkpoint(path)
        self.swarm.load_state_dict(checkpoint.state["swarm"])
        self._pending = checkpoint
        return self

    def _check_checkpoint(self, checkpoint: "_Checkpoint", optimizers: list, callbacks: list,
                          loader) -> dict:
        """Everything ``fit`` would load from ``checkpoint`` checked against this run
        (optimizers, generator, History, callbacks' states, RNG states), before any of it
        is applied; returns what to apply (the History made, the callbacks' states)."""
        path, state = checkpoint.path, checkpoint.state

        def refuse(message, cls=ValueError):
            raise cls(f"resume_from {path!r}: {message}")

        # optimizers: count, classes, param groups, per-parameter state
        saved = state["optimizers"]
        if not isinstance(saved, (list, tuple)) or len(saved) != len(optimizers):
            refuse(f"the checkpoint holds {len(saved) if isinstance(saved, (list, tuple)) else '?'} "
                   f"optimizer states, this run has {len(optimizers)} optimizers")
        classes = state.get("optimizer_classes")  # absent in older checkpoints
        if not isinstance(classes, (list, tuple)) or len(classes) != len(optimizers):
            classes = [None] * len(optimizers)
        for i, (opt, s) in enumerate(zip(optimizers, saved)):
            problem = _optimizer_mismatch(opt, s, classes[i])
            if problem:
                refuse(f"optimizer[{i}]: {problem}; resume with the optimizer of the run that wrote the "
                       f"checkpoint (to change optimizers, load only the weights: "
                       f"trainer.swarm.load_state_dict(torch.load(path, weights_only=False)['swarm']))")
        # the trainer's generator and the RNG states: set on throwaway objects
        try:
            torch.Generator().set_state(state["generator"])
        except (TypeError, RuntimeError, ValueError) as e:
            refuse(f"the APSO generator state is not valid ({e})")
        _check_rng_state(state["rng"], loader, refuse)
        if isinstance(state["epoch"], bool) or not isinstance(state["epoch"], numbers.Integral) \
                or state["epoch"] < 0 or not isinstance(state["stopped"], bool):
            refuse("the epoch counter or the stop flag is not valid")
        try:
            history = History.from_dict(state["history"])
        except (TypeError, ValueError, KeyError) as e:
            refuse(f"the History is not valid ({e})")
        if history.num_particles != len(self.swarm):
            refuse(f"the History has {history.num_particles} particles, this swarm {len(self.swarm)}")
        # callbacks: each saved state to the callback of its class and rank
        if not isinstance(state["callbacks"], dict):
            refuse("the callbacks' states are not a dict")
        cb_states = []
        for cb, s in _match_callback_states(callbacks, state["callbacks"]):
            check = getattr(cb, "check_state_dict", None)
            if callable(check):
                try:
                    check(s, self)
                except (TypeError, ValueError, KeyError) as e:
                    refuse(f"the saved state of {type(cb).__name__} does not fit it: {e}")
            cb_states.append((cb, s))
        return {"history": history, "callbacks": cb_states}

    def _load_training_state(self, checkpoint: "_Checkpoint", loaded: dict) -> int:
        """Load a checkpoint's swarm, optimizers, generator and History (all checked by
        :meth:`_check_checkpoint`); return the epoch to continue from."""
        state = checkpoint.state
        self.swarm.load_state_dict(state["swarm"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        self.generator.set_state(state["generator"])
        self.history = loaded["history"]
        self.stop_training = bool(state["stopped"])
        return int(state["epoch"])

    def _load_callback_states(self, loaded: dict) -> None:
        for cb, s in loaded["callbacks"]:
            if callable(getattr(cb, "load_state_dict", None)):
                cb.load_state_dict(s)

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

