"""Choosing the device a swarm trains on.

``resolve_device(device)`` turns what a user passes (``"auto"``, ``"cpu"``,
``"cuda"``, ``"cuda:N"``, an int N, a ``torch.device``, or None = ``"auto"``) into a
``torch.device``, checking CUDA requests against what is present:

- ``"auto"``: the CUDA device with the most free memory (``torch.cuda.mem_get_info``;
  the lowest index among ties), else the CPU. A device whose free memory cannot be
  read counts as having none; if no device can be read, ``cuda:0`` is used.
- ``"cuda"`` means the current CUDA device; ``"cuda:N"`` / ``N`` the N-th one. Either
  raises ``ValueError`` when CUDA is not available or N is out of range.
- Any other device string or ``torch.device`` (``"mps"``, ``"meta"``, ...) is passed
  through as ``torch.device(device)``.
"""
from __future__ import annotations

import numbers

import torch

__all__ = ["resolve_device", "cuda_free_memory"]


def cuda_free_memory() -> dict[int, int]:
    """CUDA device index -> free bytes (-1 where ``mem_get_info`` fails); empty
    when CUDA is not available."""
    if not torch.cuda.is_available():
        return {}
    free = {}
    for i in range(torch.cuda.device_count()):
        try:
            free[i] = int(torch.cuda.mem_get_info(i)[0])
        except (RuntimeError, AssertionError, ValueError):  # device busy, prohibited, ...
            free[i] = -1
    return free


def _cuda(index: int | None, what) -> torch.device:
    if not torch.cuda.is_available():
        raise ValueError(f"device={what!r}: CUDA is not available (use device='auto' or 'cpu')")
    count = torch.cuda.device_count()
    if index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if not 0 <= index < count:
        raise ValueError(f"device={what!r}: there {'is' if count == 1 else 'are'} {count} CUDA "
                         f"device(s), index {index} is out of range")
    return torch.device("cuda", index)


def resolve_device(device="auto") -> torch.device:
    """The ``torch.device`` for ``device`` (see the module docstring)."""
    if device is None:
        device = "auto"
    if isinstance(device, bool):
        raise TypeError("device must be 'auto', a device string, an int or a torch.device, got bool")
    if isinstance(device, numbers.Integral):
        return _cuda(int(device), device)
    if isinstance(device, str):
        spec = device.strip().lower()
        if spec == "auto":
            free = cuda_free_memory()
            if not free:
                return torch.device("cpu")
            best = max(free, key=lambda i: (free[i], -i))
            return torch.device("cuda", best)
        try:
            parsed = torch.device(spec)
        except RuntimeError as e:
            raise ValueError(f"device={device!r} is not a device: {e}") from None
    elif isinstance(device, torch.device):
        parsed = device
    else:
        raise TypeError(f"device must be 'auto', a device string, an int or a torch.device, "
                        f"got {type(device).__name__}")
    if parsed.type == "cuda":
        return _cuda(parsed.index, device)
    return parsed
