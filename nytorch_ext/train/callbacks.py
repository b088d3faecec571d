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
``check_fit(trainer, log_keys=, epochs=)``          before ``fit`` changes anything (the
                                                    swarm, the trainer, a checkpoint to
                                                    resume from): raise to refuse the run
``check_state_dict(state, trainer)``                on resume, before anything is loaded:
                                                    raise unless ``load_state_dict(state)``
                                                    would succeed
==================================================  ==========================================

Setting ``trainer.stop_training = True`` in any hook ends the run: after the current
batch (the epoch is then closed and logged as it stands) or after the current epoch.

Callbacks run in the order given, except that a callback's ``order`` attribute (default
0) sorts them: :class:`Checkpoint` has order 100, so it saves after every other
callback's ``on_epoch_end`` (an early-stopping decision made in that epoch is saved too).
On resume, each saved callback state goes to the callback of the same class and the same
rank among the callbacks of that class (the first EarlyStopping's to the first
EarlyStopping, ...).
"""
from __future__ import annotations

import copy
import math
import os
import string
import sys
import time

import torch

from ..ops.validation import number, positive_int

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

    def check_fit(self, trainer, *, log_keys: list, epochs: int) -> None:
        """Called by ``fit`` before it changes anything; raise to refuse the run."""


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
    from the best epoch (optimizer states are left as they are) and mark the History
    (``history.restored_epoch``), so that ``trainer.best_index`` and
    ``predict(use="best")`` name that epoch's best particle. A checkpoint written at
    the last epoch holds the last epoch's weights (and this callback's saved best
    state): resuming it restores the same way.

    After the run: ``best_value``, ``best_epoch`` (0-based) and ``stopped_epoch``
    (None when it did not stop training)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, *, mode: str = "auto",
                 min_delta: float = 0.0, of: str = "best", restore_best: bool = False) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be a log key such as 'val_loss', got {monitor!r}")
        patience = positive_int(patience, "patience", minimum=0, type_error=ValueError)
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
        min_delta = number(min_delta, "min_delta", minimum=0.0, type_error=ValueError)
        if not isinstance(of, str) or of not in ("best", "min", "max", "mean"):
            raise ValueError(f"of must be 'best', 'min', 'max' or 'mean', got {of!r}")
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be a bool, got {type(restore_best).__name__}")
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.min_delta, self.of, self.restore_best = min_delta, of, bool(restore_best)
        self._reset()

    def _reset(self) -> None:
        self.best_value = None
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self.best_state = None

    def check_fit(self, trainer, *, log_keys: list, epochs: int) -> None:
        if self.monitor not in log_keys:
            raise ValueError(f"monitor={self.monitor!r} is not logged by this run; logged: {list(log_keys)}")

    def on_fit_start(self, trainer) -> None:
        self.check_fit(trainer, log_keys=trainer.log_keys, epochs=trainer.epochs)
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
            trainer.history._record_index(self.best_epoch)  # raises before loading if not recorded
            trainer.swarm.load_state_dict(self.best_state)
            trainer.history.mark_restored(self.best_epoch)

    _STATE_KEYS = ("best_value", "best_epoch", "stopped_epoch", "wait", "best_state")

    def state_dict(self) -> dict:
        return {key: getattr(self, key) for key in self._STATE_KEYS}

    def check_state_dict(self, state, trainer=None) -> None:
        """Raise unless ``load_state_dict(state)`` fits this callback (and, given a
        trainer, its saved best weights fit ``trainer.swarm``). Changes nothing."""
        if not isinstance(state, dict):
            raise TypeError(f"EarlyStopping state must be a dict, got {type(state).__name__}")
        missing = [k for k in self._STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"EarlyStopping state is missing {missing}")
        for key in ("best_epoch", "stopped_epoch"):
            if state[key] is not None and (isinstance(state[key], bool) or not isinstance(state[key], int)):
                raise TypeError(f"EarlyStopping state[{key!r}] must be an int or None, got {state[key]!r}")
        positive_int(state["wait"], "EarlyStopping state['wait']", minimum=0, type_error=ValueError)
        if state["best_state"] is not None and trainer is not None:
            try:
                trainer.swarm.check_state_dict(state["best_state"])
            except (TypeError, ValueError) as e:
                raise type(e)(f"EarlyStopping's saved best weights do not fit this swarm: {e}") from None

    def load_state_dict(self, state: dict) -> None:
        self.check_state_dict(state)
        for key in self._STATE_KEYS:
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

    ``path`` may contain ``{epoch}`` (1-based, the number of epochs completed; a format
    spec such as ``{epoch:03d}`` is allowed) to keep one file per save; otherwise each
    save replaces the last (written to a temporary file first, then renamed). ``path``
    is always a format string: any other field (``{x}``, ``{}``) is refused here, and
    ``{{`` / ``}}`` stand for literal braces. Before training, ``fit`` checks that the
    files can be written (the directory is, or can be made, a writable directory; the
    path is not a directory). The last epoch of a run is always saved, and so is an
    epoch at which training stops. A checkpoint is a pickle (the RNG states are Python
    and NumPy objects): resume only from files you trust."""
    order = 100

    def __init__(self, path, every: int = 1) -> None:
        every = positive_int(every, "every", type_error=ValueError)
        try:
            self.path = os.fsdecode(os.fspath(path))
        except TypeError:
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
        if not self.path:
            raise ValueError("path must not be empty")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.path) if f is not None]
        except ValueError as e:
            raise ValueError(f"path {self.path!r} is not a valid format string ({e}); "
                             f"write {{{{ and }}}} for literal braces") from None
        stray = [f for f in fields if f != "epoch"]
        if stray:
            raise ValueError(f"path {self.path!r} has the format field {{{stray[0]}}}; only {{epoch}} is "
                             f"filled in (write {{{{ and }}}} for literal braces)")
        try:
            self.path.format(epoch=1)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise ValueError(f"path {self.path!r}: cannot fill in {{epoch}} ({e})") from None
        self.every = every
        self.saved: list[str] = []

    def path_for(self, epochs_done: int) -> str:
        return self.path.format(epoch=epochs_done)

    def check_fit(self, trainer, *, log_keys: list, epochs: int) -> None:
        """The files this run would write can be written (checked before training)."""
        for done in sorted({1, epochs}):
            _check_writable(self.path_for(done))

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        done = epoch + 1
        if done % self.every == 0 or done == trainer.epochs or trainer.stop_training:
            path = self.path_for(done)
            trainer.save_checkpoint(path)
            self.saved.append(path)


def _check_writable(path: str) -> None:
    """Raise unless a file can be written at ``path`` (its directory existing or
    creatable), without creating anything."""
    if os.path.isdir(path):
        raise ValueError(f"Checkpoint path {path!r} is a directory, not a file name")
    directory = os.path.dirname(os.path.abspath(path))
    existing = directory
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise ValueError(f"Checkpoint path {path!r}: {existing!r} is a file, so no directory can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"Checkpoint path {path!r}: the directory {existing!r} is not writable")
