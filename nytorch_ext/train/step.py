"""The gradient-descent part of a training batch: one step for every member.

Each member runs its own forward, backward and optimizer step on the shared batch.
This is where a batched step (all members in one forward) and gradient hooks
(clipping, accumulation, mixed precision) belong.
"""
from __future__ import annotations

import torch

from .batches import call_model
from .metrics import as_float


def gradient_step(members: list, optimizers: list, loss_fn, x, y, metrics: dict, metric_sums: dict,
                  samples: int) -> list[float]:
    """One optimizer step per member on the batch ``(x, y)``; returns the members'
    losses (before the step) and adds each metric times ``samples`` to ``metric_sums``."""
    step_losses = []
    for i, (member, opt) in enumerate(zip(members, optimizers)):
        opt.zero_grad()
        out = call_model(member, x)
        value = loss_fn(out, y)
        value.backward()
        opt.step()
        step_losses.append(value.detach())
        for name, fn in metrics.items():
            metric_sums[name][i] += as_float(fn(out.detach(), y)) * samples
    return torch.stack(step_losses).tolist()
