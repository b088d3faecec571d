"""Metrics: ``fn(output, target) -> float``, a batch mean, logged per member."""
from __future__ import annotations

from torch import Tensor


def accuracy(pred: Tensor, target: Tensor) -> float:
    """The fraction of rows of ``pred`` (logits, log-probabilities or probabilities,
    classes on dim 1) whose argmax is ``target``."""
    return (pred.argmax(dim=1) == target).float().mean().item()


def check_metrics(metrics, name: str = "metrics") -> dict:
    """``metrics`` as a dict of name -> callable(pred, target) (None: none)."""
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise TypeError(f"{name} must be a dict of name -> callable(pred, target), got {type(metrics).__name__}")
    for key, fn in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name}: keys must be non-empty strings, got {key!r}")
        if key == "loss":
            raise ValueError(f"{name}: 'loss' is reserved for the loss function")
        if not callable(fn):
            raise TypeError(f"{name}[{key!r}] must be callable(pred, target) -> float")
    return dict(metrics)


def as_float(value) -> float:
    """A metric's or loss's value as a Python float."""
    return value.item() if isinstance(value, Tensor) else float(value)


def check_loss(loss, default):
    """``loss`` (``default`` when None): callable(output, target)."""
    loss_fn = default if loss is None else loss
    if not callable(loss_fn):
        raise TypeError(f"loss must be callable(output, target), got {type(loss).__name__}")
    return loss_fn


def weighted_loss(loss_fn, output, target, weight):
    """The batch's loss: ``loss_fn(output, target)``; with per-sample weights ``w``,
    ``sum(w * l) / sum(w)`` of the per-sample losses ``l = loss_fn(output, target,
    reduction="none")`` (dimensions after the first averaged), as every
    ``torch.nn.functional`` loss gives them."""
    if weight is None:
        return loss_fn(output, target)
    if not isinstance(weight, Tensor) or weight.dim() != 1:
        raise ValueError(f"sample_weight must be a 1-D tensor (one weight per sample), got "
                         f"{tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__}")
    try:
        per_sample = loss_fn(output, target, reduction="none")
    except TypeError as e:
        raise TypeError(f"loss: a batch with sample weights calls loss(output, target, reduction='none') for "
                        f"per-sample losses, which this loss does not accept ({e})") from None
    if not isinstance(per_sample, Tensor) or per_sample.dim() == 0 or per_sample.shape[0] != weight.shape[0]:
        shape = tuple(per_sample.shape) if isinstance(per_sample, Tensor) else type(per_sample).__name__
        raise ValueError(f"loss(output, target, reduction='none') gave {shape}, not one loss per sample "
                         f"({weight.shape[0]} sample weights)")
    if per_sample.dim() > 1:
        per_sample = per_sample.flatten(1).mean(1)
    weight = weight.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum()


def loss_mass(weight, samples: int) -> float:
    """What a batch's loss counts for in an epoch's mean: its samples, or the sum of
    its sample weights (so the epoch's loss is the weighted mean over all samples)."""
    return samples if weight is None else float(weight.sum())
