"""Which rank owns which members: contiguous blocks, as even as K and W allow."""
from __future__ import annotations


def blocks(size: int, world_size: int) -> list[range]:
    """The members each of ``world_size`` ranks owns in a swarm of ``size``: contiguous
    ranges, the first ``size % world_size`` ranks one member more. A swarm smaller than
    the world is refused (a rank without members would have nothing to train)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if size < world_size:
        raise ValueError(f"a swarm of {size} member(s) cannot be split across {world_size} processes "
                         f"(K < W): every rank must own at least one member; use at most {size} "
                         f"processes or a larger swarm")
    base, extra = divmod(size, world_size)
    out, start = [], 0
    for r in range(world_size):
        n = base + (1 if r < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


def owner_of(index: int, ranges: list[range]) -> int:
    """The rank whose block holds member ``index``."""
    for r, block in enumerate(ranges):
        if index in block:
            return r
    raise IndexError(f"member {index} is not in a swarm of {ranges[-1].stop if ranges else 0}")
