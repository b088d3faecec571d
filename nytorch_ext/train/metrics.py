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
