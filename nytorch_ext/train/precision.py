"""Mixed precision: fit's ``precision=`` as a ``torch.autocast`` context and, for fp16 on
CUDA, one ``GradScaler`` per member.

``"32"`` (the default): no autocast. ``"bf16"``: ``torch.autocast(device, torch.bfloat16)``
on CPU and CUDA; bfloat16 has float32's range, so no loss scaling. ``"fp16"``:
``torch.autocast("cuda", torch.float16)`` with a ``torch.amp.GradScaler`` per member (each
member's scale follows its own gradients, and each scaler is saved in checkpoints);
refused on the CPU, where float16 autocast is slow and has no use (use ``"bf16"``).
Parameters, gradients and optimizer states stay float32 in every mode.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A run's precision on ``device_type``."""
    name: str
    device_type: str

    @classmethod
    def checked(cls, precision, device: torch.device) -> "Precision":
        """fit's ``precision`` (``"32"`` or 32, ``"bf16"``, ``"fp16"``) for ``device``."""
        name = str(precision) if isinstance(precision, int) and not isinstance(precision, bool) else precision
        if name not in PRECISIONS:
            raise ValueError(f"precision must be '32', 'bf16' or 'fp16', got {precision!r}")
        if name == "fp16" and device.type != "cuda":
            raise ValueError(f"precision='fp16' needs a CUDA device (this run is on {device.type}): float16 "
                             f"autocast has no gradient scaling there; use precision='bf16' on the CPU")
        return cls(name, device.type)

    @property
    def dtype(self):
        return PRECISIONS[self.name]

    def autocast(self):
        """The context a forward pass runs in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def make_scalers(self, k: int) -> list | None:
        """One GradScaler per member for fp16, else None."""
        if self.name != "fp16":
            return None
        return [torch.amp.GradScaler(self.device_type) for _ in range(k)]
