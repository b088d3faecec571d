"""Early stopping on a logged quantity (Keras' rule), optionally restoring the best epoch."""
from __future__ import annotations

import copy
import math

import torch

from ...ops.validation import number, positive_int
from .base import Callback


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
    (None when it did not stop training). When it stops the run it says why
    (:meth:`reason`, kept in ``history.stop_reason`` and printed by the default output)."""

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
            trainer.stop(self.reason())

    def reason(self) -> str:
        """Why this callback stopped the run (epochs 1-based, as the progress output counts)."""
        which = {"best": "the best particle's", "mean": "the mean", "min": "the lowest", "max": "the highest"}[self.of]
        delta = f" by more than {self.min_delta:g}" if self.min_delta else ""
        best = "none" if self.best_value is None else f"{self.best_value:.5g} after epoch {self.best_epoch + 1}"
        return (f"EarlyStopping: {which} {self.monitor} has not improved{delta} for {self.wait} epoch(s) "
                f"(patience {self.patience}; mode {self.mode}; best {best})")

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
