"""ParticleKernel: one particle's structure and flat storage.

A :class:`ParticleKernel` belongs to one particle: its modules by ModuleID, its
parameters by ParamID (registration order, as nytorch numbers them), and its
:class:`Storage`: the flat buffers its operational parameters are views of. Before
every operation the kernel checks, from the parameters' data pointers, that the
views are still in place (``.to()``, ``.half()``, ``param.data = ...`` replace
them) and re-flattens if not, keeping the Parameter objects, so optimizers built
on them stay valid.

The parts live beside it: the species and its change log (:mod:`.species`),
reading the tree (:mod:`.scan`), replaying a change (:mod:`.replay`) and copying
the tree into a new particle (:mod:`.build_plan`); their public names stay
importable from here (``__all__``) for callers of ``nytorch_ext.particles.kernel``.
"""
from __future__ import annotations

import operator
from collections import OrderedDict

import torch
from torch import nn

from .build_plan import BuildPlan, copy_module_tree, plan_of, python_copy_module_tree, shallow_copy
from .layout import Layout, flatten_into
from .mtype import ROOT_MODULE_ID, ParamConfig
from .placement import entries_are
from .pool import DEFAULT_POOL
from .product import ParamProduct
from .replay import replay
from .scan import buffer_changes, removed_modules, removed_params, walk
from .species import Change, Species, mark_dirty
from .storage import Storage

__all__ = ["ParticleKernel", "Species", "Change", "mark_dirty", "Storage", "BuildPlan", "copy_module_tree",
           "python_copy_module_tree", "shallow_copy"]


class ParticleKernel:
    """The structure and storage of one particle."""

    def __init__(self, species: Species, version: int):
        self.species = species
        self.version = version
        # By id, in order (plain dicts: ordered, and half the cost of OrderedDicts
        # for a particle of many small tensors).
        self.modules: dict[int, nn.Module] = {}
        self.params: dict[int, nn.Parameter] = {}
        self.storage: Storage | None = None
        # Shared with the particle's NytoModules, which set it on structural changes:
        # [dirty, species], not a back-reference to the kernel, so a cleared
        # ParticleModule root (no kernel reference, no cycle) can still report them.
        self.cell: list = [False, species]
        self._buffer_ids: dict = {}
        # Each placement of a parameter: (parameter dicts, names, Parameters), parallel lists.
        self.places: tuple[list, list, list] = ([], [], [])
        self.param_places: dict = {}   # pid -> (mid, name) of its first placement
        self.module_places: dict = {}  # mid -> (parent mid, name)
        species.members.add(self)

    @property
    def dirty(self) -> bool:
        return bool(self.cell[0])

    @dirty.setter
    def dirty(self, value: bool) -> None:
        if value:
            mark_dirty(self.cell)
        else:
            self.cell[0] = False

    def move_to(self, species: Species) -> None:
        """Leave this species for another (detach)."""
        self.species.members.discard(self)
        self.species = species
        self.cell[1] = species
        species.members.add(self)

    # nytorch: particle_kernel.data.params, particle_kernel.version
    @property
    def data(self) -> ParticleKernel:
        return self

    def __getstate__(self):  # the flat storage is rebuilt from the parameters on load
        state = dict(self.__dict__)
        state["storage"] = None
        state.pop("_operational", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.species.members.add(self)

    # ------------------------------------------------------------- structure

    def scan(self, root: nn.Module) -> Change:
        """Re-read the structure from the module tree, keeping known ids, giving new
        modules and parameters new ids (pre-order, registration order); returns what
        changed."""
        mid_of = {id(m): mid for mid, m in self.modules.items()}
        pid_of = {id(p): pid for pid, p in self.params.items()}
        found = walk(root, self, self.species, mid_of, pid_of)
        change = found.change
        self.places = found.places
        change.removed_modules = removed_modules(self.modules, self.module_places, found)
        change.removed_params = removed_params(self.params, self.param_places, found)
        self.param_places, self.module_places = found.param_places, found.module_places
        change.buffers = buffer_changes(self._buffer_ids, found)
        self._buffer_ids = found.buffers
        self.modules = found.modules
        self.params = dict(sorted(found.params.items()))
        self._update_config(change)
        self.dirty = False
        return change

    def _update_config(self, change: Change) -> None:
        """New parameters get the default configuration; removed ones lose theirs
        once no member of the species has them."""
        config = self.species.config
        for pid in self.params:
            config.setdefault(pid, ParamConfig())
        for pid, *_ in change.removed_params:
            if not any(pid in k.params for k in self.species.members if k is not self):
                config.pop(pid, None)

    def record(self, root: nn.Module) -> None:
        """Re-scan after a structural change here, and log it for the species.
        Changes other particles logged meanwhile are replayed first (this
        particle's own edits stay in place), so none is skipped."""
        if self.version < self.species.version:
            # This particle's own new entries go after the replayed ones, as if
            # its change had been made after theirs (the order the log gives).
            own = self._set_aside_new_entries()
            self._replay_log()
            for table, new in own:
                table.update(new)
        change = self.scan(root)
        if not change.empty:
            # alone in the species: nobody needs to replay it
            self.species.log.append(change if len(self.species.members) > 1 else Change())
            self.version = self.species.version

    def _set_aside_new_entries(self) -> list:
        """Take out the parameters and children added here since the last scan
        (a replacement under a known name keeps its place); returns (table, entries)
        pairs to put back."""
        known = {id(v) for v in self.params.values()} | {id(v) for v in self.modules.values()}
        names = set(self.param_places.values()) | set(self.module_places.values())
        own: list = []
        for mid, module in self.modules.items():
            tables: tuple[dict, dict] = (module._parameters, module._modules)
            for table in tables:
                new = [(n, v) for n, v in table.items()
                       if v is not None and id(v) not in known and (mid, n) not in names]
                for n, _ in new:
                    del table[n]
                own.append((table, new))
        return own

    def _replay_log(self, rescan_root: nn.Module | None = None) -> None:
        """Replay the species' changes logged since this particle's version (re-scanning
        ``rescan_root`` after each, when given)."""
        while self.version < self.species.version:
            replay(self.species.log[self.version], self.modules, self.params)
            self.version += 1
            if rescan_root is not None:
                self.scan(rescan_root)

    def touch(self) -> None:
        """Catch up with structural changes made on other particles of the species
        (recording first any change a member has made and not yet logged)."""
        species = self.species
        if species.pending:
            species.pending = False
            order, species.dirty_order = species.dirty_order, []
            by_cell = {id(m.cell): m for m in species.members}
            for cell in order:  # in the order the members changed, this one included
                member = by_cell.get(id(cell))
                if member is not None and member.dirty:
                    member.record(member.modules[ROOT_MODULE_ID])
        root = self.modules[ROOT_MODULE_ID]
        if not self.dirty and not self._placed():
            self.dirty = True  # a Parameter replaced inside a plain nn.Module child
        if self.dirty:
            self.record(root)
        self._replay_log(rescan_root=root)

    def _placed(self) -> bool:
        """Every parameter is still where the last scan found it (dict lookups in C)."""
        return bool(entries_are(*self.places))

    # --------------------------------------------------------------- storage

    def operational(self) -> list:
        """(pid, Parameter) of the operational parameters; cached until the
        parameters or the species' configuration change."""
        return self._operational_cache()[0]

    def non_operational(self) -> list:
        """(pid, Parameter) of the other parameters (cached likewise)."""
        return self._operational_cache()[2]

    def _operational_cache(self) -> tuple:
        """(the operational (pid, Parameter) pairs, their Parameters, the other
        (pid, Parameter) pairs), cached."""
        key = self.species.config_version
        cache = self.__dict__.get("_operational")
        if cache is not None and cache[0] == key and cache[1] is self.params:
            return cache[2]
        config = self.species.config
        op = [(pid, p) for pid, p in self.params.items() if config[pid].operational]
        others = [(pid, p) for pid, p in self.params.items() if not config[pid].operational]
        self._operational = (key, self.params, (op, [p for _, p in op], others))
        return self._operational[2]

    def flat(self) -> Storage:
        """The flat storage, re-flattened first if a parameter's storage was replaced."""
        op, params, _ = self._operational_cache()
        st = self.storage
        if st is not None and st.intact(params, self.species.config_version):
            st.params = params  # the same objects: next time the identity check suffices
            return st
        layout = Layout.of((pid, p.data) for pid, p in op)
        buffers = layout.empty(DEFAULT_POOL)
        flatten_into(layout, [p.data for p in params], buffers)
        for p, view in zip(params, layout.views(buffers)):
            p.data = view
        if st is not None and st.recycle:
            DEFAULT_POOL.give(st.buffers)
        self.storage = Storage(layout, buffers, params, layout.addresses(buffers),
                               self.species.config_version)
        return self.storage

    def adopt(self, buffers: list) -> Storage:
        """Move the operational parameters into ``buffers`` (flat buffers of this
        particle's layout that someone else owns, e.g. rows of a swarm's [K, N]
        storage), copying their values; the Parameter objects are kept."""
        st = self.flat()
        if all(map(operator.is_, buffers, st.buffers)):
            return st
        layout = st.layout
        bad = [(g, b) for g, b in zip(layout.groups, buffers)
               if b.dtype != g.dtype or b.device != g.device or b.shape != (g.size,) or not b.is_contiguous()]
        if len(buffers) != len(layout.groups) or bad:
            raise ValueError("adopt: the buffers do not match the particle's flat layout")
        with torch.no_grad():
            for new, old in zip(buffers, st.buffers):
                new.copy_(old)
        # Lazy products reading the old buffers keep them (and their values): no settle needed.
        for p, view in zip(st.params, layout.views(buffers)):
            p.data = view
        if st.recycle:
            DEFAULT_POOL.give(st.buffers)
        self.storage = Storage(layout, list(buffers), st.params, layout.addresses(buffers),
                               st.config_version, recycle=False)
        return self.storage

    def product(self, module_id: int = ROOT_MODULE_ID) -> ParamProduct:
        """Zero-copy: the product's buffers are this particle's flat storage."""
        self.touch()
        st = self.flat()
        extras = OrderedDict(self.non_operational())
        return ParamProduct._make(self, module_id, st.layout, [st.buffers], [1.0], 0.0, extras, owners=[st],
                                  live=True)

    def assign(self, product: ParamProduct, consumed: bool = False) -> None:
        """This particle's parameters <- the product's values, in place (the same
        Parameter objects and storage); one fused pass per group. ``consumed``: the
        product is a temporary nobody else holds (its snapshots of this particle
        may be dropped before the write). Checks everything before writing."""
        self.touch()
        st = self.flat()
        product._current()
        same = product.layout == st.layout
        values = {} if same else product.params
        targets = {} if same else dict(self.operational())
        extras = [(self.params.get(pid), value) for pid, value in product.extras.items()]
        _check_assignable(targets, values, extras)
        st.settle(keep=product)  # other lazy products snapshotting this storage: values first
        if same:
            product._evaluate_onto(st, consumed)
        else:
            with torch.no_grad():
                for pid, p in targets.items():
                    p.data.copy_(values[pid])
        with torch.no_grad():
            for p, value in extras:
                if p is not None and value is not p:
                    p.data.copy_(value)

    # ------------------------------------------------------------- particles

    def build_plan(self) -> BuildPlan:
        """How to copy the module tree, the same for every member of the species at
        one version (computed once per structural version, not per new particle)."""
        plan = self.species.cached_plan(len(self.modules))
        if plan is None:
            plan = plan_of(self.modules, self.params)
            self.species.cache_plan(plan)
        return plan

    def build(self, product: ParamProduct) -> nn.Module:
        """A new particle of this species holding ``product``'s values: module objects
        are shallow copies, operational parameters are views of the product's
        buffers, non-operational ones are cloned or shared as configured. Returns
        its module ``product.module_id``."""
        return self.build_kernel(product).modules[product.module_id]

    def build_kernel(self, product: ParamProduct) -> ParticleKernel:
        """As build(), returning the new particle's kernel. (Parameters and module
        objects are made in C when the extension is loaded: that is most of the cost
        of a particle of many small tensors.)"""
        buffers = product.buffers()
        layout = product.layout
        kernel = ParticleKernel(self.species, self.species.version)
        old = self.params
        operational = layout.parameters(buffers, [old[pid].requires_grad for pid in layout.pids])
        if len(operational) == len(old):  # every parameter operational: layout order is pid order
            values = operational
        else:
            values = self._with_non_operational(product, dict(zip(layout.pids, operational)))
        plan = self.build_plan()
        copies, kernel.places = copy_module_tree(list(map(self.modules.__getitem__, plan.mids)), *plan[1:-1],
                                                 values, plan.nyto_ids, kernel, kernel.cell)
        kernel.modules = dict(zip(plan.mids, copies))
        kernel.params = dict(zip(old, values))
        kernel._buffer_ids = dict(self._buffer_ids)
        kernel.param_places, kernel.module_places = self.param_places, self.module_places  # same ids, same names
        # The views were made from the product's layout: the storage is in place.
        kernel.storage = Storage(layout, buffers, operational, layout.addresses(buffers),
                                 self.species.config_version)
        return kernel

    def _with_non_operational(self, product: ParamProduct, new_params: dict) -> list:
        """Every parameter in pid order: ``new_params`` (the operational ones) and
        the others, cloned or shared as configured."""
        config = self.species.config
        for pid, p in self.non_operational():
            value = product.extras.get(pid, p)
            new_params[pid] = nn.Parameter(value.detach().clone(), p.requires_grad) \
                if config[pid].clone else value
        return list(map(new_params.__getitem__, self.params))


def _check_assignable(targets: dict, values: dict, extras: list) -> None:
    """Every parameter written by ``assign`` gets a value of its shape (before anything is written)."""
    for pid, p in targets.items():
        value = values.get(pid)
        if value is None or value.shape != p.shape:
            raise ValueError(
                f"product_: parameter {pid} ({tuple(p.shape)}) has no value of that shape in the "
                f"product ({None if value is None else tuple(value.shape)}); nothing was changed")
    for p, value in extras:
        if p is not None and value is not p and value.shape != p.shape:
            raise ValueError(f"product_: a non-operational parameter {tuple(p.shape)} gets a value "
                             f"of shape {tuple(value.shape)}; nothing was changed")
