"""Batches: what the trainer accepts as data, and how it feeds a batch to a member.

A training or evaluation batch is a pair (or longer sequence) ``(x, y, ...)``; ``x``
may itself be a tuple of a model's positional inputs. A prediction batch is ``x`` or
``(x, ...)``. Data sources must be re-iterable (a DataLoader, a list of batches) or one
``(x, y)`` pair of tensors.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import Tensor


def to_device(obj, device):
    """Tensors (also inside lists and tuples) moved to ``device``; anything else as is."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    return obj


def split_batch(batch) -> tuple:
    """(inputs, target) of a batch: a pair (or longer sequence) ``(x, y, ...)``."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"a batch must be a pair (inputs, target), got {type(batch).__name__}"
                     + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else ""))


def batch_inputs(batch):
    """The inputs of a batch given to predict: ``x`` or ``(x, ...)``."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def call_model(model, x):
    """``model(x)``, or ``model(*x)`` for a tuple of inputs."""
    return model(*x) if isinstance(x, (list, tuple)) else model(x)


def sample_count(x, y) -> int:
    """The number of samples in a batch (its first dimension; 1 for a scalar target)."""
    ref = y if isinstance(y, Tensor) and y.dim() > 0 else (x[0] if isinstance(x, (list, tuple)) else x)
    return int(ref.shape[0]) if isinstance(ref, Tensor) and ref.dim() > 0 else 1


def reiterable(data, name: str):
    """A re-iterable source of batches: a loader / sequence of batches, or one (x, y) pair."""
    if data is None:
        return None
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        return [data]
    if isinstance(data, Iterator) or not isinstance(data, Iterable):
        raise ValueError(f"{name} must be re-iterable (a DataLoader, a list of batches or an "
                         f"(x, y) pair of tensors), not {type(data).__name__}")
    return data


def check_batches(data, name: str, pairs: bool = True):
    """What can be checked of ``data`` before training without iterating it: its
    ``len()`` (0 raises; returned, None when it has none) and, for a list or tuple of
    batches, that every batch is an ``(x, y)`` pair (``pairs``)."""
    if data is None:
        return None
    try:
        n = len(data)
    except TypeError:
        return None
    if n == 0:
        raise ValueError(f"{name} is empty (it has no batches)")
    if pairs and isinstance(data, (list, tuple)):
        for i, batch in enumerate(data):
            try:
                split_batch(batch)
            except ValueError as e:
                raise ValueError(f"{name}[{i}]: {e}") from None
    return n
