"""The swarm as one batched model: all K members in one forward, over the [K, N] buffers.

:class:`BatchedSwarm` gives a :class:`~nytorch_ext.swarm.Swarm`:

- ``leaves``: one tensor per parameter (``member.parameters()`` order), its [K, *shape]
  view of the swarm's [K, N] buffer that requires grad: row i is member i's parameter.
  An optimizer built on them steps every member at once, and its writes are writes
  into the members' rows: each member's Parameter objects are views of the same
  memory, and the APSO and momentum steps blend the same rows. Nothing is copied
  between the gradient and the APSO phases. (Leaves of their own, rather than views
  autograd makes of one [K, N] leaf per group: the forward needs no split and the
  backward no concatenation of the gradients.)
- ``params``: parameter name -> its leaf.
- :meth:`BatchedSwarm.forward`: ``torch.func.vmap`` (:func:`~.member_vmap.member_vmap`) over member 0's module called with
  the leaves in place of its parameters (``torch.func.functional_call``'s swap),
  the parameters batched on dim 0 and the input shared
  (``randomness="different"``: each member draws its own dropout masks). Its ``conv2d``
  calls run as one grouped, channels-last convolution on the CPU
  (:mod:`~nytorch_ext.swarm.grouped_conv`).

:func:`unsupported_model` says why a swarm's members cannot be run this way (checked
without running them). An optimizer over the leaves and K per-member optimizers hold the
same numbers: :func:`member_optimizer_states` splits its state into K per-member
``state_dict``\\ s (the form a member's own optimizer, built on ``member.parameters()``,
produces; the checkpoints' form), and :func:`batched_optimizer_state` merges them back.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .grouped_conv import member_conv_mode
from .member_vmap import member_vmap

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
        storage = swarm.storages([0])[0]
        slot_of = {id(p): s for p, s in zip(storage.params, swarm.layout.slots)}
        named = list(self.module.named_parameters())
        self._param_names = [n for n, _ in named]
        # each member parameter's slot, in member.parameters() order (a member optimizer's ids)
        self.slots = [slot_of[id(p)] for _, p in named]
        self.leaves = [self._leaf_of(s) for s in self.slots]
        self._buffer_names = [n for n, _ in self.module.named_buffers()]
        self._places = self._swap_places()
        self._conv_mode = member_conv_mode(self.module)  # the members' conv2d as one grouped, channels-last one
        self._mapped: dict = {}

    def _leaf_of(self, slot):
        """A parameter's [K, *shape] view of its group's buffer, as a leaf that requires
        grad: its own tensor (not a view made by autograd from one [K, N] leaf), so the
        forward needs no split and the backward no concatenation."""
        base = self.bases[slot.group]
        return base.detach()[:, slot.offset:slot.offset + slot.numel].view(self.size, *slot.shape).requires_grad_()

    def _swap_places(self) -> tuple[list, list]:
        """Where the batched forward puts each parameter and buffer: ``(table, key,
        index)`` for every module's ``_parameters`` / ``_buffers`` entry (a tied tensor
        has several), as ``functional_call`` swaps them, found once instead of on
        every call."""
        params = dict(self.module.named_parameters())
        buffers = dict(self.module.named_buffers())
        p_index = {id(params[n]): j for j, n in enumerate(self._param_names)}
        b_index = {id(buffers[n]): j for j, n in enumerate(self._buffer_names)}
        p_places: list = []
        b_places: list = []
        for sub in self.module.modules():
            for table, index, places in ((sub._parameters, p_index, p_places), (sub._buffers, b_index, b_places)):
                for key, t in table.items():
                    if t is not None and id(t) in index:
                        places.append((table, key, index[id(t)]))
        return p_places, b_places

    @property
    def params(self) -> dict:
        """Parameter name -> its leaf, the [K, *shape] view of the swarm's buffer that
        holds row i as member i's parameter (``member.parameters()`` order)."""
        return dict(zip(self._param_names, self.leaves))

    def current(self) -> bool:
        """Whether the swarm still keeps its members in the buffers these leaves share
        (a structural change or ``swarm.to(...)`` re-packs them into new ones)."""
        bases = self.swarm.buffers()
        return len(bases) == len(self.bases) and all(a is b for a, b in zip(bases, self.bases))

    def writing(self):
        """The context of a write into the leaves (an optimizer step): the swarm's
        :meth:`~nytorch_ext.swarm.Swarm.writing` (lazy products reading the members
        settled first; the rows' and the members' parameters' versions bumped after)."""
        return self.swarm.writing()

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
        inputs = tuple(x) if isinstance(x, (list, tuple)) else (x,)
        key = (head, other_dim, len(inputs), len(extra))
        fn = self._mapped.get(key)
        if fn is None:
            module, conv_mode = self.module, self._conv_mode
            p_places, b_places = self._places
            places = p_places + b_places
            n_params, n_buffers, n_inputs = len(self.leaves), len(others), len(inputs)

            def member(*flat):
                # functional_call's swap, with the places found once (see _swap_places)
                params, buffers = flat[:n_params], flat[n_params:n_params + n_buffers]
                rest = flat[n_params + n_buffers:]
                saved = [table[key] for table, key, _ in places]
                try:
                    for table, key, j in p_places:
                        table[key] = params[j]
                    for table, key, j in b_places:
                        table[key] = buffers[j]
                    with conv_mode:
                        out = module(*rest[:n_inputs])
                finally:
                    for (table, key, _), old in zip(places, saved):
                        table[key] = old
                return out if head is None else (out, head(out, *rest[n_inputs:]))

            fn = member_vmap(member, (0,) * n_params + (other_dim,) * n_buffers + (None,) * (n_inputs + len(extra)))
            self._mapped[key] = fn
        return fn(*self.leaves, *others, *inputs, *extra)


# ------------------------------------------------------------------ optimizer state

def _single_group(optimizer, what: str) -> dict:
    groups = optimizer.param_groups
    if len(groups) != 1:
        raise ValueError(f"{what}: the batched optimizer has {len(groups)} parameter groups; it must hold the "
                         f"swarm's leaves in one group (the factory gets them all: params -> Optimizer(params))")
    return groups[0]


def _leaf_positions(group: dict, model: BatchedSwarm, what: str) -> list[int]:
    """For each of the optimizer group's tensors, which of ``model.leaves`` it is."""
    index = {id(leaf): j for j, leaf in enumerate(model.leaves)}
    positions = [index.get(id(p), -1) for p in group["params"]]
    if sorted(positions) != list(range(len(model.leaves))):
        raise ValueError(f"{what}: the batched optimizer must hold exactly the batched swarm's leaves "
                         f"(the factory gets them all: params -> Optimizer(params))")
    return positions


def member_optimizer_states(optimizer, model: BatchedSwarm) -> list[dict]:
    """``optimizer`` (built on ``model.leaves``, one parameter group) as K per-member
    ``state_dict``\\ s, each the form an optimizer of the same class and settings built on
    that member's ``parameters()`` would produce: per parameter (numbered in
    ``member.parameters()`` order, the leaves' order), every state tensor of its
    leaf's [K, *shape] shape cut to the member's row (a copy), and every other entry
    (a scalar such as Adam's ``step``) as it is (tensors copied). The settings are the
    group's."""
    group = _single_group(optimizer, "member_optimizer_states")
    positions = _leaf_positions(group, model, "member_optimizer_states")
    settings = {k: v for k, v in group.items() if k != "params"}
    held = {j: optimizer.state.get(p, {}) for j, p in zip(positions, group["params"])}
    out = []
    for i in range(model.size):
        member_state = {}
        for j, leaf in enumerate(model.leaves):
            if not held[j]:
                continue
            entry = {}
            for name, value in held[j].items():
                if isinstance(value, Tensor) and value.shape == leaf.shape:
                    entry[name] = value[i].clone()
                elif isinstance(value, Tensor):
                    if value.dim() != 0:
                        raise ValueError(f"member_optimizer_states: the state {name!r} has shape "
                                         f"{tuple(value.shape)}, neither the leaf's nor a scalar")
                    entry[name] = value.clone()
                else:
                    entry[name] = value
            member_state[j] = entry
        out.append({"state": member_state,
                    "param_groups": [{**settings, "params": list(range(len(model.leaves)))}]})
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
    positions = _leaf_positions(group, model, "optimizer state")
    k, count = model.size, len(model.leaves)
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
    merged: dict = {}
    if states[0]["state"]:
        pids = [list(s["param_groups"][0]["params"]) for s in states]  # each member's parameter ids
        for pos, j in enumerate(positions):
            leaf, shape = model.leaves[j], model.slots[j].shape
            entry: dict = {}
            for i, s in enumerate(states):
                pid = pids[i][j]
                saved = s["state"].get(pid)
                if not isinstance(saved, dict):
                    raise ValueError(f"optimizer[{i}]: no saved state for parameter {pid!r}")
                for name, value in saved.items():
                    where = f"optimizer[{i}]: the state {name!r} of parameter {pid!r}"
                    if isinstance(value, Tensor) and value.dim() > 0:
                        if tuple(value.shape) != shape:
                            raise ValueError(f"{where} has shape {tuple(value.shape)}, the parameter {shape}")
                        if name not in entry:
                            entry[name] = torch.zeros(leaf.shape, dtype=leaf.dtype, device=leaf.device)
                        elif not (isinstance(entry[name], Tensor) and entry[name].shape == leaf.shape):
                            raise ValueError(f"{where} is a tensor in one member and a scalar in another")
                        entry[name][i] = value.to(leaf)
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
