"""NytoModule: an ``nn.Module`` that is a particle (nytorch's API, flat storage).

Subclass it instead of ``nn.Module``; then models combine like tensors::

    net2 = 0.5 * net0 + 0.5 * net1          # one fused pass per (dtype, device) group
    net0 += 0.1 * (net1 - net0)             # in place: same Parameter objects

Every arithmetic operation goes through :class:`~nytorch_ext.product.ParamProduct`
(``module.product()``), whose affine expressions are evaluated lazily in one pass.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from .arithmetic import ParticleArithmetic
from .kernel import ParticleKernel, Species
from .mtype import DIFFERENT_SPECIES, ROOT_MODULE_ID, ParamConfig, SpeciesError
from .product import ParamProduct


class NytoModuleBase(nn.Module):
    """The part every particle module shares: its kernel and module id."""

    _is_nyto_module = True

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
            cell[0] = True
            cell[1].pending = True

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

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if isinstance(value, (nn.Parameter, nn.Module)) or value is None or name in self._buffers:
            self._registered(name, value)

    def __delattr__(self, name):
        super().__delattr__(name)
        self._structure_changed()

    def register_parameter(self, name, param):
        super().register_parameter(name, param)
        self._registered(name, param)

    def add_module(self, name, module):
        super().add_module(name, module)
        self._registered(name, module)

    def register_buffer(self, name, tensor, persistent: bool = True):
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
        if not isinstance(product, ParamProduct):
            product = getattr(product, "product", product)
        if not isinstance(product, ParamProduct):
            raise SpeciesError(f"product_ takes a ParamProduct, not {type(product).__name__}")
        kernel = self._kernel()
        if product.kernel.species is not kernel.species:
            raise SpeciesError("product_: the product belongs to another species")
        kernel.assign(product)
        return self

    # ---------------------------------------------------------- operators

    def _whole_kernel(self):
        return self._kernel() if self._module_id == ROOT_MODULE_ID else None

    def _other_product(self, other):
        if isinstance(other, NytoModuleBase):
            if other._kernel().species is not self._kernel().species:
                raise SpeciesError(DIFFERENT_SPECIES.format(what="particles"))
            return other.product()
        if isinstance(other, ParamProduct):
            raise SpeciesError("a module cannot be combined with a product; use module.product()")
        return other

    def detach(self) -> "NytoModule":
        """A new species sharing this particle's Parameter objects."""
        kernel = self._kernel()
        kernel.touch()
        clone = kernel.build(kernel.product(self._module_id))
        new_kernel = clone._particle_kernel
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
        return clone

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
