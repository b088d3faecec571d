"""ParamProduct: a particle's parameters as flat buffers, with lazy affine fusion.

A product holds the layout of its species' operational parameters, and either
flat buffers (one per (dtype, device) group) or an affine expression over other
products' buffers: ``sum_k coeffs[k] * leaves[k] + bias``. ``+``, ``-``, ``-x`` and
multiplication or division by a number only rewrite the expression; the first
time a value is needed (``module()``, ``product_()``, ``params``, a non-affine
operation) it is evaluated as one ``ops.lincomb`` pass per group, with no
intermediate buffers. ``alpha*p0 + (1-alpha)*p1`` is therefore one pass, as are
``p1 + beta*(p1 - p0)`` and ``2*p + 5``.

Non-operational parameters (ParamConfig.operational False) are not in the flat
buffers: they travel as ``extras`` and keep the left operand's value.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor, nn

from .. import ops
from ..ops.validation import is_real, number
from .layout import Layout
from .memory import same_memory, snapshot
from .mtype import DIFFERENT_SPECIES, SpeciesError
from .pool import DEFAULT_POOL
from .species import Species
from .storage import Storage, blend_buffers_

_FLOAT32_MAX = torch.finfo(torch.float32).max
_FLOAT32_TINY = torch.finfo(torch.float32).tiny


class KernelLike(Protocol):
    """What a product needs of its particle's kernel. :class:`~.kernel.ParticleKernel`
    implements it; it builds on this module (its ``product()`` makes products), so
    products know it only by this interface."""
    species: Species
    params: dict[int, nn.Parameter]

    def touch(self) -> None: ...
    def flat(self) -> Storage: ...
    def non_operational(self) -> list: ...
    def product(self, module_id: int = ...) -> ParamProduct: ...
    def build(self, product: ParamProduct) -> nn.Module: ...
    def build_kernel(self, product: ParamProduct) -> Any: ...


class ParamProduct:
    """The parameters of one particle (or of an expression over particles)."""

    # _live: this is a particle's own product() (``module.product()``): it reads the
    # particle's current values, like nytorch's live parameter dict, and its leaf is
    # the particle's storage itself. Every derived product is a value: an
    # expression built from a live product reads copy-on-write snapshots of the
    # particle's buffers (``torch._lazy_clone``: no copy is made unless someone
    # writes the particle while the expression is alive, by any path, ``.data`` and
    # optimizer steps included; then the writer gets the copy).
    # _owners[k]: the particle Storage whose buffers leaf k snapshots (None for a
    # product's own buffers), so that writing the expression back into that same
    # particle can read the particle's buffers instead (exact aliasing, one pass).
    __slots__ = ("kernel", "module_id", "layout", "_leaves", "_coeffs", "_bias", "extras",
                 "_owners", "_live", "__weakref__")
    kernel: KernelLike
    module_id: int
    layout: Layout
    _leaves: list[list[Tensor]]       # per leaf, one buffer per group
    _coeffs: list[float]
    _bias: float
    extras: OrderedDict[int, Tensor]  # the non-operational parameters
    _owners: list[Storage | None]
    _live: bool

    def __init__(self, kernel: KernelLike, module_id: int, params=None):
        """nytorch's constructor: the product of ``params`` (a ParamID -> Parameter
        mapping) in ``kernel``'s species. With the kernel's own live parameters it is
        zero-copy; any other mapping is copied into new flat buffers."""
        if params is None or params is kernel.params:
            other = kernel.product(module_id)
            self._adopt(other)
            return
        live = OrderedDict(params)
        operational = [(pid, p) for pid, p in live.items() if kernel.species.config[pid].operational]
        layout = Layout.of(operational)
        buffers = layout.empty(DEFAULT_POOL)
        with torch.no_grad():
            for view, (_, p) in zip(layout.views(buffers), operational):
                view.copy_(p)
        extras = OrderedDict((pid, p) for pid, p in live.items() if not kernel.species.config[pid].operational)
        self._adopt(ParamProduct._make(kernel, module_id, layout, [buffers], [1.0], 0.0, extras))

    # --------------------------------------------------------------- building

    @classmethod
    def _make(cls, kernel, module_id, layout, leaves, coeffs, bias, extras,
              owners=None, live=False) -> "ParamProduct":
        self = object.__new__(cls)
        self.kernel, self.module_id, self.layout = kernel, module_id, layout
        self._leaves, self._coeffs, self._bias = leaves, coeffs, bias
        self.extras = extras
        self._live = live
        self._owners = owners if owners is not None else [None] * len(leaves)
        if not live:
            for owner in self._owners:
                if owner is not None:
                    owner.dependents.add(self)
        return self

    def _adopt(self, other: "ParamProduct") -> None:
        for name in ParamProduct.__slots__[:-1]:
            setattr(self, name, getattr(other, name))

    def _like(self, leaves, coeffs, bias, extras=None, owners=None) -> "ParamProduct":
        """Same kernel and layout; new leaves (own buffers unless ``owners`` says)."""
        return type(self)._make(self.kernel, self.module_id, self.layout, leaves, coeffs, bias,
                                self.extras if extras is None else extras, owners)

    def _current(self) -> "ParamProduct":
        """A live product follows its particle: after a re-flatten (``.to()``,
        ``p.data = ...``), a structural change or a new configuration it reads the
        particle's new storage. Returns self."""
        if self._live:
            kernel = self.kernel
            kernel.touch()
            st = kernel.flat()
            if self._owners[0] is not st:
                self.layout, self._leaves, self._owners = st.layout, [st.buffers], [st]
                self.extras = OrderedDict(kernel.non_operational())
        return self

    def _terms(self, refresh: bool = True) -> tuple:
        """(leaves, coefficients, owners) to build an expression on: a live
        product's leaf becomes a copy-on-write snapshot of its particle's buffers
        (``refresh=False``: the caller has just called ``_current()``)."""
        if not self._live:
            return self._leaves, self._coeffs, self._owners
        if refresh:
            self._current()
        return [[snapshot(b) for b in self._leaves[0]]], [1.0], self._owners

    @property
    def species(self):
        return self.kernel.species

    # ----------------------------------------------------------- evaluation

    @property
    def is_materialized(self) -> bool:
        """Holds its values in buffers: no pending expression, and not a derived
        product that still reads a particle's live storage."""
        return (len(self._leaves) == 1 and self._coeffs[0] == 1.0 and self._bias == 0.0
                and (self._live or self._owners[0] is None))

    def _reads(self, storage: Storage) -> bool:
        """Some leaf snapshots ``storage`` (and still shares its memory)."""
        return any(owner is storage and same_memory(leaf, storage.buffers)
                   for leaf, owner in zip(self._leaves, self._owners)) and not self._live

    def buffers(self) -> list[Tensor]:
        """The flat buffers, evaluating a pending expression (one pass per group)."""
        if self._live:
            return self._current()._leaves[0]
        if not self.is_materialized:
            out = self.layout.empty(DEFAULT_POOL)
            self._evaluate_into(out)
            self._leaves, self._coeffs, self._bias, self._owners = [out], [1.0], 0.0, [None]
        return self._leaves[0]

    def _evaluate_into(self, out: Sequence[Tensor], leaves=None) -> None:
        """One lincomb pass per group into ``out`` (``leaves``: the product's own,
        or the same with snapshots of ``out``'s particle replaced by ``out``)."""
        leaves = self._leaves if leaves is None else leaves
        with torch.no_grad():
            for g, target in enumerate(out):
                ops.lincomb(self._coeffs, [leaf[g] for leaf in leaves], self._bias, out=target)

    def _evaluate_onto(self, storage: Storage, consumed: bool) -> None:
        """Write the value into ``storage``'s own buffers (the same layout). A leaf
        that snapshots ``storage`` is read from ``storage`` itself (exact aliasing,
        one pass). When the product is a temporary (``consumed``) its snapshots are
        dropped first, so the write needs no copy-on-write copy; a product someone
        still holds keeps its snapshots, and so its value."""
        if self._live:
            if self._leaves[0] is not storage.buffers:
                self._evaluate_into(storage.buffers, self._current()._leaves)
            return
        leaves = [storage.buffers if owner is storage and same_memory(leaf, storage.buffers) else leaf
                  for leaf, owner in zip(self._leaves, self._owners)]
        if self.is_materialized and leaves[0] is storage.buffers:
            return
        if consumed:
            self._leaves = leaves
            self._evaluate_into(storage.buffers)
        elif any(new is not old for new, old in zip(leaves, self._leaves)):
            # held by the caller and reading the target: evaluate it (it keeps the value)
            with torch.no_grad():
                for target, value in zip(storage.buffers, self.buffers()):
                    target.copy_(value)
        else:
            self._evaluate_into(storage.buffers)

    @property
    def params(self) -> "OrderedDict[int, Tensor]":
        """ParamID -> parameter, in ID order. A particle's own product (``module.product()``)
        gives the particle's Parameter objects, as nytorch does; any other product gives
        views of its flat buffers (and the non-operational extras)."""
        if self._live:
            self._current()
            return OrderedDict(sorted(self.kernel.params.items()))
        views = dict(zip(self.layout.pids, self.layout.views(self.buffers())))
        merged = {**views, **self.extras}
        return OrderedDict((pid, merged[pid]) for pid in sorted(merged))

    @property
    def vdata(self):
        return self.kernel.species

    @property
    def pdata(self):
        return self.kernel

    # -------------------------------------------------------- compatibility

    def _check_other(self, other: "ParamProduct") -> None:
        if not isinstance(other, ParamProduct):
            raise SpeciesError(
                f"a product can be combined with a product of the same species or a number, "
                f"not {type(other).__name__}; use module.product() for modules")
        if other.kernel.species is not self.kernel.species:
            raise SpeciesError(DIFFERENT_SPECIES.format(what="products"))

    def _same_layout(self, other: "ParamProduct") -> bool:
        self._current(), other._current()
        return other.layout == self.layout and set(other.extras) == set(self.extras)

    # --------------------------------------------------------- affine algebra

    def _scaled(self, c: float, bias_shift: float = 0.0) -> "ParamProduct":
        leaves, coeffs, owners = self._terms()
        return self._like(leaves, [k * c for k in coeffs], self._bias * c + bias_shift, owners=owners)

    def _combined(self, other: "ParamProduct", sign: float) -> "ParamProduct":
        # called after _same_layout, which brought both up to date
        leaves, coeffs, owners = self._terms(refresh=False)
        leaves, coeffs, owners = list(leaves), list(coeffs), list(owners)
        for leaf, c, owner in zip(*other._terms(refresh=False)):
            for i, mine in enumerate(leaves):  # the same values twice: add coefficients
                if mine is leaf or (owner is not None and owners[i] is owner and same_memory(mine, leaf)):
                    coeffs[i] += sign * c
                    break
            else:
                leaves.append(leaf)
                coeffs.append(sign * c)
                owners.append(owner)
        return self._like(leaves, coeffs, self._bias + sign * other._bias, owners=owners)

    def __add__(self, other):
        if not self.layout.all_floating:
            return self._elementwise(other, torch.add)
        if is_real(other):
            return self._scaled(1.0, float(other))
        if isinstance(other, ParamProduct):
            self._check_other(other)
            if self._same_layout(other) and other.layout.all_floating:
                return self._combined(other, 1.0)
        return self._elementwise(other, torch.add)

    def __radd__(self, other):
        return self.__add__(other)

    def __sub__(self, other):
        if not self.layout.all_floating:
            return self._elementwise(other, torch.sub)
        if is_real(other):
            return self._scaled(1.0, -float(other))
        if isinstance(other, ParamProduct):
            self._check_other(other)
            if self._same_layout(other):
                return self._combined(other, -1.0)
        return self._elementwise(other, torch.sub)

    def __rsub__(self, other):
        if is_real(other) and self.layout.all_floating:
            return self._scaled(-1.0, float(other))
        return self._elementwise(other, lambda a, b: torch.sub(b, a))

    def __mul__(self, other):
        if is_real(other) and self.layout.all_floating:
            return self._scaled(float(other))
        return self._elementwise(other, torch.mul)

    def __rmul__(self, other):
        if is_real(other) and self.layout.all_floating:
            return self._scaled(float(other))
        return self._elementwise(other, lambda a, b: torch.mul(b, a))

    def __truediv__(self, other):
        # x * (1/c): one fused pass, within one rounding of x / c, when 1/c is a
        # normal float32 (the kernels' coefficient type); else true division.
        if (is_real(other) and other != 0 and self.layout.all_floating
                and _FLOAT32_TINY < abs(1.0 / other) < _FLOAT32_MAX):
            return self._scaled(1.0 / float(other))
        return self._elementwise(other, torch.div)

    def __rtruediv__(self, other):
        return self._elementwise(other, lambda a, b: torch.div(b, a))

    def __pow__(self, other):
        return self._elementwise(other, torch.pow)

    def __rpow__(self, other):
        return self._elementwise(other, lambda a, b: torch.pow(b, a))

    def __neg__(self):
        if not self.layout.all_floating:
            return self._elementwise(-1, torch.mul)
        return self._scaled(-1.0)

    def __pos__(self):
        return self.clone()

    # ------------------------------------------------------ non-affine paths

    def _elementwise(self, other, fn: Callable[[Tensor, Tensor], Tensor]) -> "ParamProduct":
        """A non-affine operation: materialize, then one torch op per group (or per
        parameter when the operands' layouts differ, or `other` is a tensor)."""
        if isinstance(other, ParamProduct):
            self._check_other(other)
            if self._same_layout(other):
                mine, theirs = self.buffers(), other.buffers()
                with torch.no_grad():
                    out = [fn(a, b) for a, b in zip(mine, theirs)]
                return self._from_buffers(out)
            rhs = other.params
            return self._per_param(lambda pid, p: fn(p, rhs[pid]))
        if is_real(other):
            with torch.no_grad():
                out = [fn(buf, other) for buf in self.buffers()]
            return self._from_buffers(out)
        if isinstance(other, Tensor):  # nytorch passes tensors through to torch (broadcasting)
            return self._per_param(lambda pid, p: fn(p, other))
        if isinstance(other, nn.Module):  # NytoModules included
            raise SpeciesError("a product cannot be combined with a module; use module.product()")
        return NotImplemented

    def _from_buffers(self, out: list[Tensor]) -> "ParamProduct":
        if any(b.dtype != g.dtype for b, g in zip(out, self.layout.groups)):  # promotion
            views = self.layout.views(out)
            return self._from_tensors(OrderedDict(zip(self.layout.pids, views)))
        return self._like([out], [1.0], 0.0, self._result_extras())

    def _per_param(self, fn: Callable[[int, Tensor], Tensor]) -> "ParamProduct":
        params = self.params
        with torch.no_grad():
            computed = OrderedDict((pid, fn(pid, p)) for pid, p in params.items() if pid not in self.extras)
        return self._from_tensors(computed)

    def _from_tensors(self, tensors: "OrderedDict[int, Tensor]") -> "ParamProduct":
        """A new materialized product from per-parameter tensors (copied once)."""
        layout = Layout.of(tensors.items())
        buffers = layout.empty(DEFAULT_POOL)
        with torch.no_grad():
            for view, t in zip(layout.views(buffers), tensors.values()):
                view.copy_(t)
        return type(self)._make(self.kernel, self.module_id, layout, [buffers], [1.0], 0.0,
                                self._result_extras())

    def _result_extras(self):
        return self.extras  # non-operational parameters keep the left operand's value

    def unary_operator(self, fn: Callable[[Tensor, object], Tensor]) -> "ParamProduct":
        """nytorch's per-parameter hook: ``fn(param, config) -> tensor`` for every
        parameter (operational or not, as in nytorch)."""
        config = self.kernel.species.config
        with torch.no_grad():
            out = OrderedDict((pid, fn(p, config[pid])) for pid, p in self.params.items())
        return self._split_result(out)

    def binary_operator(self, other: "ParamProduct", fn: Callable[[Tensor, Tensor, object], Tensor]) -> "ParamProduct":
        """``fn(param, other_param, config) -> tensor`` for every parameter."""
        other = getattr(other, "product", other) if not isinstance(other, ParamProduct) else other
        self._check_other(other)
        config = self.kernel.species.config
        rhs = other.params
        with torch.no_grad():
            out = OrderedDict((pid, fn(p, rhs[pid], config[pid])) for pid, p in self.params.items())
        return self._split_result(out)

    def _split_result(self, out: "OrderedDict[int, Tensor]") -> "ParamProduct":
        operational = OrderedDict((pid, t) for pid, t in out.items() if pid not in self.extras)
        result = self._from_tensors(operational)
        result.extras = OrderedDict((pid, t) for pid, t in out.items() if pid in self.extras)
        return result

    # ------------------------------------------------------------ generators

    # New particles' buffers come from the pool too, so that when they are freed
    # their memory is recycled rather than returned to the allocator.

    def clone(self) -> "ParamProduct":
        return self._generated(lambda out, b: out.copy_(b))

    def randn(self) -> "ParamProduct":
        return self._generated(lambda out, b: out.normal_())  # as torch.randn_like

    def rand(self) -> "ParamProduct":
        return self._generated(lambda out, b: out.uniform_())  # as torch.rand_like

    def _generated(self, fill) -> "ParamProduct":
        source = self.buffers()
        out = self.layout.empty(DEFAULT_POOL)
        with torch.no_grad():
            for o, b in zip(out, source):
                fill(o, b)
        return self._like([out], [1.0], 0.0)

    # --------------------------------------------- fused updates (new in nytorch_ext)

    def blend(self, best: "ParamProduct", alpha: float) -> "ParamProduct":
        """``(1-alpha)*self + alpha*best``: APSO's W_i <- (1-a) W_i + a W_g, as one
        ``ops.blend`` pass per group (exactly self at 0, exactly best at 1)."""
        alpha = number(alpha, "alpha", tensor=True)
        self._check_other(best)
        if not self._same_layout(best):
            return self * (1.0 - alpha) + best * alpha
        out = self.layout.empty(DEFAULT_POOL)
        with torch.no_grad():
            for target, x, y in zip(out, self.buffers(), best.buffers()):
                ops.blend(x, y, alpha, out=target)
        return self._like([out], [1.0], 0.0)

    def blend_(self, best: "ParamProduct", alpha: float) -> "ParamProduct":
        """In place: ``self <- (1-alpha)*self + alpha*best``. When ``self`` came from
        ``particle.product()`` this updates the particle's parameters directly."""
        alpha = number(alpha, "alpha", tensor=True)
        self._check_other(best)
        if not self._same_layout(best):
            raise ValueError("blend_: the two products have different layouts (shapes, dtypes "
                             "or devices); use blend(), which handles that")
        theirs = best.buffers()
        mine = self.buffers()
        owner = self._owners[0]  # a particle's storage (a live product), else None
        if owner is None:
            blend_buffers_(mine, theirs, alpha)
        else:
            owner.blend_(theirs, alpha, keep=self, buffers=mine)
        return self

    def axpby(self, a: float, other: "ParamProduct", b: float) -> "ParamProduct":
        """``a*self + b*other``, lazily fused like any affine expression."""
        return self * float(a) + other * float(b)

    # ------------------------------------------------------------ conversion

    def module(self):
        """A new particle of the species whose parameters are views of this product's
        buffers (no per-parameter copy); returns its module ``module_id``."""
        return self.kernel.build(self)

    def particle(self):
        return self.module()

    def __repr__(self) -> str:
        state = "materialized" if self.is_materialized else f"lazy ({len(self._leaves)} leaves)"
        return (f"{type(self).__name__}({len(self.layout.slots)} operational params in "
                f"{len(self.layout.groups)} group(s), {len(self.extras)} other, {state})")


def lincomb(coeffs: Sequence[float], products: Sequence[ParamProduct], bias: float = 0.0) -> ParamProduct:
    """``sum_k coeffs[k]*products[k] + bias`` as one fused pass per group (lazy)."""
    if len(coeffs) == 0 or len(coeffs) != len(products):
        raise ValueError(f"coeffs ({len(coeffs)}) and products ({len(products)}) must be non-empty and of equal length")
    result = products[0] * float(coeffs[0])
    for c, p in zip(coeffs[1:], products[1:]):
        result = result + p * float(c)
    return result + float(bias) if bias else result
