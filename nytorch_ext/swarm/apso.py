"""APSO as one fused, in-place library operation.

The seed chapter's APSO step rebuilds a model (and its optimizer) for every member
it moves: ``pool[i] = from_product(alpha*best.product() + (1-alpha)*pool[i].product())``.
Here the same update is done in place, with one ``ops.multi_blend_`` call per
(dtype, device) group for the whole subset: members keep their Parameter objects,
so optimizers and their state keep working.

A step is three parts, each a function here: the draw (:func:`choose_subset`), the
plan (:func:`blend_plan`: the subset's best and each other member's weight) and the
blend of the planned members' storages (:func:`blend_toward_best`). A distributed
swarm draws and plans identically on every rank and blends only its own members.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import ops
from ..ops._extension import native
from ..ops.validation import int64_bits, positive_int, probability
from ..particles.storage import Storage, bump_versions
from .arguments import flag, member_losses, noise_scale, pool_size, subset_generator, subset_size as check_subset_size
from .members import MemberPool, ParticlePool


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

    @classmethod
    def _of(cls, indices: list, best: int, blended: dict) -> "ApsoResult":
        """A step's result, built without the frozen dataclass's ``__init__`` (one
        ``object.__setattr__`` per field: several times the cost of filling ``__dict__``)."""
        result = object.__new__(cls)
        result.__dict__.update(indices=indices, best=best, blended=blended)
        return result


def torch_draw(size: int, subset_size: int, replace: bool, generator) -> list:
    """The subset draw by torch's own ops: what :func:`choose_subset` returns."""
    if replace:
        return torch.randint(size, (subset_size,), generator=generator).tolist()
    return torch.randperm(size, generator=generator).tolist()[:subset_size]


def _draws_match_torch(draw) -> bool:
    """Whether ``draw`` gives torch's numbers and leaves the generator where torch
    does (checked once, on a few draws)."""
    for seed, size, k, replace in ((0, 12, 6, True), (1, 12, 6, False), (2, 1, 1, False), (3, 100, 100, False),
                                   (4, 7, 30, True)):
        ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        if (draw(size, k, replace, ours) != torch_draw(size, k, replace, theirs)
                or not torch.equal(torch.rand(4, generator=ours), torch.rand(4, generator=theirs))):
            return False
    return True


# _C.draw_indices: the same numbers as torch's randint / randperm kernels (their
# algorithms on the generator's engine), as a list, without two ops' dispatch and a
# tolist(); torch's ops wherever it does not reproduce them (another torch version).
_draw = native("draw_indices", torch_draw)
if _draw is not torch_draw and not _draws_match_torch(_draw):  # pragma: no cover - a torch that draws otherwise
    _draw = torch_draw


def choose_subset(size: int, subset_size: int, *, replace: bool = True, generator=None) -> list:
    """``subset_size`` member indices of a pool of ``size``: with replacement (the
    seed's ``random.choices``) or without; drawn from ``generator`` (torch's
    default generator when None, so ``torch.manual_seed`` reproduces them). The
    numbers are ``torch.randint(size, (subset_size,), generator=generator)``'s, or
    the first ``subset_size`` of ``torch.randperm(size, generator=generator)``."""
    size = pool_size(size)
    if not (type(subset_size) is int and 0 <= subset_size and (replace or subset_size <= size)):
        subset_size = positive_int(subset_size, "subset_size", minimum=0)
        if not replace and subset_size > size:
            raise ValueError(f"subset_size must be at most size {size} without replacement, got {subset_size}")
    return _draw(size, subset_size, flag(replace, "replace"), subset_generator(generator))


def blend_plan(indices: list, losses: list, alpha: float) -> tuple[int, dict]:
    """The subset's best (lowest loss; the first drawn among ties, as the seed's
    stable sort) and each other distinct member's effective weight."""
    best = min(indices, key=losses.__getitem__)
    if len(set(indices)) == len(indices):  # no repeats: each weight is the one-draw weight
        return best, dict.fromkeys([i for i in indices if i != best], 1.0 - (1.0 - alpha))
    counts: dict = {}
    for i in indices:
        if i != best:
            counts[i] = counts.get(i, 0) + 1
    return best, {i: 1.0 - (1.0 - alpha) ** m for i, m in counts.items()}


def noise_seed(generator) -> int:
    """A 64-bit seed for the counter-based noise, drawn from ``generator`` (after the subset)."""
    lo, hi = torch.randint(0, 2 ** 32, (2,), generator=generator, dtype=torch.int64).tolist()
    return (hi << 32) | lo


def noise_stream(member: int, group: int, groups: int) -> int:
    """The noise stream of one member's group: each member draws its own noise."""
    return member * groups + group


def blend_toward_best(storages: dict[int, Storage], best: int, weights: dict, noise: float = 0.0,
                      seed: int | None = None) -> None:
    """``W_i <- (1 - w_i) * W_i + w_i * W_best (+ noise * Z_i)`` for every member ``i`` of
    ``weights``, one ``multi_blend_`` (or ``multi_blend_noise_`` with ``seed``) call per
    (dtype, device) group; the lazy products reading a moved member keep their values."""
    members = list(weights)
    for i in members:
        storages[i].settle()
    source = storages[best].buffers
    alphas = list(map(float, weights.values()))
    if seed is not None:
        seed = int64_bits(seed, "seed")
    # Group g of every member's storage has one dtype and device (one layout): the
    # prepared entry skips the public function's conversions and grouping, and the op
    # still checks everything. Flat buffers never require grad: no no_grad needed.
    for g, shared in enumerate(source):
        targets = [storages[i].buffers[g] for i in members]
        if seed is None:
            ops.prepared.multi_blend_(targets, [shared], alphas, True)
        else:
            ops.prepared.multi_blend_noise_(targets, [shared], alphas, float(noise), seed,
                                            [noise_stream(i, g, len(source)) for i in members], True)
    bump_versions([storages[i] for i in members], buffers=False)  # a pending backward of a moved member refuses


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
    if not isinstance(pool, MemberPool):
        pool = ParticlePool(pool)
    return step_pool(pool, losses, alpha, subset_size, noise, replace, generator)


def step_pool(pool: MemberPool, losses, alpha, subset_size, noise, replace, generator) -> ApsoResult:
    """:func:`apso_step` on a :class:`MemberPool` (a Swarm calls this directly)."""
    size = len(pool)
    losses = member_losses(losses, size)
    if not (type(alpha) is float and 0.0 < alpha < 1.0):  # a float in (0, 1) is one as it stands
        alpha = probability(alpha, "alpha")
    subset_size = check_subset_size(subset_size, size)
    noise = noise_scale(noise)
    generator = subset_generator(generator)
    flag(replace, "replace")
    # Every member's layout is checked before anything is drawn, so a bad member is
    # reported whether or not the draw would have picked it.
    storages = pool.storages()

    indices = _draw(size, subset_size, replace, generator)  # choose_subset, its arguments checked above
    best, weights = blend_plan(indices, losses, alpha)
    if weights:
        blend_toward_best(storages, best, weights, noise, noise_seed(generator) if noise > 0 else None)
    return ApsoResult._of(indices, best, weights)
