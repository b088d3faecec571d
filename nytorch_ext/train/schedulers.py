"""Learning-rate schedulers: fit's ``scheduler=`` factory, one scheduler per member.

``scheduler``: ``optimizer -> LR scheduler`` (e.g. ``lambda opt:
torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)``), called once per member's
optimizer. ``scheduler_interval``: ``"epoch"`` (the default) steps every scheduler once
at the end of every epoch, after validation and before the callbacks' ``on_epoch_end``
(so a checkpoint holds the stepped schedule); ``"batch"`` steps it after every optimizer
step (with gradient accumulation, once per accumulated window). A
``ReduceLROnPlateau`` is stepped with its member's ``val_loss`` (``train_loss`` without
validation data), per epoch only. The schedulers' states are saved in checkpoints.
"""
from __future__ import annotations

import torch

SCHEDULER_INTERVALS = ("epoch", "batch")


def is_plateau(scheduler) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def make_schedulers(factory, optimizers: list, interval) -> list | None:
    """One scheduler per optimizer from ``factory`` (None: no schedulers)."""
    if interval not in SCHEDULER_INTERVALS:
        raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {interval!r}")
    if factory is None:
        return None
    if not callable(factory) or isinstance(factory, torch.optim.lr_scheduler.LRScheduler):
        raise TypeError("scheduler must be a factory optimizer -> LR scheduler (e.g. lambda opt: "
                        f"torch.optim.lr_scheduler.StepLR(opt, 5)), got {type(factory).__name__}")
    made = []
    for i, opt in enumerate(optimizers):
        s = factory(opt)
        if not all(callable(getattr(s, m, None)) for m in ("step", "state_dict", "load_state_dict")):
            raise TypeError(f"scheduler factory must return an LR scheduler (step, state_dict, "
                            f"load_state_dict), got {type(s).__name__}")
        if getattr(s, "optimizer", opt) is not opt:
            raise ValueError(f"scheduler factory: the scheduler made for member {i} drives another optimizer")
        if interval == "batch" and is_plateau(s):
            raise ValueError("scheduler: ReduceLROnPlateau steps on an epoch's loss; use "
                             "scheduler_interval='epoch'")
        made.append(s)
    return made


def step_epoch(schedulers: list, monitored: list) -> None:
    """Every scheduler's end-of-epoch step (a ReduceLROnPlateau on its member's ``monitored`` value)."""
    for s, value in zip(schedulers, monitored):
        if is_plateau(s):
            s.step(value)
        else:
            s.step()


def learning_rates(optimizers: list) -> list[float]:
    """Each optimizer's learning rate (its first parameter group's)."""
    return [float(opt.param_groups[0]["lr"]) for opt in optimizers]


def param_group_settings(optimizers: list) -> list:
    """The optimizers' param-group settings (all but the parameters), to undo a
    scheduler's construction (:func:`restore_settings`) when a run is refused."""
    return [[{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] for opt in optimizers]


def restore_settings(optimizers: list, saved: list) -> None:
    for opt, groups in zip(optimizers, saved):
        for g, s in zip(opt.param_groups, groups):
            for key in set(g) - {"params"} - set(s):
                del g[key]
            g.update(s)
