"""Progress output: a tqdm bar per epoch on a terminal, one line per epoch otherwise, and
a line saying when and why a run stopped early."""
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
    parts = [f"{k}: {v[best]:.5g}" if k == "lr" else f"{k}: {v[best]:.5f}"
             for k, v in logs.items() if isinstance(v, list)]
    return ", ".join(parts) + f" (best particle {best})"


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        return False


class ProgressBar(Callback):
    """The default output of :meth:`SwarmTrainer.fit`.

    On a terminal (with tqdm installed): a tqdm bar per epoch (batches done, the lowest
    batch loss over the particles), closed with the best particle's epoch summary.
    Otherwise (output piped to a file or a log, or no tqdm): one line per epoch
    (PyBlaze's ``Epoch 3/20: [1.2s] train_loss: ..., val_loss: ... (best particle 4)``),
    with no carriage returns. When a run stops before its last epoch, a last line says
    after which epoch and why (``history.stop_reason``, e.g. EarlyStopping's).

    ``file``: where to write (default stderr). ``use_tqdm``: None (the default) decides
    as above; True / False force the bar / the lines. ``fit`` adds one unless
    ``progress=False``."""

    def __init__(self, file=None, use_tqdm: bool | None = None) -> None:
        self.file = file
        self.use_tqdm = use_tqdm if use_tqdm is None else bool(use_tqdm)
        self._bar = None
        self._start = 0.0

    def _out(self):
        return self.file if self.file is not None else sys.stderr

    def _wants_bar(self) -> bool:
        if self.use_tqdm is not None:
            return self.use_tqdm and tqdm_available()
        return tqdm_available() and _is_terminal(self._out())

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._start = time.perf_counter()
        desc = f"Epoch {epoch + 1}/{trainer.epochs}"
        if self._wants_bar():
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
        history = trainer.history
        if trainer.stop_training and history.records and len(history.records) < trainer.epochs:
            reason = history.stop_reason or "trainer.stop_training was set"
            print(f"Stopped after epoch {len(history.records)}/{trainer.epochs}: {reason}",
                  file=self._out(), flush=True)
