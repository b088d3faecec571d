"""Progress output: a tqdm bar per epoch, or one line per epoch without tqdm."""
from __future__ import annotations

import sys
import time

from .base import Callback


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
