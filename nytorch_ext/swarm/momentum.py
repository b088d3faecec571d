"""Momentum as model arithmetic: the seed's ``net1 + beta*(net1 - net0)`` as one fused pass.

``momentum_step(w_new, w_prev, w_prev2, beta)`` is ``w_new + beta*(w_prev - w_prev2)``,
one lincomb per (dtype, device) group; :meth:`Swarm.momentum_` does the same for every
member of a swarm at once over its [K, N] buffers.
"""
from __future__ import annotations

from torch import nn

from ..particles.particle_module import PMProduct
from ..particles.product import ParamProduct, lincomb
from .arguments import finite_real


def momentum_step(w_new, w_prev, w_prev2, beta: float):
    """Momentum as model arithmetic (the seed's ``net1 + beta*(net1 - net0)``):
    ``w_new + beta*(w_prev - w_prev2)`` as one lincomb pass per group.

    Takes three particles (returns a new particle of ``w_new``'s kind) or three
    products (returns a lazy product, fused further with whatever it is combined
    with)."""
    beta = finite_real(beta, "beta")
    result = _momentum(w_new, w_prev, w_prev2, beta)
    return result if _is_product(w_new) else result.module()


def momentum_step_(w_new, w_prev, w_prev2, beta: float):
    """In place into the particle ``w_new``: ``w_new <- w_new + beta*(w_prev - w_prev2)``
    (same Parameter objects, one pass per group). Returns ``w_new``."""
    beta = finite_real(beta, "beta")
    if _is_product(w_new):
        raise TypeError("momentum_step_ writes into a particle; w_new must be a module, not a product")
    return w_new.product_(_momentum(w_new, w_prev, w_prev2, beta))


def _momentum(w_new, w_prev, w_prev2, beta: float):
    """The lazy ``w_new + beta*(w_prev - w_prev2)``, a PMProduct when ``w_new`` is a
    ParticleModule or PMProduct (so module() gives a ParticleModule), else a ParamProduct."""
    products = [_as_product(w, name) for w, name in ((w_new, "w_new"), (w_prev, "w_prev"), (w_prev2, "w_prev2"))]
    inner = lincomb([1.0, beta, -beta], [p.product if isinstance(p, PMProduct) else p for p in products])
    return PMProduct.from_ParamProduct(inner) if isinstance(products[0], PMProduct) else inner


def _is_product(w) -> bool:
    return isinstance(w, (ParamProduct, PMProduct))


def _as_product(w, name: str):
    if _is_product(w):
        return w
    if isinstance(w, nn.Module) and hasattr(w, "product"):
        return w.product()
    raise TypeError(f"{name} must be a particle or a product, got {type(w).__name__}")
