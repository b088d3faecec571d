"""Species and particle kernels: who a particle is, what it holds, how it changes.

A :class:`Species` is shared by every particle made from one original model (by
operations, ``clone``, ``randn``, ...): the per-parameter :class:`ParamConfig`, id
counters, and a log of structural changes (parameters, submodules and buffers added
or removed) that other particles replay at ``touch()``.

A :class:`ParticleKernel` belongs to one particle: its modules by ModuleID, its
parameters by ParamID (registration order, as nytorch numbers them), and its
:class:`Storage`: the flat buffers its operational parameters are views of. Before
every operation the kernel checks, from the parameters' data pointers, that the
views are still in place (``.to()``, ``.half()``, ``param.data = ...`` replace
them) and re-flattens if not, keeping the Parameter objects, so optimizers built
on them stay valid.
"""
from __future__ import annotations

import operator
import weakref
from itertools import repeat
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from .flat import DEFAULT_POOL, Layout, entries_are, flatten_into, views_in_place
from .mtype import ROOT_MODULE_ID, ParamConfig
from .product import ParamProduct
from .storage import Storage


@dataclass
class Change:
    """One structural change made on one particle, replayed by the others."""
    added_modules: list = field(default_factory=list)    # (mid, parent_mid, name, source module)
    removed_modules: list = field(default_factory=list)  # (mid, parent_mid, name, set to None?)
    added_params: list = field(default_factory=list)     # (pid, mid, name, source Parameter)
    removed_params: list = field(default_factory=list)   # (pid, mid, name, set to None?)
    # (mid, name, tensor or None, persistent, removed): None with removed False is
    # `module.buf = None`, which keeps the name registered, as torch does.
    buffers: list = field(default_factory=list)


class Species:
    """What all particles of one species share."""

    def __init__(self):
        self.config: dict[int, ParamConfig] = {}
        self.config_version = 0
        self.log: list[Change] = []
        self.next_pid = 0
        self.next_mid = ROOT_MODULE_ID + 1
        self.members: "weakref.WeakSet[ParticleKernel]" = weakref.WeakSet()
        self.pending = False  # some member changed structure and has not recorded it
        # the change cells of those members, in the order they changed: their
        # changes are logged in that order (nytorch versions each change as made)
        self.dirty_order: list = []
        self._plan: tuple = (-1, None)  # (version, build plan) shared by the members

    @property
    def version(self) -> int:
        return len(self.log)

    def __getstate__(self):  # weak sets do not pickle; members re-register on load
        state = dict(self.__dict__)
        state["members"] = None
        state["_plan"] = (-1, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("dirty_order", [])  # pickled before it existed
        self.members = weakref.WeakSet()

    # nytorch exposes the species as kernel.version / product.vdata
    @property
    def data(self) -> "Species":
        return self


def mark_dirty(cell: list) -> None:
    """A particle's change cell ([dirty, species]): note a structural change."""
    if not cell[0]:
        cell[0] = True
        cell[1].dirty_order.append(cell)
    cell[1].pending = True


def _clear_name(module: nn.Module, name: str, kind: str) -> None:
    """Before registering ``name`` in the table ``kind``: drop what it was in the
    other tables or as a plain attribute, as ``nn.Module.__setattr__`` does (an
    entry of the same kind is replaced where it is, keeping its position)."""
    module.__dict__.pop(name, None)
    for table in ("_parameters", "_buffers", "_modules"):
        if table != kind:
            getattr(module, table).pop(name, None)
    if kind != "_buffers":
        module._non_persistent_buffers_set.discard(name)


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object sharing everything (hooks, buffers, attributes) with
    ``module``, with its own parameter, buffer and child dictionaries (as nytorch).
    (copy.copy does the same through __reduce_ex__, several times slower.)"""
    new = object.__new__(type(module))
    d = new.__dict__
    d.update(module.__dict__)
    d["_parameters"] = dict(module._parameters)
    d["_buffers"] = dict(module._buffers)
    d["_modules"] = dict(module._modules)
    return new


class ParticleKernel:
    """The structure and storage of one particle."""

    def __init__(self, species: Species, version: int):
        self.species = species
        self.version = version
        # By id, in order (plain dicts: ordered, and half the cost of OrderedDicts
        # for a particle of many small tensors).
        self.modules: "dict[int, nn.Module]" = {}
        self.params: "dict[int, nn.Parameter]" = {}
        self.storage: Storage | None = None
        # Shared with the particle's NytoModules, which set it on structural changes:
        # [dirty, species], not a back-reference to the kernel, so a cleared
        # ParticleModule root (no kernel reference, no cycle) can still report them.
        self.cell = [False, species]
        self._buffer_ids: dict = {}
        # Each placement of a parameter: (parameter dicts, names, Parameters), parallel lists.
        self.places: tuple = ([], [], [])
        self.param_places: dict = {}   # pid -> (mid, name) of its first placement
        self.module_places: dict = {}  # mid -> (parent mid, name)
        species.members.add(self)

    @property
    def dirty(self) -> bool:
        return self.cell[0]

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
    def data(self) -> "ParticleKernel":
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
        species = self.species
        mid_of = {id(m): mid for mid, m in self.modules.items()}
        pid_of = {id(p): pid for pid, p in self.params.items()}
        modules: "dict[int, nn.Module]" = {}
        params: dict[int, nn.Parameter] = {}
        change = Change()
        buffers: dict = {}

        seen_params: set = set()
        seen_modules: set = {id(root)}
        places: tuple = ([], [], [])
        param_places: dict = {}
        module_places: dict = {}
        # Pre-order, each module's parameters and children interleaved in the order
        # they were assigned (nytorch numbers parameters by registration). An
        # explicit stack of iterators, not a recursive closure: a closure that refers
        # to itself is a reference cycle, keeping this kernel alive until gc.collect().
        _adopt(root, self, ROOT_MODULE_ID)
        modules[ROOT_MODULE_ID] = root
        buffers.update(((ROOT_MODULE_ID, n), b) for n, b in root._buffers.items())
        stack = [(ROOT_MODULE_ID, _members_in_order(root))]
        while stack:
            mid, members = stack[-1]
            item = next(members, None)
            if item is None:
                stack.pop()
                continue
            owner, name, value = item
            if isinstance(value, nn.Parameter) or name in owner._parameters:
                places[0].append(owner._parameters)
                places[1].append(name)
                places[2].append(value)
                if id(value) in seen_params:  # tied: one id
                    continue
                seen_params.add(id(value))
                pid = _id_for(value, pid_of, species, "next_pid", change.added_params, mid, name)
                params[pid] = value
                param_places[pid] = (mid, name)
                continue
            if id(value) in seen_modules:  # shared module: one id
                continue
            seen_modules.add(id(value))
            cmid = _id_for(value, mid_of, species, "next_mid", change.added_modules, mid, name)
            module_places[cmid] = (mid, name)
            _adopt(value, self, cmid)
            modules[cmid] = value
            buffers.update(((cmid, n), b) for n, b in value._buffers.items())
            stack.append((cmid, _members_in_order(value)))
        self.places = places
        def set_to_none(owner_mid, table, name) -> bool:  # `x.name = None`, not `del x.name`
            owner = modules.get(owner_mid)
            return owner is not None and name in getattr(owner, table) and getattr(owner, table)[name] is None

        for mid in self.modules:
            if mid not in modules:
                parent_mid, name = self.module_places.get(mid, (None, None))
                change.removed_modules.append((mid, parent_mid, name, set_to_none(parent_mid, "_modules", name)))
        for pid in self.params:
            if pid not in params:
                mid, name = self.param_places.get(pid, (None, None))
                change.removed_params.append((pid, mid, name, set_to_none(mid, "_parameters", name)))
        self.param_places, self.module_places = param_places, module_places
        for key, b in buffers.items():
            if self._buffer_ids.get(key, object()) is not b:
                mid, name = key
                persistent = name not in modules[mid]._non_persistent_buffers_set
                change.buffers.append((mid, name, b, persistent, False))
        for key in self._buffer_ids:
            if key not in buffers and key[0] in modules:
                change.buffers.append((key[0], key[1], None, True, True))
        self._buffer_ids = buffers
        self.modules = modules
        self.params = dict(sorted(params.items()))
        for pid in self.params:
            species.config.setdefault(pid, ParamConfig())
        for pid, *_ in change.removed_params:
            if not any(pid in k.params for k in species.members if k is not self):
                species.config.pop(pid, None)
        self.dirty = False
        return change

    def record(self, root: nn.Module) -> None:
        """Re-scan after a structural change here, and log it for the species.
        Changes other particles logged meanwhile are replayed first (this
        particle's own edits stay in place), so none is skipped."""
        if self.version < self.species.version:
            # This particle's own new entries go after the replayed ones, as if
            # its change had been made after theirs (the order the log gives).
            # (A replacement under a known name keeps its place.)
            known = {id(v) for v in self.params.values()} | {id(v) for v in self.modules.values()}
            names = set(self.param_places.values()) | set(self.module_places.values())
            own = []
            for mid, module in self.modules.items():
                for table in (module._parameters, module._modules):
                    new = [(n, v) for n, v in table.items()
                           if v is not None and id(v) not in known and (mid, n) not in names]
                    for n, _ in new:
                        del table[n]
                    own.append((table, new))
            while self.version < self.species.version:
                self._replay(self.species.log[self.version])
                self.version += 1
            for table, new in own:
                table.update(new)
        change = self.scan(root)
        if change.added_modules or change.removed_modules or change.added_params \
                or change.removed_params or change.buffers:
            if len(self.species.members) > 1:
                self.species.log.append(change)
            else:  # alone in the species: nobody needs to replay it
                self.species.log.append(Change())
            self.version = self.species.version

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
        while self.version < self.species.version:
            self._replay(self.species.log[self.version])
            self.version += 1
            self.scan(root)

    def _placed(self) -> bool:
        """Every parameter is still where the last scan found it (dict lookups in C)."""
        return entries_are(*self.places)

    def _replay(self, change: Change) -> None:
        with torch.no_grad():
            # A replaced parameter or module is re-added under the same name below,
            # which keeps its position; a removed one is deleted, or set to None.
            readded_modules = {(p, n) for _, p, n, _ in change.added_modules}
            readded_params = {(m, n) for _, m, n, _ in change.added_params}
            for mid, parent_mid, name, as_none in change.removed_modules:
                parent = self.modules.get(parent_mid)
                if parent is None or (parent_mid, name) in readded_modules or name not in parent._modules:
                    continue
                if as_none:
                    parent._modules[name] = None
                else:
                    del parent._modules[name]
            for mid, parent_mid, name, source in change.added_modules:
                parent = self.modules.get(parent_mid)
                if parent is None:
                    continue
                new = _shallow_copy(source)
                for pname, p in new._parameters.items():
                    if p is not None:
                        new._parameters[pname] = nn.Parameter(p.detach().clone(), p.requires_grad)
                _clear_name(parent, name, "_modules")
                parent._modules[name] = new
                self.modules[mid] = new
            for pid, mid, name, as_none in change.removed_params:
                module = self.modules.get(mid)
                if module is None or (mid, name) in readded_params or name not in module._parameters:
                    continue
                if as_none:
                    module._parameters[name] = None
                else:
                    del module._parameters[name]
            added_mids = {m for m, *_ in change.added_modules}
            for pid, mid, name, source in change.added_params:
                module = self.modules.get(mid)
                if module is None:
                    continue
                if mid not in added_mids:  # an added module brought its (cloned) params
                    _clear_name(module, name, "_parameters")
                    module._parameters[name] = nn.Parameter(source.detach().clone(), source.requires_grad)
                # the same ids as on the particle that made the change, for the re-scan
                self.params[pid] = module._parameters[name]
            for mid, name, tensor, persistent, removed in change.buffers:
                module = self.modules.get(mid)
                if module is None:
                    continue
                if removed:
                    module._buffers.pop(name, None)
                else:
                    _clear_name(module, name, "_buffers")
                    module._buffers[name] = tensor
                    if not persistent:
                        module._non_persistent_buffers_set.add(name)

    # --------------------------------------------------------------- storage

    def operational(self) -> list:
        """(pid, Parameter) of the operational parameters; cached until the
        parameters or the species' configuration change."""
        return self._operational_cache()[0]

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
        extras = OrderedDict(self._operational_cache()[2])
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
        values = None if same else product.params
        targets = dict(self.operational()) if not same else {}
        extras = [(self.params.get(pid), value) for pid, value in product.extras.items()]
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

    def _build_plan(self) -> tuple:
        """How to copy the module tree, the same for every member of the species at
        one version (computed once per structural version, not per new particle):
        ``(mids, parameter names, parameter positions in pid order, child names,
        child positions in mids, NytoModule ids or None)``, one entry per module in
        pre-order."""
        version, plan = self.species._plan
        if version == self.species.version and plan is not None and len(plan[0]) == len(self.modules):
            return plan
        pid_pos = {id(p): i for i, p in enumerate(self.params.values())}
        mid_pos = {id(m): i for i, m in enumerate(self.modules.values())}
        plan = (list(self.modules), [], [], [], [], [])
        mids, param_names, param_index, child_names, child_index, nyto_ids = plan
        for mid, module in self.modules.items():
            params = [(n, pid_pos[id(p)]) for n, p in module._parameters.items() if p is not None and id(p) in pid_pos]
            children = [(n, mid_pos[id(c)]) for n, c in module._modules.items() if c is not None and id(c) in mid_pos]
            param_names.append(tuple(n for n, _ in params))
            param_index.append(tuple(i for _, i in params))
            child_names.append(tuple(n for n, _ in children))
            child_index.append(tuple(i for _, i in children))
            nyto_ids.append(mid if getattr(type(module), "_is_nyto_module", False) else None)
        self.species._plan = (self.species.version, plan)
        return plan

    def build(self, product: ParamProduct) -> nn.Module:
        """A new particle of this species holding ``product``'s values: module objects
        are shallow copies, operational parameters are views of the product's
        buffers, non-operational ones are cloned or shared as configured. Returns
        its module ``product.module_id``."""
        return self.build_kernel(product).modules[product.module_id]

    def build_kernel(self, product: ParamProduct) -> "ParticleKernel":
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
            new_params = dict(zip(layout.pids, operational))
            config = self.species.config
            for pid, p in self._operational_cache()[2]:  # non-operational: cloned or shared
                value = product.extras.get(pid, p)
                new_params[pid] = nn.Parameter(value.detach().clone(), p.requires_grad) \
                    if config[pid].clone else value
            values = list(map(new_params.__getitem__, old))
        mids, param_names, param_index, child_names, child_index, nyto_ids = self._build_plan()
        copies, kernel.places = copy_module_tree(list(map(self.modules.__getitem__, mids)), param_names,
                                                 param_index, child_names, child_index, values, nyto_ids,
                                                 kernel, kernel.cell)
        kernel.modules = dict(zip(mids, copies))
        kernel.params = dict(zip(old, values))
        kernel._buffer_ids = dict(self._buffer_ids)
        kernel.param_places, kernel.module_places = self.param_places, self.module_places  # same ids, same names
        # The views were made from the product's layout: the storage is in place.
        kernel.storage = Storage(layout, buffers, operational, layout.addresses(buffers),
                                 self.species.config_version)
        return kernel


def _python_copy_module_tree(sources, param_names, param_index, child_names, child_index,
                             params, nyto_ids, kernel, cell) -> tuple:
    """The fallback of ``_C.copy_module_tree`` (csrc/module_tree.cpp): a
    ``_shallow_copy`` of each source whose parameters and children are the new
    ones; returns (modules, (parameter dicts, names, Parameters)), the last three
    one entry per placement."""
    copies = list(map(_shallow_copy, sources))  # every object first: children come later in pre-order
    places: tuple = ([], [], [])
    for i, new in enumerate(copies):
        d = new.__dict__
        if param_names[i]:
            placed = list(map(params.__getitem__, param_index[i]))
            d["_parameters"].update(zip(param_names[i], placed))
            places[0].extend(repeat(d["_parameters"], len(placed)))
            places[1].extend(param_names[i])
            places[2].extend(placed)
        if child_names[i]:
            d["_modules"].update(zip(child_names[i], map(copies.__getitem__, child_index[i])))
        if nyto_ids[i] is not None:  # a new particle: live kernel reference
            d["_particle_kernel"], d["_module_id"], d["_nyto_cell"] = kernel, nyto_ids[i], cell
    return copies, places


def _load_copy_module_tree():
    from ..ops._extension import _C
    return _C.copy_module_tree if _C is not None else _python_copy_module_tree


copy_module_tree = _load_copy_module_tree()


def _id_for(value, ids: dict, species: Species, counter: str, added: list, parent_mid: int, name: str) -> int:
    """The id ``ids`` knows for ``value`` (by object identity), or a new one from the
    species' ``counter`` ("next_pid" / "next_mid"), recording (id, parent module id,
    name, value) in ``added``."""
    known = ids.get(id(value))
    if known is not None:
        return known
    new = getattr(species, counter)
    setattr(species, counter, new + 1)
    ids[id(value)] = new
    added.append((new, parent_mid, name, value))
    return new


def _members_in_order(module: nn.Module):
    """(module, name, parameter or child) in assignment order where a NytoModule
    recorded it, else parameters before children (nn.Module keeps them apart)."""
    params, children = module._parameters, module._modules
    order = module.__dict__.get("_nyto_order", ())
    names = [n for n in order if n in params or n in children]
    listed = set(names)
    names += [n for n in params if n not in listed] + [n for n in children if n not in listed]
    for name in names:
        value = params[name] if name in params else children.get(name)
        if value is not None:
            yield module, name, value


def _adopt(module: nn.Module, kernel: ParticleKernel, mid: int, keep_cleared: bool = True) -> None:
    """Point a NytoModule (root or submodule) at its particle's kernel (unless a
    ParticleModule cleared that reference and ``keep_cleared``) and its change cell."""
    if getattr(type(module), "_is_nyto_module", False):
        d = module.__dict__
        if not (keep_cleared and "_particle_kernel" in d and d["_particle_kernel"] is None):
            d["_particle_kernel"] = kernel
        d["_module_id"] = mid
        d["_nyto_cell"] = kernel.cell
