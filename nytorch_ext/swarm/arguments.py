"""The arguments of swarm updates, checked: losses, subset sizes, noise, generators.

Numbers, probabilities and counts are decided by the shared rules of
:mod:`nytorch_ext.ops.validation`; this module adds what is particular to a swarm
(one loss per member, a subset no larger than the pool) and keeps the words this API
has always used in its errors (``expected=``). The trainer checks its APSO arguments with these too.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor

from ..ops.validation import number, positive_int


def finite_real(value, name: str) -> float:
    """A finite real number (momentum's ``beta``); anything else is a ValueError."""
    return number(value, name, type_error=ValueError, expected="a finite real number")


def noise_scale(value, name: str = "noise") -> float:
    """APSO's noise: a finite number >= 0; anything else is a ValueError."""
    if type(value) is float and 0.0 <= value < math.inf:  # the common case, checked as it stands
        return value
    return number(value, name, minimum=0.0, type_error=ValueError, expected="a finite number >= 0")


def pool_size(value, name: str = "size") -> int:
    """How many members to make: an int >= 1; anything else is a ValueError."""
    return positive_int(value, name, type_error=ValueError, expected="a positive int")


def subset_size(value, size: int) -> int:
    """An APSO subset size for a pool of ``size``: None (the whole pool) or an int in 1..size."""
    if value is None:
        return size
    if type(value) is int and 1 <= value <= size:  # the common case, checked as it stands
        return value
    value = positive_int(value, "subset_size")
    if value > size:
        raise ValueError(f"subset_size must be between 1 and the pool size {size}, got {value}")
    return value


def flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


_CHECKED_GENERATOR: list = [None]  # the last generator found a CPU one (a generator keeps its device)


def subset_generator(generator):
    """None (torch's default generator) or a CPU torch.Generator."""
    if generator is None or generator is _CHECKED_GENERATOR[0]:
        return generator
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError("generator must be a CPU torch.Generator (it draws indices and seeds, not data)")
    _CHECKED_GENERATOR[0] = generator
    return generator


def member_losses(losses, size: int) -> list[float]:
    """``losses`` as ``size`` floats: a 1-D tensor / array or a sequence of numbers (0-d
    tensors included) with one entry per member; anything else (a 2-D tensor, strings,
    nested sequences) is refused rather than flattened. NaN is refused: the best member
    would be undefined."""
    if type(losses) is list and len(losses) == size and all([type(x) is float for x in losses]):
        total = sum(losses)
        if total == total:  # the common case: floats as they stand, none NaN (a NaN sum: checked below)
            return list(losses)
    shape = getattr(losses, "shape", None)
    if isinstance(losses, Tensor) or (shape is not None and hasattr(losses, "ndim")):
        if len(shape) != 1:
            raise ValueError(f"losses must be 1-D, one entry per member ({size}), "
                             f"got shape {tuple(shape)}")
        if isinstance(losses, Tensor):
            if losses.is_complex() or losses.dtype == torch.bool:
                raise TypeError(f"losses must hold real numbers, got a {losses.dtype} tensor")
            losses = losses.detach().tolist()
    if isinstance(losses, (str, bytes, dict)) or not isinstance(losses, Iterable):
        raise TypeError(f"losses must be a sequence of numbers, got {type(losses).__name__}")
    values = []
    for i, x in enumerate(losses):
        if isinstance(x, Tensor) and x.dim() == 0 and not x.is_complex() and x.dtype != torch.bool:
            x = x.item()
        elif isinstance(x, Tensor):
            raise ValueError(f"losses[{i}] must be a number or a 0-d tensor, got a tensor of shape "
                             f"{tuple(x.shape)}; losses must be 1-D, one entry per member")
        # a float is a real number as it stands: only other values go through the rule
        values.append(x if type(x) is float else number(x, f"losses[{i}]", finite=False))
    if len(values) != size:
        raise ValueError(f"losses has {len(values)} entries but the pool has {size} members")
    bad = [i for i, x in enumerate(values) if math.isnan(x)]
    if bad:
        raise ValueError(f"losses[{bad[0]}] is NaN ({len(bad)} NaN loss(es)); the best member is undefined")
    return values
