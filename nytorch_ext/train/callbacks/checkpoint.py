"""Saving the run every few epochs, so that ``fit(..., resume_from=path)`` continues it."""
from __future__ import annotations

import string

from ...ops.validation import positive_int
from .base import Callback
from .paths import check_writable, file_path


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
        self.path = file_path(path, "path")
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
            check_writable(self.path_for(done), "Checkpoint path")

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        done = epoch + 1
        if done % self.every == 0 or done == trainer.epochs or trainer.stop_training:
            path = self.path_for(done)
            trainer.save_checkpoint(path)
            self.saved.append(path)
