"""Callbacks for :class:`nytorch_ext.train.SwarmTrainer`.

A callback is any object with some of these methods (all optional; subclass
:class:`Callback` to get no-op defaults):

==================================================  ==========================================
``on_fit_start(trainer)``                           before the first batch (arguments checked)
``on_epoch_start(trainer, epoch)``                  ``epoch`` is 0-based
``on_batch_end(trainer, batch, losses)``            after every member's gradient step;
                                                    ``batch``: index within the epoch,
                                                    ``losses``: one float per member
``on_evolve(trainer, result)``                      after an APSO step (an ``ApsoResult``)
``on_epoch_end(trainer, epoch, logs)``              after validation; ``logs`` is the epoch's
                                                    ``History.records`` entry
``on_fit_end(trainer)``                             after the last epoch (also after a stop)
``state_dict()`` / ``load_state_dict(state)``       saved in / restored from checkpoints
==================================================  ==========================================

Setting ``trainer.stop_training = True`` in any hook ends the run: after the current
batch (the epoch is then closed and logged as it stands) or after the current epoch.

Callbacks run in the order given, except that a callback's ``order`` attribute (default
0) sorts them: :class:`Checkpoint` has order 100, so it saves after every other
callback's ``on_epoch_end`` (an early-stopping decision made in that epoch is saved too).
"""
from __future__ import annotations

import copy
import math
import os
import sys
import time

import torch

__all__ = ["Callback", "ProgressBar", "EarlyStopping", "Checkpoint", "tqdm_available"]


class Callback:
    """Base class with no-op hooks (see the module docstring)."""
    order = 0

    def on_fit_start(self, trainer) -> None: ...

    def on_epoch_start(self, trainer, epoch: int) -> None: ...

    def on_batch_end(self, trainer, batch: int, losses: list) -> None: ...

    def on_evolve(self, trainer, result) -> None: ...

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None: ...

    def on_fit_end(self, trainer) -> None: ...


def tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _summary(logs: dict) -> str:
    """``train_loss: 0.12345, val_loss: ..., val_accuracy: ... (best particle 3)``."""
    best = logs["best"]
    parts = [f"{k}: {v[best]:.5f}" for k, v in logs.items() if isinstance(v, list)]
    return ", ".join(parts) + f" (best particle {best})"


class ProgressBar(Callback):
    """A tqdm bar per epoch (batches done, the lowest batch loss over the particles),
    closed with the best particle's epoch summary.

    Without tqdm installed it prints one line per epoch to ``file`` instead
    (PyBlaze's ``Epoch 3/20: train_loss: ..., val_loss: ...``) and raises nothing.
    :meth:`SwarmTrainer.fit` adds one by default when stderr is a terminal
    (``progress=None``); ``progress=True`` / ``False`` forces it on / off."""

    def __init__(self, file=None, use_tqdm: bool | None = None) -> None:
        self.file = file
        self.use_tqdm = tqdm_available() if use_tqdm is None else bool(use_tqdm)
        self._bar = None
        self._start = 0.0

    def _out(self):
        return self.file if self.file is not None else sys.stderr

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._start = time.perf_counter()
        desc = f"Epoch {epoch + 1}/{trainer.epochs}"
        if self.use_tqdm:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=trainer.batches_per_epoch, desc=desc, file=self._out(),
                             leave=True, dynamic_ncols=True, unit="batch")

    def on_batch_end(self, trainer, batch: int, losses: list) -> None:
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{min(losses):.4f}", refresh=False)
            self._bar.update(1)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(_summary(logs), refresh=True)
            self._bar.close()
            self._bar = None
        else:
            print(f"Epoch {epoch + 1}/{trainer.epochs}: [{time.perf_counter() - self._start:.1f}s] "
                  f"{_summary(logs)}", file=self._out(), flush=True)

    def on_fit_end(self, trainer) -> None:
        if self._bar is not None:  # stopped mid-epoch by an exception-free stop
            self._bar.close()
            self._bar = None


_MODES = ("min", "max")


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved for ``patience`` epochs in a row
    (Keras' rule: with ``patience=3`` the third epoch without improvement is the last).

    ``monitor``: an epoch log key, e.g. ``"val_loss"``, ``"val_accuracy"``,
    ``"train_loss"``. Its per-particle values are reduced by ``of``: ``"best"`` (the
    epoch's best particle, the default), ``"min"``, ``"max"`` or ``"mean"`` over the
    particles. ``mode``: ``"min"`` or ``"max"``; ``"auto"`` means min for names ending
    in ``loss`` and max for names ending in ``accuracy``/``acc`` (anything else must say).
    An epoch improves when it beats the best value so far by more than ``min_delta``.
    ``restore_best``: at the end of the run, load the swarm's parameters and buffers
    from the best epoch (optimizer states are left as they are).

    After the run: ``best_value``, ``best_epoch`` (0-based) and ``stopped_epoch``
    (None when it did not stop training)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, *, mode: str = "auto",
                 min_delta: float = 0.0, of: str = "best", restore_best: bool = False) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be a log key such as 'val_loss', got {monitor!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        if mode == "auto":
            if monitor.endswith("loss"):
                mode = "min"
            elif monitor.endswith(("accuracy", "acc")):
                mode = "max"
            else:
                raise ValueError(f"mode: cannot guess whether {monitor!r} should go up or down; "
                                 f"pass mode='min' or mode='max'")
        if mode not in _MODES:
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if of not in ("best", "min", "max", "mean"):
            raise ValueError(f"of must be 'best', 'min', 'max' or 'mean', got {of!r}")
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.min_delta, self.of, self.restore_best = float(min_delta), of, bool(restore_best)
        self._reset()

    def _reset(self) -> None:
        self.best_value = None
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self.best_state = None

    def on_fit_start(self, trainer) -> None:
        if self.monitor not in trainer.log_keys:
            raise ValueError(f"monitor={self.monitor!r} is not logged by this run; "
                             f"logged: {trainer.log_keys}")
        self._reset()

    def value(self, logs: dict) -> float:
        values = logs[self.monitor]
        if self.of == "best":
            return float(values[logs["best"]])
        if self.of == "mean":
            return float(sum(values) / len(values))
        return float(min(values) if self.of == "min" else max(values))

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        value = self.value(logs)
        if self._improved(value):
            self.best_value, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = _cpu_copy(trainer.swarm.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_fit_end(self, trainer) -> None:
        if self.restore_best and self.best_state is not None:
            trainer.swarm.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "wait": self.wait, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        for key in ("best_value", "best_epoch", "stopped_epoch", "wait", "best_state"):
            setattr(self, key, state[key])


def _cpu_copy(obj):
    """A deep copy with every tensor cloned to the CPU (a snapshot, not a view)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, _cpu_copy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


class Checkpoint(Callback):
    """Saves the run every ``every`` epochs with :meth:`SwarmTrainer.save_checkpoint`:
    the swarm's parameters and buffers, every optimizer's state, the torch / CUDA /
    Python ``random`` / NumPy RNG states and the data loader's generator, the trainer's
    APSO generator, the epoch and batch counters, the History and the callbacks'
    states. ``fit(..., resume_from=path)`` (or ``trainer.resume(path)``) continues the
    run; on the CPU the continued run is bit-for-bit the uninterrupted one.

    ``path`` may contain ``{epoch}`` (1-based, the number of epochs completed) to keep
    one file per save; otherwise each save replaces the last (written to a temporary
    file first, then renamed). The last epoch of a run is always saved, and so is an
    epoch at which training stops. A checkpoint is a pickle (the RNG states are Python
    and NumPy objects): resume only from files you trust."""
    order = 100

    def __init__(self, path, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.path = os.fspath(path)
        self.every = every
        self.saved: list[str] = []

    def path_for(self, epochs_done: int) -> str:
        return self.path.format(epoch=epochs_done) if "{epoch" in self.path else self.path

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        done = epoch + 1
        if done % self.every == 0 or done == trainer.epochs or trainer.stop_training:
            path = self.path_for(done)
            trainer.save_checkpoint(path)
            self.saved.append(path)
