"""The callback base class: no-op hooks (the protocol is in :mod:`nytorch_ext.train.callbacks`)."""
from __future__ import annotations


class Callback:
    """Base class with no-op hooks (see the module docstring)."""
    order = 0

    def on_fit_start(self, trainer) -> None: ...

    def on_epoch_start(self, trainer, epoch: int) -> None: ...

    def on_batch_end(self, trainer, batch: int, losses: list) -> None: ...

    def on_before_optimizer_step(self, trainer, member_index: int, optimizer) -> None:
        """Before member ``member_index``'s optimizer steps (gradients accumulated and,
        with fp16, unscaled; not clipped yet). Only overriding callbacks are called."""

    def on_evolve(self, trainer, result) -> None: ...

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None: ...

    def on_fit_end(self, trainer) -> None: ...

    def check_fit(self, trainer, *, log_keys: list, epochs: int) -> None:
        """Called by ``fit`` before it changes anything; raise to refuse the run."""
