"""ParticleModule, PMProduct and GetNytoModule (nytorch.particle_module API).

A NytoModule and its kernel reference each other, so a plain NytoModule is freed
only by Python's cycle collector. ParticleModule wraps the root NytoModule and
clears the modules' kernel references: particles in a loop such as
``net = 0.5 * net + 10`` are then freed as soon as they are unreferenced.
"""
from __future__ import annotations

import sys
from collections import OrderedDict

from torch import nn

from .arithmetic import ParticleArithmetic
from .module import NytoModule, NytoModuleBase, assign_product
from .mtype import DIFFERENT_SPECIES, ROOT_MODULE_ID, SpeciesError
from .product import ParamProduct
from .temporaries import is_temporary


class PMProduct:
    """A ParamProduct whose ``module()`` is a ParticleModule."""

    __slots__ = ("product",)

    def __init__(self, kernel, module_id: int = ROOT_MODULE_ID, params=None):
        self.product = ParamProduct(kernel, module_id, params)

    @classmethod
    def from_ParamProduct(cls, product: ParamProduct) -> "PMProduct":
        new = object.__new__(cls)
        new.product = product
        return new

    @property
    def kernel(self):
        return self.product.kernel

    @property
    def module_id(self) -> int:
        return self.product.module_id

    @property
    def params(self):
        return self.product.params

    def particle(self) -> "ParticleModule":
        kernel = self.product.kernel.build_kernel(self.product)
        return ParticleModule._wrap(kernel.modules[ROOT_MODULE_ID], kernel)

    def module(self) -> "ParticleModule":
        return self.particle()

    def _unwrap(self, other):
        if isinstance(other, PMProduct):
            return other.product
        if isinstance(other, (nn.Module, NytoModuleBase)):
            raise SpeciesError("a product cannot be combined with a module; use module.product()")
        return other

    def _apply(self, op: str, *other):
        """``op`` on the inner product; ``other`` absent for unary ops (None is an
        operand like any other, and gets Python's "unsupported operand" TypeError)."""
        inner = getattr(self.product, op)(*map(self._unwrap, other))
        return NotImplemented if inner is NotImplemented else type(self).from_ParamProduct(inner)

    def __add__(self, o): return self._apply("__add__", o)
    def __radd__(self, o): return self._apply("__radd__", o)
    def __sub__(self, o): return self._apply("__sub__", o)
    def __rsub__(self, o): return self._apply("__rsub__", o)
    def __mul__(self, o): return self._apply("__mul__", o)
    def __rmul__(self, o): return self._apply("__rmul__", o)
    def __truediv__(self, o): return self._apply("__truediv__", o)
    def __rtruediv__(self, o): return self._apply("__rtruediv__", o)
    def __pow__(self, o): return self._apply("__pow__", o)
    def __rpow__(self, o): return self._apply("__rpow__", o)
    def __neg__(self): return self._apply("__neg__")
    def __pos__(self): return self._apply("__pos__")

    def clone(self): return self._apply("clone")
    def randn(self): return self._apply("randn")
    def rand(self): return self._apply("rand")

    def unary_operator(self, fn):
        return type(self).from_ParamProduct(self.product.unary_operator(fn))

    def binary_operator(self, other, fn):
        if not isinstance(other, PMProduct):
            raise SpeciesError("binary_operator takes a PMProduct")
        return type(self).from_ParamProduct(self.product.binary_operator(other.product, fn))

    def blend(self, best: "PMProduct", alpha: float) -> "PMProduct":
        return type(self).from_ParamProduct(self.product.blend(self._unwrap(best), alpha))

    def blend_(self, best: "PMProduct", alpha: float) -> "PMProduct":
        self.product.blend_(self._unwrap(best), alpha)
        return self

    def axpby(self, a: float, other: "PMProduct", b: float) -> "PMProduct":
        return type(self).from_ParamProduct(self.product.axpby(a, self._unwrap(other), b))

    def __repr__(self) -> str:
        return f"PMProduct({self.product!r})"


_ROOT = "root_module"


class ParticleModule(ParticleArithmetic, nn.Module):
    """Wraps a root NytoModule so that particles are freed without the cycle collector.

    It stands in for the wrapped module (the user's model): public attributes it does
    not have itself are read from ``root_module`` (``pm.fc1`` is ``pm.root_module.fc1``),
    and assigning one that only ``root_module`` has assigns it there (a structural
    change, such as a new Parameter or submodule, still needs ``GetNytoModule``).
    :meth:`module_state_dict` is the wrapped module's state dict, without the
    ``root_module.`` prefix, which loads into a plain instance of the user's class.
    """

    def __init__(self, root_module: NytoModule) -> None:
        if not isinstance(root_module, NytoModule):
            raise TypeError(f"ParticleModule wraps a NytoModule, got {type(root_module).__name__}")
        kernel = root_module.__dict__.get("_particle_kernel")
        if root_module._module_id != ROOT_MODULE_ID or kernel is None:
            raise ValueError("ParticleModule wraps the root module of a particle that is not "
                             "already wrapped (its kernel reference is cleared)")
        kernel.touch()  # know every NytoModule child before clearing their references
        self._init(root_module, kernel)

    def _init(self, root_module, kernel) -> None:
        super().__init__()
        self.particle_kernel = kernel
        self.root_module = root_module
        self.clear_kernel_ref()

    @classmethod
    def _wrap(cls, root_module, kernel) -> "ParticleModule":
        """Wrap a root whose kernel reference may already be cleared."""
        new = cls.__new__(cls)
        ParticleModule._init(new, root_module, kernel)
        return new

    def forward(self, *args, **kwargs):
        return self.root_module(*args, **kwargs)

    # ------------------------------------------------ the wrapped module's face

    def _root_or_none(self):
        return self.__dict__.get("_modules", {}).get(_ROOT)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # own parameters, buffers and children
        except AttributeError:
            root = self._root_or_none()
            # private and dunder names stay the wrapper's: torch and copy/pickle probe them
            if root is None or name.startswith("_"):
                raise
        try:
            return getattr(root, name)
        except AttributeError:
            raise AttributeError(f"'{type(self).__name__}' object and its root_module "
                                 f"({type(root).__name__}) have no attribute '{name}'") from None

    def __setattr__(self, name: str, value) -> None:
        root = self._root_or_none()
        if root is not None and not name.startswith("_") and not _has(self, name) and _has(root, name):
            setattr(root, name, value)
        else:
            super().__setattr__(name, value)

    def __dir__(self):
        root = self._root_or_none()
        extra = [] if root is None else [n for n in dir(root) if not n.startswith("_")]
        return sorted(set(super().__dir__()) | set(extra))

    def module_state_dict(self, *, keep_vars: bool = False) -> dict:
        """``root_module``'s entries of :meth:`state_dict` with the ``root_module.``
        prefix removed: the state dict of the user's module, which
        ``MyNet().load_state_dict(...)`` accepts. It goes through this module's
        ``state_dict`` (so a swarm member's hook still makes compact copies of its row);
        entries of a subclass's own parameters or buffers, outside ``root_module``,
        are left out."""
        full = self.state_dict(keep_vars=keep_vars)
        prefix = _ROOT + "."
        out: OrderedDict = OrderedDict((k[len(prefix):], v) for k, v in full.items() if k.startswith(prefix))
        meta = getattr(full, "_metadata", None)
        if meta is not None:  # module versions, read by load_state_dict (BatchNorm's, ...)
            out._metadata = OrderedDict(  # type: ignore[attr-defined]
                ("" if k == _ROOT else k[len(prefix):], v) for k, v in meta.items()
                if k == _ROOT or k.startswith(prefix))
        return out

    def load_module_state_dict(self, state_dict, strict: bool = True):
        """Load a state dict of the user's module (no ``root_module.`` prefix, as
        :meth:`module_state_dict` gives or ``MyNet().state_dict()``) in place:
        ``root_module.load_state_dict(state_dict, strict)``."""
        return self.root_module.load_state_dict(state_dict, strict=strict)

    def _nyto_modules(self):
        # The kernel knows the particle's modules; walking root_module.modules()
        # costs a generator step per module.
        return [m for m in self.particle_kernel.modules.values() if isinstance(m, NytoModuleBase)]

    def clear_kernel_ref(self) -> None:
        for m in self._nyto_modules():
            m.__dict__["_particle_kernel"] = None

    def restore_kernel_ref(self) -> None:
        for m in self._nyto_modules():
            m.__dict__["_particle_kernel"] = self.particle_kernel

    # ------------------------------------------------------------ particle API

    def touch(self) -> "ParticleModule":
        self.particle_kernel.touch()
        return self

    def product(self) -> PMProduct:
        return PMProduct.from_ParamProduct(self.particle_kernel.product(ROOT_MODULE_ID))

    def product_(self, product) -> "ParticleModule":
        refs = sys.getrefcount(product)  # first: a temporary argument may be consumed
        inner = product.product if isinstance(product, PMProduct) else product
        inner_refs = sys.getrefcount(inner) if inner is not product else None
        return self._assign(inner, is_temporary(refs, inner_refs), product)

    def _assign(self, inner, consumed: bool, given=None) -> "ParticleModule":
        assign_product(self.particle_kernel, inner, consumed, given, "PMProduct")
        return self

    def _whole_kernel(self):
        return self.particle_kernel

    def _other_product(self, other):
        if isinstance(other, ParticleModule):
            if other.particle_kernel.species is not self.particle_kernel.species:
                raise SpeciesError(DIFFERENT_SPECIES.format(what="particles"))
            return other.product()
        if isinstance(other, (PMProduct, ParamProduct)):
            raise SpeciesError("a module cannot be combined with a product; use module.product()")
        if isinstance(other, nn.Module):
            raise SpeciesError(f"a ParticleModule cannot be combined with {type(other).__name__}")
        return other


def _has(module: nn.Module, name: str) -> bool:
    """Whether ``module`` has the attribute ``name`` (without calling properties)."""
    d = module.__dict__
    return (name in d or hasattr(type(module), name) or name in d.get("_parameters", {})
            or name in d.get("_buffers", {}) or name in d.get("_modules", {}))


class GetNytoModule:
    """``with GetNytoModule(pm) as root:`` the root module with its kernel reference
    restored (for set_param_config, structural edits, ...); cleared again on exit."""

    def __init__(self, particle_module: ParticleModule) -> None:
        if not isinstance(particle_module, ParticleModule):
            raise TypeError("GetNytoModule takes a ParticleModule")
        self.particle_module = particle_module

    def __enter__(self) -> NytoModule:
        self.particle_module.restore_kernel_ref()
        return self.particle_module.root_module

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        try:
            self.particle_module.particle_kernel.touch()  # adopt children added inside
        finally:
            self.particle_module.clear_kernel_ref()
