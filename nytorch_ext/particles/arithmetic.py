"""Particle arithmetic shared by NytoModule and ParticleModule.

Every operator is ``(self.product() op other).module()``, and every in-place one
``self.product_(self.product() op other)``; a class supplies ``product()``,
``product_()`` and ``_other_product(other)`` (the other operand as a product, or
the number/tensor itself, after checking species).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ops.validation import number


class ParticleArithmetic:
    if TYPE_CHECKING:  # supplied by the class (declared here for the type checker only)
        def product(self) -> Any: ...
        def _assign(self, product: Any, consumed: bool) -> Any: ...
    def _other_product(self, other):  # pragma: no cover - supplied by the class
        raise NotImplementedError

    def _binary(self, op: str, other):
        result = getattr(self.product(), op)(self._other_product(other))
        return NotImplemented if result is NotImplemented else result.module()

    def _inplace(self, op: str, other):
        result = getattr(self.product(), op)(self._other_product(other))
        if result is NotImplemented:
            return NotImplemented
        # result is a temporary made here: its snapshots of this particle may go
        return self._assign(getattr(result, "product", result), True)  # (PMProduct -> ParamProduct)

    def __add__(self, other): return self._binary("__add__", other)
    def __sub__(self, other): return self._binary("__sub__", other)
    def __rsub__(self, other): return self._binary("__rsub__", other)
    def __mul__(self, other): return self._binary("__mul__", other)
    def __truediv__(self, other): return self._binary("__truediv__", other)
    def __rtruediv__(self, other): return self._binary("__rtruediv__", other)
    def __pow__(self, other): return self._binary("__pow__", other)
    def __rpow__(self, other): return self._binary("__rpow__", other)

    # nytorch: reflected + and * go through __add__/__mul__, so subclass overrides
    # (the particle-module chapter's CNN counts instances there) see them too.
    def __radd__(self, other): return self.__add__(other)
    def __rmul__(self, other): return self.__mul__(other)

    def __neg__(self):
        return (-self.product()).module()

    def __pos__(self):
        return self.clone()

    def __iadd__(self, other): return self._inplace("__add__", other)
    def __isub__(self, other): return self._inplace("__sub__", other)
    def __imul__(self, other): return self._inplace("__mul__", other)
    def __itruediv__(self, other): return self._inplace("__truediv__", other)
    def __ipow__(self, other): return self._inplace("__pow__", other)

    # ------------------------------------------------------------ generators

    def clone(self):
        """A new particle of the species with copied parameter values."""
        return self.product().clone().module()

    def randn(self):
        return self.product().randn().module()

    def rand(self):
        return self.product().rand().module()

    def clone_from(self, source):
        """A clone of this particle (same species) holding ``source``'s state_dict."""
        new = self.clone()
        new.load_state_dict(source.state_dict())
        return new

    # ------------------------------------------------ fused updates (new API)

    def blend(self, best, alpha: float):
        """A new particle ``(1-alpha)*self + alpha*best`` (one pass per group)."""
        return self.product().blend(self._other_product(best), alpha).module()

    def blend_(self, best, alpha: float):
        """In place: ``self <- (1-alpha)*self + alpha*best``, written straight into
        this particle's flat storage (no allocation; Parameter objects kept)."""
        pair = self._storage_pair(best)
        if pair is None:  # products (and their errors: species, layouts)
            self.product().blend_(self._other_product(best), alpha)
        else:  # two whole particles: storage to storage, no products built
            pair[0].blend_(pair[1].buffers, number(alpha, "alpha", tensor=True))
        return self

    def _storage_pair(self, other):
        """The flat storages of ``self`` and ``other`` when both are whole particles
        of one kind, species and layout; else None."""
        if getattr(type(other), "_whole_kernel", None) is not type(self)._whole_kernel:
            return None
        mine, theirs = self._whole_kernel(), other._whole_kernel()
        if mine is None or theirs is None or mine.species is not theirs.species:
            return None
        mine.touch()
        theirs.touch()
        st, sb = mine.flat(), theirs.flat()
        return (st, sb) if st.layout is sb.layout or st.layout == sb.layout else None

    def _whole_kernel(self):  # pragma: no cover - supplied by the class
        """The kernel when this module is a whole particle (its root), else None."""
        return None

    def axpby(self, a: float, other, b: float):
        """A new particle ``a*self + b*other``."""
        return self.product().axpby(a, self._other_product(other), b).module()


def whole_kernel(particle: ParticleArithmetic):
    """The particle kernel of ``particle`` when it is a whole particle (a root
    NytoModule or a ParticleModule), else None (a submodule). For the layers above
    (a swarm's members), which must not reach into a module's private methods."""
    return particle._whole_kernel()
