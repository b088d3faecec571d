"""Whether an argument is a temporary that nobody else holds.

``particle.product_(expr)`` with a temporary ``expr`` (the seed's
``c.product_((1-a)*c + a*b)``) may drop the expression's snapshots of the particle
before writing it, which saves a copy-on-write copy. Whether the argument is a
temporary is read from its reference count at the start of the public method,
calibrated here on a method of the same shape (a Python whose counts do not tell
the two apart gets the always-safe answer: held).
"""
from __future__ import annotations

import sys


class _Wrapper:
    __slots__ = ("product",)
    product: object


class _RefProbe:
    def product_(self, product):
        return sys.getrefcount(product)

    def wrapped(self, product):
        refs = sys.getrefcount(product)
        inner = product.product
        return refs, sys.getrefcount(inner)


def _wrapped(value) -> _Wrapper:
    w = _Wrapper()
    w.product = value
    return w


def _calibrate() -> tuple:
    probe = _RefProbe()
    temporary = probe.product_(object())
    held = object()
    one = temporary if probe.product_(held) > temporary else -1
    temporary_pair = probe.wrapped(_wrapped(object()))
    held_wrapper, held_inner = _wrapped(object()), object()
    held_pairs = [probe.wrapped(held_wrapper), probe.wrapped(_wrapped(held_inner))]
    two = temporary_pair if all(h[0] > temporary_pair[0] or h[1] > temporary_pair[1] for h in held_pairs) \
        else (-1, -1)
    return one, two


_TEMPORARY_REFS, _TEMPORARY_WRAPPED_REFS = _calibrate()


def is_temporary(refs: int, inner_refs: int | None = None) -> bool:
    """``refs`` (and, for a PMProduct, ``inner_refs`` of its ParamProduct) as read
    by ``sys.getrefcount`` at the start of a public ``product_``: nobody but the
    call holds the argument."""
    if inner_refs is None:
        return refs <= _TEMPORARY_REFS
    return refs <= _TEMPORARY_WRAPPED_REFS[0] and inner_refs <= _TEMPORARY_WRAPPED_REFS[1]
