"""Evaluation and prediction: every member's outputs without gradients, in eval mode.

:func:`measure` gives each member's sample-averaged loss and metrics (and the
ensemble's: the mean of the members' softmax probabilities); :func:`predict_outputs`
concatenates the chosen members' outputs. Both run under :func:`inference`, which
restores the members' modes and torch's global RNG, so evaluating during training does
not change the training run.
"""
from __future__ import annotations

import contextlib
import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from .batches import BatchFormat, call_model, sample_count, to_device
from .history import Evaluation, best_of
from .metrics import as_float, loss_mass, weighted_loss

PREDICTION_USES = ("best", "ensemble", "all")


@contextlib.contextmanager
def inference(members: list):
    """Eval mode and no gradients for ``members``; afterwards their train/eval modes and
    torch's global CPU RNG are as before (iterating a DataLoader draws a seed from it,
    so without this, evaluating during training would change the next epoch's shuffle)."""
    modes = [m.training for m in members]
    rng = torch.get_rng_state()
    try:
        for m in members:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(members, modes):
            m.train(mode)
        torch.set_rng_state(rng)


def member_outputs(members: list, x, forward=None):
    """Each member's output on ``x``: ``forward(x)`` (stacked, one pass) or one call per member."""
    if forward is not None:
        return forward(x)
    return [call_model(m, x) for m in members]


def log_mean_softmax(outs: list) -> Tensor:
    """log(mean_k softmax(outs[k], dim=1)): the ensemble's log-probabilities."""
    stacked = torch.stack([F.log_softmax(o.float(), dim=1) for o in outs])
    return torch.logsumexp(stacked, dim=0) - math.log(len(outs))


def measure(members: list, data, metrics: dict, loss_fn, ensemble: bool, device,
            name: str = "loader", *, autocast=contextlib.nullcontext,
            batch_format: BatchFormat | None = None, forward=None) -> Evaluation:
    """Every member's (and with ``ensemble`` the ensemble's) sample-averaged loss
    (weighted by the batches' sample weights, when they have them) and ``metrics`` on
    ``data``, under :func:`inference`; the forward passes under ``autocast()``.
    ``forward(x)``: all members' outputs at once (a batched swarm's forward, stacked
    ``[K, ...]``) instead of one call per member."""
    fmt = batch_format or BatchFormat()
    k = len(members)
    loss_sum = [0.0] * k
    metric_sum = {name: [0.0] * k for name in metrics}
    ens_sum = {name: 0.0 for name in ["loss", *metrics]}
    samples, mass = 0, 0.0
    with inference(members):
        for batch in data:
            x, y, w = fmt.split(batch)
            x, y, w = to_device(x, device), to_device(y, device), to_device(w, device)
            n = sample_count(x, y)
            with autocast():
                outs = member_outputs(members, x, forward)
                values = [weighted_loss(loss_fn, out, y, w) for out in outs]
            weight = loss_mass(w, n)
            for i, v in enumerate(torch.stack([v.detach().float() for v in values]).tolist()):
                loss_sum[i] += v * weight
            for metric, fn in metrics.items():
                for i, out in enumerate(outs):
                    metric_sum[metric][i] += as_float(fn(out, y)) * n
            if ensemble:
                log_mean = log_mean_softmax(outs)
                ens_sum["loss"] += as_float(weighted_loss(loss_fn, log_mean, y, w)) * weight
                for metric, fn in metrics.items():
                    ens_sum[metric] += as_float(fn(log_mean, y)) * n
            samples += n
            mass += weight
    if samples == 0:
        raise ValueError(f"{name} yielded no batches")
    losses = [s / mass for s in loss_sum]
    return Evaluation(loss=losses, metrics={metric: [s / samples for s in sums] for metric, sums in metric_sum.items()},
                      best=best_of(losses), samples=samples,
                      ensemble={metric: s / (mass if metric == "loss" else samples) for metric, s in ens_sum.items()}
                      if ensemble else None)


def check_use(use, size: int):
    """predict's ``use``: "best", "ensemble", "all" or a member index of a swarm of ``size``."""
    if isinstance(use, bool) or not (use in PREDICTION_USES or isinstance(use, numbers.Integral)):
        raise ValueError(f"use must be 'best', 'ensemble', 'all' or a member index, got {use!r}")
    if isinstance(use, numbers.Integral) and not -size <= use < size:
        raise ValueError(f"use={use} is not a member index of a swarm of {size}")
    return use


def predict_outputs(chosen: list, data, use, device, batch_format: BatchFormat | None = None,
                    forward=None) -> Tensor:
    """The outputs of the ``chosen`` members on ``data``'s inputs, on the CPU: the mean
    softmax for ``use="ensemble"``, stacked ``[K, N, ...]`` for ``"all"``, else the one
    member's. ``forward``: as :func:`measure`'s (for all the members)."""
    pieces = []
    fmt = batch_format or BatchFormat()
    with inference(chosen):
        for batch in data:
            x = to_device(fmt.inputs(batch), device)
            outs = member_outputs(chosen, x, forward)
            if use == "ensemble":
                pieces.append(log_mean_softmax(outs).exp().cpu())
            elif use == "all":
                pieces.append((outs if isinstance(outs, Tensor) else torch.stack(outs)).cpu())
            else:
                pieces.append(outs[0].cpu())
    if not pieces:
        raise ValueError("loader yielded no batches")
    return torch.cat(pieces, dim=1 if use == "all" else 0)
