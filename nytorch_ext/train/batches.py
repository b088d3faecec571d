"""Batches: what the trainer accepts as data, and how it feeds a batch to a member.

A training or evaluation batch is ``(x, y)``, ``(x, y, sample_weight)`` or a dict
whose keys :class:`BatchFormat` names (``fit(batch_keys=...)``); ``x`` may itself be
a tuple of a model's positional inputs. A prediction batch is ``x``, ``(x, ...)`` or
such a dict. Data sources must be re-iterable (a DataLoader, a list of batches) or one
``(x, y)`` pair of tensors. Anything else is an error naming what was found.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from torch import Tensor

BATCH_ROLES = ("input", "target", "weight")


def to_device(obj, device):
    """Tensors (also inside lists and tuples) moved to ``device``; anything else as is."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    return obj


def _describe(batch) -> str:
    if isinstance(batch, (list, tuple)):
        return f"a {type(batch).__name__} of length {len(batch)}"
    return type(batch).__name__


@dataclass(frozen=True)
class BatchFormat:
    """How a batch splits into ``(inputs, target, sample_weight)``.

    Sequences: ``(x, y)`` or ``(x, y, sample_weight)``. Dicts (``Mapping``): the value
    of key ``input``, ``target`` and, when present, ``weight`` (defaults ``"input"``,
    ``"target"``, ``"sample_weight"``; ``fit(batch_keys={"input": "image", "target":
    "label"})`` renames them); other keys are ignored. Anything else raises
    ``ValueError``."""
    input: str = "input"
    target: str = "target"
    weight: str = "sample_weight"

    @classmethod
    def checked(cls, keys) -> "BatchFormat":
        """fit's ``batch_keys``: None (the defaults) or a dict role -> key, roles
        ``"input"``, ``"target"``, ``"weight"``."""
        if keys is None:
            return cls()
        if not isinstance(keys, Mapping):
            raise TypeError(f"batch_keys must be a dict such as {{'input': 'image', 'target': 'label'}}, "
                            f"got {type(keys).__name__}")
        unknown = [r for r in keys if r not in BATCH_ROLES]
        if unknown:
            raise ValueError(f"batch_keys: unknown role(s) {unknown}; the roles are {list(BATCH_ROLES)}")
        bad = [r for r, k in keys.items() if not isinstance(k, str) or not k]
        if bad:
            raise TypeError(f"batch_keys[{bad[0]!r}] must be a non-empty string, got {keys[bad[0]]!r}")
        return cls(**dict(keys))

    def split(self, batch) -> tuple:
        """``(x, y, sample_weight or None)`` of a training or evaluation batch."""
        if isinstance(batch, (list, tuple)) and len(batch) in (2, 3):
            return batch[0], batch[1], (batch[2] if len(batch) == 3 else None)
        if isinstance(batch, Mapping):
            missing = [k for k in (self.input, self.target) if k not in batch]
            if missing:
                raise ValueError(f"a dict batch has no key {missing[0]!r} (its keys: {list(batch)}); "
                                 f"name the keys with fit(batch_keys={{'input': ..., 'target': ...}})")
            return batch[self.input], batch[self.target], batch.get(self.weight)
        raise ValueError(f"a batch must be a pair (inputs, target), a triple (inputs, target, "
                         f"sample_weight) or a dict, got {_describe(batch)}")

    def inputs(self, batch):
        """The inputs of a batch given to predict: ``x``, ``(x, ...)`` or a dict's input."""
        if isinstance(batch, Mapping):
            if self.input not in batch:
                raise ValueError(f"a dict batch has no key {self.input!r} (its keys: {list(batch)})")
            return batch[self.input]
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


def check_batches(data, name: str, pairs: bool = True, batch_format: BatchFormat | None = None):
    """What can be checked of ``data`` before training without iterating it: its
    ``len()`` (0 raises; returned, None when it has none) and, for a list or tuple of
    batches, that every batch splits (``pairs``; see :class:`BatchFormat`)."""
    if data is None:
        return None
    try:
        n = len(data)
    except TypeError:
        return None
    if n == 0:
        raise ValueError(f"{name} is empty (it has no batches)")
    if pairs and isinstance(data, (list, tuple)):
        fmt = batch_format or BatchFormat()
        for i, batch in enumerate(data):
            try:
                fmt.split(batch)
            except ValueError as e:
                raise ValueError(f"{name}[{i}]: {e}") from None
    return n
