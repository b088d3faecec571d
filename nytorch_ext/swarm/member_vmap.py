"""``torch.func.vmap`` over a swarm's members, called with a flat argument list.

``torch.func.vmap`` flattens its arguments and ``in_dims`` as pytrees on every call and
unflattens its outputs the same way: Python work that is a fixed cost per call, as
large as a small model's whole batched forward. A batched swarm calls its vmapped
member function with the same flat structure every time (the members' parameter
leaves, their buffers, the inputs, the loss's extra arguments), so :func:`member_vmap`
does the per-call part of ``torch.func.vmap``'s own implementation
(``torch._functorch.vmap._flat_vmap``: enter a vmap level, add the batch dimension to
each batched argument, call, remove it from each output tensor) with ``in_dims``
fixed when it is built. Arguments whose dim is None go in as they are, any structure
included, as in ``torch.func.vmap``.

The building blocks are torch's private functorch API. Where a torch version lacks
one of them, :func:`member_vmap` is ``torch.func.vmap`` itself (same results, the
pytree cost back).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.func import vmap
from torch.utils._pytree import tree_map

try:  # the pieces torch.func.vmap is built from (torch/_functorch/vmap.py)
    from torch._functorch.vmap import (_add_batch_dim, _remove_batch_dim, lazy_load_decompositions,
                                       vmap_increment_nesting)
    FLAT = True  # whether member_vmap skips the pytree work
except ImportError:  # pragma: no cover - another torch layout: the public vmap
    FLAT = False

__all__ = ["member_vmap", "FLAT"]


def member_vmap(func: Callable, in_dims: Sequence[int | None], randomness: str = "different") -> Callable:
    """``func`` vmapped over dim ``in_dims[j]`` of its ``j``-th positional argument (None:
    not batched), its outputs (a tensor, or a tuple or list of tensors) batched on dim
    0 (any pytree of tensors): ``torch.func.vmap(func, in_dims=tuple(in_dims),
    randomness=randomness)`` without the per-call pytree work on the arguments. Every
    batched argument must be a tensor."""
    in_dims = tuple(in_dims)
    if not FLAT:  # pragma: no cover
        return vmap(func, in_dims=in_dims, randomness=randomness)
    if randomness not in ("error", "different", "same"):
        raise ValueError(f"randomness must be 'error', 'different' or 'same', got {randomness!r}")
    batched = [(j, d) for j, d in enumerate(in_dims) if d is not None]
    if any(not isinstance(d, int) or d < 0 for _, d in batched):
        raise ValueError(f"member_vmap: in_dims must be non-negative ints or None, got {in_dims}")
    if not batched:
        raise ValueError("member_vmap: at least one argument must be batched (in_dims all None)")
    name = getattr(func, "__name__", repr(func))

    def unwrap(out, level: int, size: int):
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"vmap({name}, ...): `{name}` must only return Tensors, got {type(out).__name__}")
        return _remove_batch_dim(out, level, size, 0)

    def mapped(*args):
        if len(args) != len(in_dims):
            raise TypeError(f"member_vmap({name}): {len(args)} arguments for {len(in_dims)} in_dims")
        size = -1  # the first batched tensor's
        for j, d in batched:
            a = args[j]
            if size < 0 and isinstance(a, torch.Tensor) and a.dim() > d:
                size = a.shape[d]
            if not isinstance(a, torch.Tensor) or a.dim() <= d or a.shape[d] != size:
                want = "a tensor" + (f" with {size} entries on dim {d}" if size >= 0 else f" with a dim {d}")
                raise ValueError(f"vmap({name}, ...): argument {j} must be {want}, got "
                                 f"{tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__}")
        lazy_load_decompositions()
        with vmap_increment_nesting(size, randomness) as level:
            out = func(*(a if d is None else _add_batch_dim(a, d, level) for a, d in zip(args, in_dims)))
            if isinstance(out, torch.Tensor):
                return unwrap(out, level, size)
            if type(out) is tuple and all(isinstance(o, torch.Tensor) for o in out):
                return tuple(unwrap(o, level, size) for o in out)
            return tree_map(lambda o: unwrap(o, level, size), out)  # any other structure: as vmap does

    return mapped
