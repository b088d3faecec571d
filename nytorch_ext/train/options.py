"""fit's arguments, checked before anything is trained: optimizers, callbacks, APSO.

Each function turns one of :meth:`SwarmTrainer.fit`'s arguments into what the run uses,
raising ``TypeError`` / ``ValueError`` naming the argument; :class:`EvolveSettings` is
the run's APSO schedule and step arguments, checked as one.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ..ops.validation import positive_int, probability
from ..swarm.arguments import flag, noise_scale, subset_size as check_subset_size
from .callbacks import ProgressBar

CALLBACK_HOOKS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_before_optimizer_step", "on_evolve",
                  "on_epoch_end", "on_fit_end")


def the_seeds_sgd(params):
    """The seed chapter's optimizer, the default: ``SGD(lr=0.01)``."""
    return torch.optim.SGD(params, lr=0.01)


def make_optimizers(swarm, optimizer, previous: list | None) -> list:
    """One optimizer per member: from a factory ``params -> Optimizer``, a list of them,
    or None (``previous``, else the seed's SGD)."""
    k = len(swarm)
    if optimizer is None:
        if previous is not None:
            return previous
        optimizer = the_seeds_sgd
    if isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError("optimizer must be a factory (e.g. lambda params: torch.optim.SGD(params, "
                        "lr=0.01)) or one optimizer per member, not a single optimizer")
    if callable(optimizer):
        made = [optimizer(m.parameters()) for m in swarm]
        if not all(isinstance(o, torch.optim.Optimizer) for o in made):
            raise TypeError("optimizer factory must return a torch.optim.Optimizer")
        return made
    if isinstance(optimizer, Sequence) and not isinstance(optimizer, str):
        if len(optimizer) != k or not all(isinstance(o, torch.optim.Optimizer) for o in optimizer):
            raise ValueError(f"optimizer: a list must hold one torch.optim.Optimizer per member ({k})")
        for i, (o, m) in enumerate(zip(optimizer, swarm)):
            params = {id(p) for g in o.param_groups for p in g["params"]}
            if not params <= {id(p) for p in m.parameters()}:
                raise ValueError(f"optimizer[{i}] holds parameters that are not member {i}'s")
        return list(optimizer)
    raise TypeError(f"optimizer must be a factory, a list of optimizers or None, "
                    f"got {type(optimizer).__name__}")


def callback_list(callbacks, progress) -> list:
    """The run's callbacks, sorted by ``order`` (stable), with a :class:`ProgressBar`
    added unless one is given or ``progress`` is False (which removes any): a tqdm bar
    when stderr is a terminal, one line per epoch otherwise."""
    if callbacks is None:
        callbacks = []
    if not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, dict)):
        raise TypeError(f"callbacks must be a list of callbacks, got {type(callbacks).__name__}")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not any(callable(getattr(cb, h, None)) for h in CALLBACK_HOOKS):
            raise TypeError(f"callbacks: {type(cb).__name__} has none of the hooks {CALLBACK_HOOKS}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if progress is not False and not any(isinstance(cb, ProgressBar) for cb in callbacks):
        callbacks.append(ProgressBar())
    if progress is False:
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    return sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))  # stable


def fit_subset_size(subset_size, size: int) -> int:
    """fit's ``subset_size``: "auto" = min(6, K); None = K; else an int in 1..K."""
    if isinstance(subset_size, str):
        if subset_size != "auto":
            raise ValueError(f"subset_size must be 'auto', an int or None, got {subset_size!r}")
        return min(6, size)
    return check_subset_size(subset_size, size)


@dataclass(frozen=True)
class EvolveSettings:
    """A run's APSO: a step every ``every`` batches (counted over the run; 0: never)
    with these arguments of :meth:`Swarm.apso_step`."""
    every: int
    alpha: float
    subset_size: int | str | None
    noise: float
    replace: bool

    @classmethod
    def checked(cls, every, alpha, subset_size, noise, replace, size: int) -> "EvolveSettings":
        """fit's APSO arguments checked, in fit's order, for a swarm of ``size``."""
        every = 0 if every is None else positive_int(every, "evolve_every", minimum=0, type_error=ValueError)
        alpha = probability(alpha, "alpha")
        if every:
            subset_size = fit_subset_size(subset_size, size)
        return cls(every, alpha, subset_size, noise_scale(noise), flag(replace, "replace"))

    def due(self, batches_done: int) -> bool:
        """Whether the run takes an APSO step after its ``batches_done``-th batch."""
        return bool(self.every) and batches_done % self.every == 0

    def step(self, swarm, losses: list, generator: torch.Generator):
        """The APSO step on a batch's losses; a NaN loss counts as the worst."""
        clean = [math.inf if math.isnan(v) else v for v in losses]
        return swarm.apso_step(clean, self.alpha, self.subset_size, noise=self.noise, replace=self.replace,
                               generator=generator)
