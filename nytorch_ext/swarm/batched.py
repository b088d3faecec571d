"""The swarm as one batched model: all K members in one forward, over the [K, N] buffers.

:class:`BatchedSwarm` gives a :class:`~nytorch_ext.swarm.Swarm`:

- ``leaves``: one tensor per (dtype, device) group that shares the group's [K, N]
  buffer's memory and requires grad. An optimizer built on them steps every member at
  once, and its writes are writes into the members' rows: each member's Parameter
  objects are views of the same memory, and the APSO and momentum steps blend the same
  rows. Nothing is copied between the gradient and the APSO phases.
- ``params``: every parameter's [K, *shape] view of its leaf (built once, cached).
- :meth:`BatchedSwarm.forward`: ``torch.func.vmap`` over member 0's module called with
  those views in place of its parameters (``torch.func.functional_call``'s swap), the parameters batched on dim 0 and the input shared
  (``randomness="different"``: each member draws its own dropout masks).

:func:`unsupported_model` says why a swarm's members cannot be run this way (checked
without running them). An optimizer over the leaves and K per-member optimizers hold the
same numbers: :func:`member_optimizer_states` splits its state into K per-member
``state_dict``\\ s (the form a member's own optimizer, built on ``member.parameters()``,
produces; the checkpoints' form), and :func:`batched_optimizer_state` merges them back.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vmap

__all__ = ["BatchedSwarm", "unsupported_model", "member_optimizer_states", "batched_optimizer_state",
           "load_member_optimizer_states"]


def unsupported_model(swarm) -> str | None:
    """Why :class:`BatchedSwarm` cannot run ``swarm``'s members, found without running
    them (None when nothing is known against it): BatchNorm-style layers that track
    running statistics (vmap cannot update one buffer for K members), parameters
    outside the flat storage, parameters that require no gradient, integer
    parameters. What only a forward shows (``.item()``, data-dependent control
    flow, in-place writes into batched tensors) needs a probe: see
    :meth:`BatchedSwarm.forward`."""
    module = swarm[0]
    for name, sub in module.named_modules():
        if getattr(sub, "track_running_stats", False) and getattr(sub, "running_mean", None) is not None:
            return (f"{name or 'the model'} ({type(sub).__name__}) tracks running statistics, which one "
                    f"vmapped forward cannot update per member; build it with track_running_stats=False or "
                    f"replace it (torch.func.replace_all_batch_norm_modules_)")
    if not swarm.layout.all_floating:
        return "the model has integer parameters"
    in_layout = {id(p) for p in swarm.storages([0])[0].params}
    for name, p in module.named_parameters():
        if id(p) not in in_layout:
            return f"parameter {name} is not in the swarm's flat storage (a non-operational parameter)"
        if not p.requires_grad:
            return f"parameter {name} requires no gradient (requires_grad=False)"
    return None


class BatchedSwarm:
    """``swarm``'s members as one batched model (see the module docstring). Raises
    ``ValueError`` with :func:`unsupported_model`'s reason for a swarm it cannot run."""

    def __init__(self, swarm) -> None:
        reason = unsupported_model(swarm)
        if reason is not None:
            raise ValueError(reason)
        self.swarm = swarm
        self.size = len(swarm)
        self.module = swarm[0]
        self.bases = swarm.buffers()
        self.leaves = [b.detach().requires_grad_() for b in self.bases]
        storage = swarm.storages([0])[0]
        names = {id(p): n for n, p in self.module.named_parameters()}
        self.names = [names[id(p)] for p in storage.params]    # slot order
        # each member parameter's slot, in member.parameters() order (a member optimizer's ids)
        slot_of = {id(p): j for j, p in enumerate(storage.params)}
        self.member_order = [slot_of[id(p)] for p in self.module.parameters()]
        self.slots = list(swarm.layout.slots)
        self._plan = self._split_plan()
        self._param_names = [owner[0] for _, owners in self._plan for owner in owners if owner is not None]
        self._buffer_names = [n for n, _ in self.module.named_buffers()]
        self._places = self._swap_places()
        self._mapped: dict = {}

    def _swap_places(self) -> tuple[list, list]:
        """Where the batched forward puts each parameter and buffer: ``(table, key,
        index)`` for every module's ``_parameters`` / ``_buffers`` entry (a tied tensor
        has several), as ``functional_call`` swaps them, found once instead of on
        every call."""
        params = dict(self.module.named_parameters())
        buffers = dict(self.module.named_buffers())
        p_index = {id(params[n]): j for j, n in enumerate(self._param_names)}
        b_index = {id(buffers[n]): j for j, n in enumerate(self._buffer_names)}
        p_places, b_places = [], []
        for sub in self.module.modules():
            for table, index, places in ((sub._parameters, p_index, p_places), (sub._buffers, b_index, b_places)):
                for key, t in table.items():
                    if t is not None and id(t) in index:
                        places.append((table, key, index[id(t)]))
        return p_places, b_places

    def _split_plan(self) -> list:
        """Per group: the split sizes covering its leaf's row (alignment padding
        included) and, per piece, the parameter's name and shape (None: padding)."""
        k = self.size
        name_of = dict(zip(self.slots, self.names))
        plan = []
        for g, leaf in enumerate(self.leaves):
            slots = sorted((s for s in self.slots if s.group == g), key=lambda s: s.offset)
            sizes, owners, at = [], [], 0
            for s in slots:
                if s.offset > at:  # alignment padding
                    sizes.append(s.offset - at)
                    owners.append(None)
                sizes.append(s.numel)
                owners.append((name_of[s], (k, *s.shape)))
                at = s.offset + s.numel
            if leaf.shape[1] > at:
                sizes.append(leaf.shape[1] - at)
                owners.append(None)
            plan.append((sizes, owners))
        return plan

    def _param_tuple(self) -> tuple:
        """The [K, *shape] views (see :attr:`params`) in ``_param_names`` order."""
        views = []
        for leaf, (sizes, owners) in zip(self.leaves, self._plan):
            for owner, chunk in zip(owners, leaf.split(sizes, dim=1)):
                if owner is not None:
                    views.append(chunk.view(owner[1]))
        return tuple(views)

    @property
    def params(self) -> dict:
        """Parameter name -> its [K, *shape] view of its leaf: one split per group (its
        backward is one concatenation), then a view per parameter. Made afresh on each
        call (from a plan made once): an optimizer writes into the leaves in place,
        which the views of an earlier split do not allow."""
        return dict(zip(self._param_names, self._param_tuple()))

    def current(self) -> bool:
        """Whether the swarm still keeps its members in the buffers these leaves share
        (a structural change or ``swarm.to(...)`` re-packs them into new ones)."""
        bases = self.swarm.buffers()
        return len(bases) == len(self.bases) and all(a is b for a, b in zip(bases, self.bases))

    def settle(self) -> None:
        """Before a write into the leaves: the lazy products reading the members' rows
        take their values first."""
        for st in self.swarm.storages().values():
            st.settle()

    def written(self) -> None:
        """After a write into the leaves (not through the rows): bump the rows'
        version counters, as a write through the members' own parameters would."""
        for st in self.swarm.storages().values():
            st.bump_versions()

    # ---------------------------------------------------------- forward

    def _others(self):
        """The members' buffers: shared (one set, not batched) or stacked per member."""
        if not self._buffer_names:
            return (), None
        per_member = [dict(m.named_buffers()) for m in self.swarm]
        first = per_member[0]
        if all(d[n] is first[n] for d in per_member[1:] for n in self._buffer_names):
            return tuple(first[n] for n in self._buffer_names), None
        return tuple(torch.stack([d[n] for d in per_member]) for n in self._buffer_names), 0

    def buffers_written(self, x) -> list[str]:
        """The names of the buffers one batched forward on ``x`` writes into (by their
        version counters). Such writes are not each member's own: the forward runs on
        stacked copies of the members' buffers (lost afterwards), or on the one buffer
        the members share (written once, not K times)."""
        others = self._others()
        before = [t._version for t in others[0]]
        with torch.no_grad():
            self.forward(x, others=others)
        return [n for n, t, v in zip(self._buffer_names, others[0], before) if t._version != v]

    def forward(self, x, head=None, extra: tuple = (), *, others=None):
        """Every member's output on the shared input ``x`` (a tensor or a tuple of the
        model's positional inputs), stacked: ``[K, ...]``. With ``head``, also
        ``head(output, *extra)`` of each member inside the same vmap (e.g. its loss):
        returns ``(outputs, heads)``. Raises what vmap raises for a model it cannot
        run (``.item()``, data-dependent control flow, in-place writes into batched
        tensors)."""
        others, other_dim = self._others() if others is None else others
        key = (head, other_dim, len(extra))
        fn = self._mapped.get(key)
        if fn is None:
            module = self.module
            p_places, b_places = self._places
            places = p_places + b_places

            def member(params, buffers, inputs, *rest):
                # functional_call's swap, with the places found once (see _swap_places)
                saved = [table[key] for table, key, _ in places]
                try:
                    for table, key, j in p_places:
                        table[key] = params[j]
                    for table, key, j in b_places:
                        table[key] = buffers[j]
                    out = module(*inputs)
                finally:
                    for (table, key, _), old in zip(places, saved):
                        table[key] = old
                return out if head is None else (out, head(out, *rest))

            fn = vmap(member, in_dims=(0, other_dim, None) + (None,) * len(extra), randomness="different")
            self._mapped[key] = fn
        inputs = tuple(x) if isinstance(x, (list, tuple)) else (x,)
        return fn(self._param_tuple(), others, inputs, *extra)


# ------------------------------------------------------------------ optimizer state

def _single_group(optimizer, what: str) -> dict:
    groups = optimizer.param_groups
    if len(groups) != 1:
        raise ValueError(f"{what}: the batched optimizer has {len(groups)} parameter groups; it must hold the "
                         f"swarm's leaves in one group (the factory gets them all: params -> Optimizer(params))")
    return groups[0]


def member_optimizer_states(optimizer, model: BatchedSwarm) -> list[dict]:
    """``optimizer`` (built on ``model.leaves``, one parameter group) as K per-member
    ``state_dict``\\ s, each the form an optimizer of the same class and settings built on
    that member's ``parameters()`` would produce: per parameter (numbered in
    ``member.parameters()`` order), every state tensor of the leaf's [K, N] shape cut to
    the member's slice of that parameter (a copy), and every other entry (a scalar such
    as Adam's ``step``) as it is (tensors copied). The settings are the group's."""
    group = _single_group(optimizer, "member_optimizer_states")
    state = optimizer.state
    settings = {k: v for k, v in group.items() if k != "params"}
    leaf_index = {id(leaf): g for g, leaf in enumerate(model.leaves)}
    held = [state.get(p, {}) for p in group["params"]]
    by_group = {leaf_index[id(p)]: s for p, s in zip(group["params"], held)}
    out = []
    for i in range(model.size):
        member_state = {}
        for j, slot_index in enumerate(model.member_order):
            s = model.slots[slot_index]
            leaf_state = by_group.get(s.group, {})
            if not leaf_state:
                continue
            entry = {}
            for name, value in leaf_state.items():
                if isinstance(value, Tensor) and value.shape == model.leaves[s.group].shape:
                    entry[name] = value[i, s.offset:s.offset + s.numel].reshape(s.shape).clone()
                elif isinstance(value, Tensor):
                    if value.dim() != 0:
                        raise ValueError(f"member_optimizer_states: the state {name!r} has shape "
                                         f"{tuple(value.shape)}, neither the leaf's nor a scalar")
                    entry[name] = value.clone()
                else:
                    entry[name] = value
            member_state[j] = entry
        out.append({"state": member_state,
                    "param_groups": [{**settings, "params": list(range(len(model.member_order)))}]})
    return out


def _same_value(a, b) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    return bool(a == b)


def batched_optimizer_state(optimizer, model: BatchedSwarm, states) -> dict:
    """K per-member ``state_dict``\\ s (:func:`member_optimizer_states`' form, as K
    sequential member optimizers save them) merged into one ``state_dict`` that
    ``optimizer`` (built on ``model.leaves``) loads. Raises ``ValueError`` naming the
    member and the entry unless they merge: K of them, each one group of the
    members' parameter count with the same settings (learning rate included: the batched
    optimizer has one), state for every parameter or for none, each state tensor of
    its parameter's shape, and every scalar entry (Adam's ``step``) equal across
    members and parameters. Changes nothing."""
    group = _single_group(optimizer, "optimizer state")
    k, count = model.size, len(model.member_order)
    if not isinstance(states, (list, tuple)) or len(states) != k:
        raise ValueError(f"the optimizer states must be one per member ({k}), got "
                         f"{len(states) if isinstance(states, (list, tuple)) else type(states).__name__}")
    settings = {key: v for key, v in group.items() if key != "params"}
    first_settings = None
    for i, s in enumerate(states):
        if not isinstance(s, dict) or not isinstance(s.get("state"), dict) \
                or not isinstance(s.get("param_groups"), (list, tuple)):
            raise ValueError(f"optimizer[{i}]: the saved state is not an optimizer state_dict")
        if len(s["param_groups"]) != 1 or len(s["param_groups"][0].get("params", ())) != count:
            raise ValueError(f"optimizer[{i}]: a batched run needs each member's optimizer to hold its "
                             f"{count} parameters in one group")
        theirs = {key: v for key, v in s["param_groups"][0].items() if key != "params"}
        if first_settings is None:
            first_settings = theirs
        elif any(not _same_value(theirs.get(key), v) for key, v in first_settings.items()) \
                or set(theirs) != set(first_settings):
            raise ValueError(f"optimizer[{i}]: its settings differ from member 0's ({theirs} vs "
                             f"{first_settings}); a batched run has one optimizer for all members")
        if s["state"] and len(s["state"]) != count:
            raise ValueError(f"optimizer[{i}]: the saved state covers {len(s['state'])} of its {count} "
                             f"parameters; a batched run needs all or none")
    if any(bool(s["state"]) != bool(states[0]["state"]) for s in states):
        raise ValueError("the members' optimizers have state for some members and not others")
    merged_groups = [{**settings, **(first_settings or {}), "params": list(range(len(group["params"])))}]
    leaf_index = {id(leaf): g for g, leaf in enumerate(model.leaves)}
    merged: dict = {}
    if states[0]["state"]:
        for pos, p in enumerate(group["params"]):
            g = leaf_index[id(p)]
            entry: dict = {}
            for i, s in enumerate(states):
                pids = list(s["param_groups"][0]["params"])
                for j, slot_index in enumerate(model.member_order):
                    slot = model.slots[slot_index]
                    if slot.group != g:
                        continue
                    saved = s["state"].get(pids[j])
                    if not isinstance(saved, dict):
                        raise ValueError(f"optimizer[{i}]: no saved state for parameter {pids[j]!r}")
                    for name, value in saved.items():
                        where = f"optimizer[{i}]: the state {name!r} of parameter {pids[j]!r}"
                        if isinstance(value, Tensor) and value.dim() > 0:
                            if tuple(value.shape) != slot.shape:
                                raise ValueError(f"{where} has shape {tuple(value.shape)}, the parameter "
                                                 f"{slot.shape}")
                            if name not in entry:
                                entry[name] = torch.zeros_like(p)
                            elif not (isinstance(entry[name], Tensor) and entry[name].shape == p.shape):
                                raise ValueError(f"{where} is a tensor in one member and a scalar in another")
                            entry[name][i, slot.offset:slot.offset + slot.numel] = value.reshape(-1).to(p)
                        elif name not in entry:
                            entry[name] = value.clone() if isinstance(value, Tensor) else value
                        elif not _same_value(entry[name], value):
                            raise ValueError(f"{where} is {value!r}, member 0's first parameter's "
                                             f"{entry[name]!r}: scalar state (such as Adam's step) must agree "
                                             f"across members and parameters in a batched run")
            merged[pos] = entry
    return {"state": merged, "param_groups": merged_groups}


def load_member_optimizer_states(optimizer, model: BatchedSwarm, states) -> None:
    """Load K per-member ``state_dict``\\ s into ``optimizer`` (checked first by
    :func:`batched_optimizer_state`: nothing is loaded when they do not merge)."""
    optimizer.load_state_dict(batched_optimizer_state(optimizer, model, states))
