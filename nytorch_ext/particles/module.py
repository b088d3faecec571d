"""NytoModule: an ``nn.Module`` that is a particle (nytorch's API, flat storage).

Subclass it instead of ``nn.Module``; then models combine like tensors::

    net2 = 0.5 * net0 + 0.5 * net1          # one fused pass per (dtype, device) group
    net0 += 0.1 * (net1 - net0)             # in place: same Parameter objects

Every arithmetic operation goes through :class:`~nytorch_ext.particles.product.ParamProduct`
(``module.product()``), whose affine expressions are evaluated lazily in one pass.
"""
from __future__ import annotations

import sys
import warnings
from typing import Callable, Optional, cast

import torch
from torch import Tensor, nn

from .arithmetic import ParticleArithmetic
from .kernel import ParticleKernel
from .mtype import DIFFERENT_SPECIES, ROOT_MODULE_ID, ParamConfig, SpeciesError
from .product import ParamProduct
from .species import Species, mark_dirty
from .temporaries import is_temporary


def assign_product(kernel: ParticleKernel, product, consumed: bool, given, expected: str) -> None:
    """``product_``'s checks and write, for NytoModule and ParticleModule alike:
    ``product`` must be a ParamProduct of ``kernel``'s species (``given``: what the
    caller passed, named in the error; ``expected``: the type the caller takes)."""
    if not isinstance(product, ParamProduct):
        given = product if given is None else given
        hint = "; for a module use module.product()" if isinstance(given, nn.Module) else ""
        raise SpeciesError(f"product_ takes a {expected}, not {type(given).__name__}{hint}")
    if product.kernel.species is not kernel.species:
        raise SpeciesError("product_: the product belongs to another species")
    kernel.assign(product, consumed)


class NytoModuleBase(nn.Module):
    """The part every particle module shares: its kernel and module id."""

    _is_nyto_module = True
    # In the instance __dict__ (set directly, past nn.Module.__setattr__):
    _module_id: int
    _particle_kernel: ParticleKernel | None  # None: the root of a ParticleModule

    def __init__(self) -> None:
        super().__init__()
        d = self.__dict__
        d["_module_id"] = ROOT_MODULE_ID
        kernel = ParticleKernel(Species(), 0)
        d["_particle_kernel"] = kernel
        d["_nyto_cell"] = kernel.cell
        kernel.modules[ROOT_MODULE_ID] = self
        kernel.dirty = True

    # -------------------------------------------------- structural changes

    def _kernel(self) -> ParticleKernel:
        kernel = self.__dict__.get("_particle_kernel")
        if kernel is None:
            raise SpeciesError(
                "this module's kernel reference is cleared (it is the root of a "
                "ParticleModule): operate on the ParticleModule, or use "
                "`with GetNytoModule(particle_module) as m:`")
        return kernel

    def _structure_changed(self) -> None:
        cell = self.__dict__.get("_nyto_cell")
        if cell is not None:
            mark_dirty(cell)

    def _registered(self, name: str, value) -> None:
        """Note a structural assignment: its order (nytorch numbers parameters in
        registration order) and, for a NytoModule child, adopt it into this particle
        now, so it never acts as a particle of its own."""
        order = self.__dict__.setdefault("_nyto_order", [])
        if name not in order:
            order.append(name)
        if isinstance(value, NytoModuleBase) and value is not self:
            cell = self.__dict__.get("_nyto_cell")
            kernel = self.__dict__.get("_particle_kernel")
            for m in value.modules():
                if isinstance(m, NytoModuleBase):
                    if kernel is not None:
                        m.__dict__["_particle_kernel"] = kernel
                    m.__dict__["_nyto_cell"] = cell
            self._structure_changed()
            if kernel is not None:
                kernel.touch()  # number the child now (its _module_id) as nytorch does
            return
        self._structure_changed()

    def _check_structural(self, name: str, value, kind: str) -> None:
        """Refuse, before anything changes, a structural assignment that a particle
        cannot follow: an attribute changing kind (a parameter becoming a module,
        buffer or plain value; a module becoming a buffer or value; a buffer becoming
        a value; a plain value becoming a buffer), or any structural change to the
        root of a ParticleModule outside ``GetNytoModule``. Warns, as nytorch does,
        about modules shared between particles and references back to the root."""
        d = self.__dict__
        if "_particle_kernel" in d and d["_particle_kernel"] is None:
            raise RuntimeError(
                f"cannot set {type(self).__name__}.{name}: this module belongs to a "
                f"ParticleModule; change its structure inside `with GetNytoModule(particle) as m:`")
        params, modules, buffers = d.get("_parameters", {}), d.get("_modules", {}), d.get("_buffers", {})
        was = ("parameter" if name in params else "module" if name in modules
               else "buffer" if name in buffers else "value" if name in d else None)
        if was is not None and was != kind and value is not None and (
                was == "parameter" or (was == "module" and kind in ("buffer", "value"))
                or (was == "buffer" and kind == "value") or (was == "value" and kind == "buffer")):
            raise TypeError(
                f"cannot turn {type(self).__name__}.{name} from a {was} into a {kind} "
                f"({type(value).__name__}): a particle's attributes keep their kind; "
                f"delete it first (del module.{name})")
        if isinstance(value, NytoModuleBase) and value is not self:
            mine = d.get("_particle_kernel")
            theirs = value.__dict__.get("_particle_kernel")
            if mine is not None and theirs is mine and value._module_id == ROOT_MODULE_ID:
                warnings.warn("circular references to the root module: "
                              f"{type(self).__name__}.{name} is its particle's root", stacklevel=3)
            elif theirs is not None and theirs is not mine and value._module_id != ROOT_MODULE_ID:
                warnings.warn("modules from different particles refer to the same module: "
                              f"{type(value).__name__} assigned to {type(self).__name__}.{name} "
                              "is already part of another particle", stacklevel=3)

    def __setattr__(self, name, value):
        if isinstance(value, (nn.Parameter, nn.Module)):
            self._check_structural(name, value, "parameter" if isinstance(value, nn.Parameter) else "module")
        elif name in self.__dict__.get("_buffers", {}):
            self._check_structural(name, value, "buffer" if value is None or isinstance(value, Tensor)
                                   else "value")
        elif value is not None and (name in self.__dict__.get("_parameters", {})
                                    or name in self.__dict__.get("_modules", {})):
            self._check_structural(name, value, "value")
        elif value is None and self._is_structural_name(name):
            self._check_structural(name, value, "none")
        super().__setattr__(name, value)
        if isinstance(value, (nn.Parameter, nn.Module)) or value is None or name in self._buffers:
            self._registered(name, value)

    def _is_structural_name(self, name: str) -> bool:
        d = self.__dict__
        return name in d.get("_parameters", {}) or name in d.get("_modules", {}) or name in d.get("_buffers", {})

    def __delattr__(self, name):
        if self._is_structural_name(name):
            self._check_structural(name, None, "none")
        super().__delattr__(name)
        self._structure_changed()

    def register_parameter(self, name, param):
        self._check_structural(name, param, "parameter")
        super().register_parameter(name, param)
        self._registered(name, param)

    def add_module(self, name, module):
        self._check_structural(name, module, "module")
        super().add_module(name, module)
        self._registered(name, module)

    def register_buffer(self, name, tensor, persistent: bool = True):
        self._check_structural(name, tensor if tensor is not None else torch.empty(0), "buffer")
        super().register_buffer(name, tensor, persistent)
        self._structure_changed()

    @property
    def is_root(self) -> bool:
        return self._module_id == ROOT_MODULE_ID

    @property
    def _version_kernel(self) -> Species:
        return self._kernel().species


class NytoModule(ParticleArithmetic, NytoModuleBase):
    """A module whose instances are particles: see the module docstring."""

    # ------------------------------------------------------------ products

    def touch(self) -> "NytoModule":
        """Catch up with structural changes made on other particles of the species."""
        self._kernel().touch()
        return self

    def product(self) -> ParamProduct:
        """This particle's parameters as a product, zero-copy (its flat storage)."""
        kernel = self._kernel()
        kernel.touch()  # may renumber this module (a newly adopted child)
        return kernel.product(self._module_id)

    def product_(self, product: ParamProduct) -> "NytoModule":
        """Assign ``product``'s values to this particle's parameters in place (the same
        Parameter objects: optimizers stay valid); one fused pass per group."""
        refs = sys.getrefcount(product)  # first: a temporary argument may be consumed
        inner = getattr(product, "product", None) if not isinstance(product, (ParamProduct, nn.Module)) else product
        inner = product if inner is None else inner
        inner_refs = sys.getrefcount(inner) if inner is not product else None
        return self._assign(inner, is_temporary(refs, inner_refs), product)

    def _assign(self, product, consumed: bool, given=None) -> "NytoModule":
        assign_product(self._kernel(), product, consumed, given, "ParamProduct")
        return self

    # ---------------------------------------------------------- operators

    def _whole_kernel(self):
        return self._kernel() if self._module_id == ROOT_MODULE_ID else None

    def _other_product(self, other):
        if isinstance(other, NytoModuleBase):
            if other._kernel().species is not self._kernel().species:
                raise SpeciesError(DIFFERENT_SPECIES.format(what="particles"))
            return other.product()  # type: ignore[operator]  # every particle module defines product()
        if isinstance(other, ParamProduct):
            raise SpeciesError("a module cannot be combined with a product; use module.product()")
        return other

    def detach(self) -> "NytoModule":
        """A new species sharing this particle's Parameter objects."""
        kernel = self._kernel()
        kernel.touch()
        clone = kernel.build(kernel.product(self._module_id))
        new_kernel = clone.__dict__["_particle_kernel"]
        species = Species()
        species.config = {pid: c.copy() for pid, c in kernel.species.config.items()}
        species.next_pid, species.next_mid = kernel.species.next_pid, kernel.species.next_mid
        new_kernel.move_to(species)
        # share the Parameter objects themselves, as nytorch does
        for module in new_kernel.modules.values():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    pid = next(pid for pid, q in new_kernel.params.items() if q is p)
                    module._parameters[name] = kernel.params[pid]
        new_kernel.params = type(kernel.params)(kernel.params)
        new_kernel.storage = None
        return cast(NytoModule, clone)

    # -------------------------------------------------------------- config

    def get_param_id(self, target_param: nn.Parameter) -> int:
        kernel = self._kernel()
        kernel.touch()
        for pid, p in kernel.params.items():
            if p is target_param:
                return pid
        raise ValueError(f"can not found param: {target_param}")

    def _config_scope(self, name: Optional[str]):
        kernel = self._kernel()
        kernel.touch()
        scope: object
        if name is None:
            scope = self
        else:
            scope = getattr(self, name, None)
            if scope is None:
                raise ValueError(f"attar {name} is None or not exists")
        if isinstance(scope, nn.Parameter):
            params = [scope]
        elif isinstance(scope, nn.Module):
            params = list(scope.parameters())
        else:
            raise ValueError(f"attar {name} is None or not exists")
        ids = {id(p) for p in params}
        return kernel, [pid for pid, p in kernel.params.items() if id(p) in ids]

    def apply_param_config(self, fn: Callable[[int, ParamConfig], None], name: Optional[str] = None) -> None:
        """Call ``fn(param_id, config)`` for every parameter in scope, in id order."""
        kernel, pids = self._config_scope(name)
        for pid in pids:
            fn(pid, kernel.species.config[pid])
        kernel.species.config_version += 1

    def set_param_config(self, operational: Optional[bool] = None, clone: Optional[bool] = None,
                         name: Optional[str] = None) -> None:
        """Set ``operational``/``clone`` (None: unchanged) for the whole particle, or for
        the parameter or submodule attribute ``name``."""
        def update(pid: int, config: ParamConfig) -> None:
            if operational is not None:
                config.operational = bool(operational)
            if clone is not None:
                config.clone = bool(clone)
        self.apply_param_config(update, name)
