"""Swarm updates as fused library operations: APSO, momentum, and the Swarm container.

The seed chapter's APSO step rebuilds a model (and its optimizer) for every member
it moves: ``pool[i] = from_product(alpha*best.product() + (1-alpha)*pool[i].product())``.
Here the same update is done in place, with one ``ops.multi_blend_`` call per
(dtype, device) group for the whole subset: members keep their Parameter objects,
so optimizers and their state keep working.

=================================================  ====================================
``apso_step(pool, losses, alpha, subset_size)``    subset blended toward its best
``apso_step(..., noise=s, generator=g)``           full APSO: ``+ s * N(0, 1)`` in the pass
``momentum_step(w_new, w_prev, w_prev2, beta)``    ``w_new + beta*(w_prev - w_prev2)``
``Swarm(particles)``                               K particles in one [K, N] buffer per group
=================================================  ====================================
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .. import ops
from ..particles.module import NytoModuleBase
from ..particles.mtype import DIFFERENT_SPECIES, SpeciesError
from ..particles.particle_module import ParticleModule, PMProduct
from ..particles.product import ParamProduct, lincomb


@dataclass(frozen=True)
class ApsoResult:
    """What one APSO step did.

    ``indices``: the chosen subset, in draw order (repeats possible when drawn with
    replacement); ``best``: the member the others were blended toward (unchanged);
    ``blended``: each distinct other member of the subset with its effective weight
    (a member drawn m times is blended m times, as in the seed: 1 - (1-alpha)^m)."""
    indices: list
    best: int
    blended: dict = field(default_factory=dict)


# ------------------------------------------------------------------ particles

def _kernel_of(particle, what: str = "pool"):
    """The particle kernel of a ParticleModule or a root NytoModule."""
    if isinstance(particle, (ParticleModule, NytoModuleBase)):
        kernel = particle._whole_kernel()
        if kernel is None:
            raise SpeciesError(f"{what}: a swarm member must be a whole particle (a root module), "
                               f"not a submodule")
        return kernel
    raise TypeError(f"{what}: members must be ParticleModule or NytoModule instances, "
                    f"got {type(particle).__name__}")


def _kernels_of(particles, what: str = "pool") -> list:
    if isinstance(particles, (nn.Module, ParamProduct)) or not isinstance(particles, Sequence):
        raise TypeError(f"{what} must be a Swarm or a sequence of particles, got {type(particles).__name__}")
    if len(particles) == 0:
        raise ValueError(f"{what} is empty")
    kernels = [_kernel_of(p, what) for p in particles]
    species = kernels[0].species
    if any(k.species is not species for k in kernels):
        raise SpeciesError(f"{what}: " + DIFFERENT_SPECIES.format(what="particles"))
    if len({id(k) for k in kernels}) != len(kernels):
        raise ValueError(f"{what}: the same particle appears more than once")
    return kernels


def _storages(kernels: list, what: str = "pool", indices=None) -> dict:
    """Member index -> flat storage (caught up with its species) for ``indices`` (all
    members when None); one layout for all of them."""
    indices = range(len(kernels)) if indices is None else indices
    storages = {}
    for i in indices:
        kernels[i].touch()
        storages[i] = kernels[i].flat()
    first = next(iter(storages))
    layout = storages[first].layout
    for i, st in storages.items():
        if st.layout is not layout and st.layout != layout:
            raise ValueError(f"{what}[{i}] has a different flat layout (shapes, dtypes or devices) "
                             f"than {what}[{first}]; move every member to the same dtype and device")
    return storages


# ------------------------------------------------------------------ arguments

def _losses(losses, size: int) -> list:
    """``losses`` as K floats: a 1-D tensor / array or a sequence of numbers (0-d tensors
    included) with one entry per member; anything else (a 2-D tensor, strings, nested
    sequences) is refused rather than flattened."""
    shape = getattr(losses, "shape", None)
    if isinstance(losses, Tensor) or (shape is not None and hasattr(losses, "ndim")):
        if len(shape) != 1:
            raise ValueError(f"losses must be 1-D, one entry per member ({size}), "
                             f"got shape {tuple(shape)}")
        if isinstance(losses, Tensor):
            if losses.is_complex() or losses.dtype == torch.bool:
                raise TypeError(f"losses must hold real numbers, got a {losses.dtype} tensor")
            losses = losses.detach().tolist()
    if isinstance(losses, (str, bytes, dict)) or not isinstance(losses, Iterable):
        raise TypeError(f"losses must be a sequence of numbers, got {type(losses).__name__}")
    values = []
    for i, x in enumerate(losses):
        if isinstance(x, Tensor) and x.dim() == 0 and not x.is_complex() and x.dtype != torch.bool:
            x = x.item()
        elif isinstance(x, Tensor):
            raise ValueError(f"losses[{i}] must be a number or a 0-d tensor, got a tensor of shape "
                             f"{tuple(x.shape)}; losses must be 1-D, one entry per member")
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise TypeError(f"losses[{i}] must be a real number, got {type(x).__name__}")
        values.append(float(x))
    if len(values) != size:
        raise ValueError(f"losses has {len(values)} entries but the pool has {size} members")
    bad = [i for i, x in enumerate(values) if math.isnan(x)]
    if bad:
        raise ValueError(f"losses[{bad[0]}] is NaN ({len(bad)} NaN loss(es)); the best member is undefined")
    return values


def _open_unit(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value}")
    return value


def _subset_size(subset_size, size: int) -> int:
    if subset_size is None:
        return size
    if isinstance(subset_size, bool) or not isinstance(subset_size, numbers.Integral):
        raise TypeError(f"subset_size must be an int or None, got {type(subset_size).__name__}")
    if not 1 <= subset_size <= size:
        raise ValueError(f"subset_size must be between 1 and the pool size {size}, got {subset_size}")
    return int(subset_size)


def _noise(noise) -> float:
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def _generator(generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("generator must be a CPU torch.Generator (it draws indices and seeds, not data)")
    return generator


def choose_subset(size: int, subset_size: int, *, replace: bool = True, generator=None) -> list:
    """``subset_size`` member indices of a pool of ``size``: with replacement (the
    seed's ``random.choices``) or without; drawn from ``generator`` (torch's
    default generator when None, so ``torch.manual_seed`` reproduces them)."""
    if replace:
        return torch.randint(size, (subset_size,), generator=generator).tolist()
    return torch.randperm(size, generator=generator)[:subset_size].tolist()


def _plan(indices: list, losses: list, alpha: float) -> tuple[int, dict]:
    """The subset's best (lowest loss; the first drawn among ties, as the seed's
    stable sort) and each other distinct member's effective weight."""
    best = min(indices, key=lambda i: losses[i])
    counts: dict = {}
    for i in indices:
        if i != best:
            counts[i] = counts.get(i, 0) + 1
    return best, {i: 1.0 - (1.0 - alpha) ** m for i, m in counts.items()}


def _noise_seed(generator) -> int:
    """A 64-bit seed for the counter-based noise, drawn from ``generator``."""
    lo, hi = torch.randint(0, 2 ** 32, (2,), generator=generator, dtype=torch.int64).tolist()
    return (hi << 32) | lo


# ------------------------------------------------------------------ APSO

def apso_step(pool, losses, alpha: float, subset_size: int | None = None, *, noise: float = 0.0,
              replace: bool = True, generator: torch.Generator | None = None) -> ApsoResult:
    """One APSO step, in place: draw ``subset_size`` members of ``pool`` (with
    replacement, as the seed does, unless ``replace=False``), find the subset's best
    by ``losses``, and move every other member of the subset toward it:

        W_i <- (1 - alpha) * W_i + alpha * W_best  (+ noise * Z_i,  Z_i ~ N(0, 1))

    ``pool`` is a :class:`Swarm` or a sequence of ParticleModules / root NytoModules
    of one species. One fused ``multi_blend_`` call per (dtype, device) group moves
    the whole subset; with ``noise > 0`` the standard-normal term is generated inside
    that pass from a counter-based generator seeded from ``generator`` (never a
    particle-sized buffer). Parameter objects, and so optimizer state, survive; the
    best member, non-operational parameters and buffers are not changed.

    Every argument is checked before anything is written."""
    if isinstance(pool, Swarm):
        return pool.apso_step(losses, alpha, subset_size, noise=noise, replace=replace, generator=generator)
    kernels = _kernels_of(pool)
    return _apso(len(kernels), lambda idx: _storages(kernels, "pool", idx),
                 losses, alpha, subset_size, noise, replace, generator)


def _apso(size, storages_of, losses, alpha, subset_size, noise, replace, generator) -> ApsoResult:
    """The step, given the pool size and ``storages_of(None)`` -> {index: storage} of
    every member (all checked for one layout before anything is drawn, so a bad member
    is reported whether or not the draw would have picked it)."""
    losses = _losses(losses, size)
    alpha = _open_unit(alpha, "alpha")
    subset_size = _subset_size(subset_size, size)
    noise = _noise(noise)
    generator = _generator(generator)
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be a bool, got {type(replace).__name__}")
    storages = storages_of(None)  # raises for a member of another layout: nothing drawn yet

    indices = choose_subset(size, subset_size, replace=replace, generator=generator)
    best, weights = _plan(indices, losses, alpha)
    if not weights:
        return ApsoResult(indices, best, {})
    members = list(weights)
    for i in members:  # lazy products reading a member keep the values they were built from
        storages[i].settle()
    source = storages[best].buffers
    alphas = [weights[i] for i in members]
    seed = _noise_seed(generator) if noise > 0 else None
    # Flat buffers never require grad (the Parameters viewing them do): no no_grad needed.
    for g in range(len(source)):
        targets = [storages[i].buffers[g] for i in members]
        if seed is None:  # the arguments are valid by construction: skip the wrapper's checks
            ops._multi_blend(targets, [source[g]], alphas)
        else:  # stream = member index: each member draws its own noise
            ops.multi_blend_noise_(targets, source[g], alphas, noise, seed=seed,
                                   streams=[i * len(source) + g for i in members])
    return ApsoResult(indices, best, weights)


# ------------------------------------------------------------------ momentum

def momentum_step(w_new, w_prev, w_prev2, beta: float):
    """Momentum as model arithmetic (the seed's ``net1 + beta*(net1 - net0)``):
    ``w_new + beta*(w_prev - w_prev2)`` as one lincomb pass per group.

    Takes three particles (returns a new particle of ``w_new``'s kind) or three
    products (returns a lazy product, fused further with whatever it is combined
    with)."""
    beta = _real(beta, "beta")
    result = _momentum(w_new, w_prev, w_prev2, beta)
    return result if _is_product(w_new) else result.module()


def momentum_step_(w_new, w_prev, w_prev2, beta: float):
    """In place into the particle ``w_new``: ``w_new <- w_new + beta*(w_prev - w_prev2)``
    (same Parameter objects, one pass per group). Returns ``w_new``."""
    beta = _real(beta, "beta")
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


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


# ------------------------------------------------------------------ the container

def _row(base: Tensor, i: int) -> Tensor:
    """Row ``i`` of ``base`` as a tensor with its own version counter (a plain view
    would share the base's, so a write to one member would look like a write to all)."""
    n = base.shape[1]
    return torch.empty(0, dtype=base.dtype, device=base.device).set_(
        base.untyped_storage(), base.storage_offset() + i * n, (n,), (1,))


class Swarm(Sequence):
    """K particles of one species whose parameters live in one [K, N] buffer per
    (dtype, device) group: row i is member i's flat buffer, its parameters are views
    of it. Whole-swarm updates (APSO over a subset, momentum over every member) are
    one fused launch per group.

    Members stay ordinary modules (train them, build optimizers on them). If
    something moves a member's parameters out of its row (``member.to(...)``,
    ``p.data = ...``, a structural change), the swarm notices and packs it back in
    before its next update.

    ``member.state_dict()`` holds only that member: its parameters are views of a row
    of the [K, N] buffer, and ``torch.save`` writes a view's whole storage, so the swarm
    gives each member a state-dict hook that replaces such views by compact copies
    (``torch.save(swarm[3].state_dict())`` writes one member, not K). Those values are
    therefore snapshots, not aliases of the parameters (as FSDP's full state dicts);
    buffers and parameters outside the row alias as usual, and
    ``state_dict(keep_vars=True)`` still returns the Parameter objects themselves
    (views of the row: save the default ``keep_vars=False`` form).
    """

    def __init__(self, particles: Sequence) -> None:
        self._kernels = _kernels_of(particles, "particles")
        self._members = list(particles)
        self._pack()
        for m in self._members:
            _install_compact_state(m)

    @classmethod
    def spawn(cls, model, size: int, init="randn") -> "Swarm":
        """A swarm of ``size`` particles of ``model``'s species: ``model`` itself
        first, then new particles made by ``init``: "randn", "rand" or "clone" (the
        particle methods), or a callable taking ``model`` and returning a particle."""
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if isinstance(init, str):
            if init not in ("randn", "rand", "clone"):
                raise ValueError(f"init must be 'randn', 'rand', 'clone' or a callable, got {init!r}")
            make = getattr(type(model), init)
        elif callable(init):
            make = init
        else:
            raise TypeError(f"init must be a string or a callable, got {type(init).__name__}")
        return cls([model] + [make(model) for _ in range(size - 1)])

    # ---------------------------------------------------------- storage

    def _pack(self) -> None:
        """Allocate the [K, N] buffers for the current layout and move every member in."""
        storages = _storages(self._kernels, "particles")
        self.layout = storages[0].layout
        k = len(self._kernels)
        self._base = [torch.empty((k, g.size), dtype=g.dtype, device=g.device) for g in self.layout.groups]
        self._rows = [[_row(b, i) for b in self._base] for i in range(k)]
        for kernel, rows in zip(self._kernels, self._rows):
            kernel.adopt(rows)

    def _sync(self, indices=None) -> dict:
        """Member index -> storage for ``indices`` (all when None), after moving back
        into its row any of those members whose parameters left it; re-packs every
        member when the species' layout changed."""
        storages = _storages(self._kernels, "particles", indices)
        if any(st.layout is not self.layout and st.layout != self.layout for st in storages.values()):
            self._pack()  # checks that every member agrees on the new layout
            storages = {i: self._kernels[i].storage for i in storages}
        for i, st in storages.items():
            if not all(map(_same, st.buffers, self._rows[i])):
                storages[i] = self._kernels[i].adopt(self._rows[i])
        return storages

    def buffers(self) -> list[Tensor]:
        """The [K, N] buffer of each (dtype, device) group (rows are members)."""
        self._sync()
        return list(self._base)

    # ---------------------------------------------------------- sequence

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, index):
        return self._members[index]  # a member, or a list of them for a slice

    @property
    def members(self) -> list:
        return list(self._members)

    @property
    def species(self):
        return self._kernels[0].species

    def best_index(self, losses) -> int:
        """The member with the lowest loss (the first among ties)."""
        losses = _losses(losses, len(self))
        return min(range(len(losses)), key=losses.__getitem__)

    def best(self, losses):
        return self._members[self.best_index(losses)]

    # ---------------------------------------------------------- updates

    def apso_step(self, losses, alpha: float, subset_size: int | None = None, *, noise: float = 0.0,
                  replace: bool = True, generator: torch.Generator | None = None) -> ApsoResult:
        """:func:`apso_step` on this swarm: one ``multi_blend_`` launch per group over
        the subset's rows."""
        return _apso(len(self), self._sync, losses, alpha, subset_size, noise, replace, generator)

    def momentum_(self, prev, prev2, beta: float) -> "Swarm":
        """Every member at once: ``W <- W + beta*(W_prev - W_prev2)``, one lincomb
        launch per group over the [K, N] buffers. ``prev`` and ``prev2`` are swarms
        of this species or :meth:`snapshot` results."""
        beta = _real(beta, "beta")
        storages = self._sync()
        bufs_prev = self._history(prev, "prev")
        bufs_prev2 = self._history(prev2, "prev2")
        for st in storages.values():
            st.settle()
        for b, p, p2 in zip(self._base, bufs_prev, bufs_prev2):  # buffers never require grad
            ops.lincomb_([1.0, beta, -beta], [b, p, p2])
        self._bump(storages.values())
        return self

    def snapshot(self) -> list[Tensor]:
        """A copy of the [K, N] buffers (for momentum's W_{t-1}, W_{t-2})."""
        self._sync()
        return [b.clone() for b in self._base]

    def _history(self, other, name: str) -> list:
        """``other``'s [K, N] buffers, checked against this (synced) swarm's."""
        if isinstance(other, Swarm):
            if other.species is not self.species:
                raise SpeciesError(f"{name}: " + DIFFERENT_SPECIES.format(what="swarms"))
            other = other.buffers()
        if not isinstance(other, (list, tuple)) or len(other) != len(self._base):
            raise TypeError(f"{name} must be a Swarm or a snapshot() of one")
        for i, (b, o) in enumerate(zip(self._base, other)):
            if not isinstance(o, Tensor) or o.shape != b.shape or o.dtype != b.dtype or o.device != b.device:
                raise ValueError(f"{name}[{i}] does not match this swarm's buffer "
                                 f"{tuple(b.shape)} {b.dtype} on {b.device}")
        return list(other)

    @staticmethod
    def _bump(storages) -> None:
        """A write through the [K, N] buffers bypasses the rows' version counters:
        bump them so products holding a member's old version know."""
        for st in storages:
            for r in st.buffers:
                torch.autograd.graph.increment_version(r)

    # ---------------------------------------------------------- state

    def state_dict(self) -> dict:
        """Every member's ``state_dict`` (parameters and buffers), in order. Each
        member's parameters are compact copies of its row (see the class docstring), so
        any part of it saves only what it holds; buffers alias the members' buffers."""
        return {"size": len(self), "members": [m.state_dict() for m in self._members]}

    def check_state_dict(self, state, strict: bool = True) -> None:
        """Raise (``TypeError`` / ``ValueError`` naming the member and the key) unless
        :meth:`load_state_dict` would load ``state`` completely: a
        :meth:`state_dict` of this many members whose tensors have this swarm's keys
        (all of them and no others when ``strict``) and shapes. Changes nothing."""
        if not isinstance(state, dict) or "members" not in state:
            raise TypeError("state must be a Swarm.state_dict()")
        members = state["members"]
        if not isinstance(members, (list, tuple)):
            raise TypeError("state['members'] must be a list of the members' state_dicts")
        if len(members) != len(self) or state.get("size", len(members)) != len(members):
            raise ValueError(f"state holds {len(members)} members, this swarm has {len(self)}")
        for i, (m, s) in enumerate(zip(self._members, members)):
            _check_module_state(m, s, strict, f"state['members'][{i}]")

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Load :meth:`state_dict` output into the members, in place (Parameter
        objects and the [K, N] storage kept). Everything is checked first
        (:meth:`check_state_dict`): a state of another size or architecture raises
        and loads nothing."""
        self.check_state_dict(state, strict)
        for m, s in zip(self._members, state["members"]):
            m.load_state_dict(s, strict=strict)
        self._sync()

    def to(self, *args, **kwargs) -> "Swarm":
        """``nn.Module.to`` on every member, then one [K, N] buffer per group on the
        new device/dtype (Parameter objects kept; build optimizers afterwards, as
        with any module moved between devices)."""
        for m in self._members:
            m.to(*args, **kwargs)
        self._pack()
        return self

    def __repr__(self) -> str:
        groups = ", ".join(f"[{len(self)}, {g.size}] {str(g.dtype).replace('torch.', '')} on {g.device}"
                           for g in self.layout.groups)
        return f"Swarm({len(self)} particles; {groups})"


def _same(a: Tensor, b: Tensor) -> bool:
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape)


# ------------------------------------------------------------------ member state dicts

class _CompactState:
    """A member's state-dict post-hook: every value that is a view into a larger
    storage (a row of the swarm's [K, N] buffer) becomes a compact copy, so that
    ``torch.save`` of the member's state writes the member only. Values that are
    Parameters (``keep_vars=True``) are left as they are. Stateless, so a member with
    the hook still pickles and deep-copies."""

    def __call__(self, module, state_dict, prefix, local_metadata) -> None:
        keys = [k for k in state_dict if k.startswith(prefix)]
        if any(isinstance(state_dict[k], nn.Parameter) for k in keys):
            return  # keep_vars=True: the caller asked for the Parameter objects
        for k in keys:
            v = state_dict[k]
            if type(v) is Tensor and v.layout == torch.strided and not v.is_meta \
                    and v.untyped_storage().nbytes() > v.numel() * v.element_size():
                state_dict[k] = v.clone()


def _install_compact_state(member) -> None:
    if not any(isinstance(h, _CompactState) for h in member._state_dict_hooks.values()):
        member.register_state_dict_post_hook(_CompactState())


def _check_module_state(module: nn.Module, state, strict: bool, what: str) -> None:
    """What ``module.load_state_dict(state, strict)`` would refuse (or half-load: torch
    copies the matching entries before it reports a mismatch), raised before it runs."""
    if not isinstance(state, dict):
        raise TypeError(f"{what} must be a state_dict (a dict), got {type(state).__name__}")
    own = module.state_dict(keep_vars=True)
    # BatchNorm fills in a missing num_batches_tracked itself (states from old torch versions)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}"
                         + (f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""))
        raise ValueError(f"{what} does not match the member's keys ({'; '.join(parts)}): a state of "
                         f"another architecture; nothing was loaded")
    for k, target in own.items():
        if k not in state or not isinstance(target, Tensor):
            continue
        value = state[k]
        if not isinstance(value, Tensor):
            raise TypeError(f"{what}[{k!r}] must be a tensor, got {type(value).__name__}; nothing was loaded")
        if value.shape != target.shape:
            raise ValueError(f"{what}[{k!r}] has shape {tuple(value.shape)}, the member's is "
                             f"{tuple(target.shape)}: a state of another architecture; nothing was loaded")
