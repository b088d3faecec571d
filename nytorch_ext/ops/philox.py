"""The in-kernel Gaussian noise of the fused noise ops (see nytorch_ext.ops), in
plain PyTorch: the reference the kernels are tested against, and what the
pure-PyTorch fallback adds (it materializes the noise; the compiled kernels never
do, they draw it inside the fused pass).

Element ``i`` of a tensor takes lane ``i % 4`` of one Philox4x32-10 call
(Random123's constants) with

* key ``(seed & 0xffffffff, seed >> 32)``,
* counter ``(b & 0xffffffff, b >> 32, stream & 0xffffffff, stream >> 32)``, ``b = i // 4``,

whose four 32-bit words ``x`` become uniforms ``u = (x + 0.5) * 2**-32`` and, by
Box-Muller on the lane pairs (0, 1) and (2, 3), four standard normals:
``z0 = sqrt(-2 ln u0) cos(2 pi u1)``, ``z1 = sqrt(-2 ln u0) sin(2 pi u1)``. All of
it in opmath (float32 for float32/float16/bfloat16, float64 for float64), rounded
to the dtype once. csrc/philox.h is the C++/CUDA side of the same definition.

Seeds and streams are 64-bit: any Python int in ``[-2**63, 2**64)``, taken as its
uint64 bits (so ``-1`` and ``2**64 - 1`` are the same seed).
"""
from __future__ import annotations

import math
import numbers

import torch

__all__ = ["philox4x32", "philox_normal", "uint64_bits"]

M0, M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # key schedule increments
ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1


def uint64_bits(value: int, name: str = "value") -> int:
    """``value`` (an int in ``[-2**63, 2**64)``) as the uint64 it names."""
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"{name} must be in [-2**63, 2**64), got {value}")
    return value & _MASK64


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of ``a * m`` for uint32 values held in int64,
    without overflowing int64: ``m`` is split into 16-bit halves."""
    p0 = a * (m & 0xFFFF)  # < 2**48
    t = a * (m >> 16) + (p0 >> 16)  # a*m == t * 2**16 + (p0 & 0xffff), t < 2**49
    return t >> 16, ((t & 0xFFFF) << 16) | (p0 & 0xFFFF)


def philox4x32(counter_words: torch.Tensor, key_words, rounds: int = ROUNDS) -> torch.Tensor:
    """Philox4x32-``rounds`` on int64 tensors holding uint32 values.

    ``counter_words``: shape ``(..., 4)``; ``key_words``: shape ``(2,)`` (or
    broadcastable to ``(..., 2)``; a pair of ints works too). Returns the four
    output words, shape ``(..., 4)``, int64 in ``[0, 2**32)``."""
    counter_words = torch.as_tensor(counter_words, dtype=torch.int64)
    key_words = torch.as_tensor(key_words, dtype=torch.int64, device=counter_words.device)
    if counter_words.shape[-1:] != (4,) or key_words.shape[-1:] != (2,):
        raise ValueError("counter_words must have shape (..., 4) and key_words (..., 2)")
    c0, c1, c2, c3 = counter_words.unbind(-1)
    k0, k1 = key_words.unbind(-1)
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(c0, M0)
        hi1, lo1 = _mulhilo(c2, M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + W0) & _MASK32, (k1 + W1) & _MASK32
    return torch.stack([c0, c1, c2, c3], dim=-1)


def philox_normal(numel: int, seed: int, stream: int = 0, dtype: torch.dtype = torch.float32,
                  device="cpu") -> torch.Tensor:
    """The ``numel`` standard normals that the fused noise ops add for ``(seed,
    stream)`` to a tensor of ``numel`` elements of ``dtype`` (before scaling),
    computed in opmath and rounded to ``dtype`` once. A 1-D tensor on ``device``."""
    if isinstance(numel, bool) or not isinstance(numel, numbers.Integral):
        raise TypeError(f"numel must be an int, got {type(numel).__name__}")
    if numel < 0:
        raise ValueError(f"numel must be >= 0, got {numel}")
    numel = int(numel)
    if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"dtype must be float32, float64, float16 or bfloat16, got {dtype}")
    seed, stream = uint64_bits(seed, "seed"), uint64_bits(stream, "stream")
    opmath = torch.float64 if dtype == torch.float64 else torch.float32
    blocks = torch.arange((numel + 3) // 4, dtype=torch.int64, device=device)
    counter = torch.stack([blocks & _MASK32, blocks >> 32,
                           torch.full_like(blocks, stream & _MASK32),
                           torch.full_like(blocks, stream >> 32)], dim=-1)
    x = philox4x32(counter, [seed & _MASK32, seed >> 32])
    u = (x.to(opmath) + 0.5) * 2.0 ** -32  # in (0, 1]
    two_pi = torch.tensor(2 * math.pi, dtype=opmath, device=device)  # rounded to opmath
    r = torch.sqrt(torch.log(u[:, 0::2]) * -2.0)  # lanes 0 and 2
    theta = u[:, 1::2] * two_pi  # lanes 1 and 3
    z = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1)  # (blocks, pair, cos|sin)
    return z.reshape(-1)[:numel].to(dtype)
