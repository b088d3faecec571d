"""The gradient-descent part of a training batch: one step for every member.

Each member runs its own forward (under the run's autocast), loss and backward on the
shared batch. Every ``accumulate_grad_batches`` batches (and at the end of an epoch)
its optimizer steps: the GradScaler unscales the gradients (fp16), the
``on_before_optimizer_step`` hooks run, the gradients are clipped (by norm, then by
value, over that member's parameters only), the optimizer (through its scaler) steps,
and a per-batch scheduler steps. Within a window each batch's loss is divided by the
window's length, so the accumulated gradient is the mean over its batches. This is the
one place the per-member gradient step lives; the batched step (all members in one
forward, :mod:`~nytorch_ext.train.batched_step`) is a :class:`GradientSteps` too, with the
same windows.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from .. import ops
from ..ops.validation import positive_int
from .batches import call_model
from .metrics import as_float, weighted_loss
from .precision import Precision


def _positive_or_none(value, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number or None, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number or None, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class StepSettings:
    """fit's gradient options: clipping, accumulation and precision, checked as one."""
    clip_norm: float | None = None
    clip_value: float | None = None
    accumulate: int = 1
    precision: Precision = Precision("32", "cpu")

    @classmethod
    def checked(cls, grad_clip_norm, grad_clip_value, accumulate_grad_batches, precision,
                device: torch.device) -> "StepSettings":
        return cls(_positive_or_none(grad_clip_norm, "grad_clip_norm"),
                   _positive_or_none(grad_clip_value, "grad_clip_value"),
                   positive_int(accumulate_grad_batches, "accumulate_grad_batches", type_error=ValueError),
                   Precision.checked(precision, device))


class GradientSteps:
    """One run's gradient steps over ``members`` (see the module docstring).

    ``before_step``: callables ``(member_index, optimizer)`` (the callbacks'
    ``on_before_optimizer_step``); ``schedulers``: per-batch schedulers or None;
    ``scalers``: one GradScaler per member (fp16) or None."""

    def __init__(self, members: list, optimizers: list, loss_fn, settings: StepSettings, *,
                 scalers: list | None = None, schedulers: list | None = None, before_step=()) -> None:
        self.members, self.optimizers, self.loss_fn, self.settings = members, optimizers, loss_fn, settings
        self.scalers, self.schedulers, self.before_step = scalers, schedulers, list(before_step)
        self.params = [[p for p in m.parameters() if p.requires_grad] for m in members]
        self.pending = 0          # batches accumulated since the last optimizer step
        self.window = 1           # the current window's length

    def start_window(self, length: int) -> None:
        self.window = max(1, int(length))

    def batch(self, x, y, weight, metrics: dict, metric_sums: dict, samples: int, step: bool) -> list[float]:
        """Forward and backward of every member on one batch, then, when ``step``, every
        member's optimizer step. Returns the members' losses (before the step, unscaled)
        and adds each metric times ``samples`` to ``metric_sums``."""
        losses = []
        scale = 1.0 / self.window
        mixed = self.settings.precision.dtype is not None
        scalers, loss_fn, first = self.scalers, self.loss_fn, self.pending == 0
        for i, (member, opt) in enumerate(zip(self.members, self.optimizers)):
            if first:
                opt.zero_grad()
            if mixed:
                with self.settings.precision.autocast():
                    out = call_model(member, x)
                    value = weighted_loss(loss_fn, out, y, weight)
            else:  # no context manager on the default path: it runs K times a batch
                out = call_model(member, x)
                value = loss_fn(out, y) if weight is None else weighted_loss(loss_fn, out, y, weight)
            backward = value if scale == 1.0 else value * scale
            if scalers is not None:
                backward = scalers[i].scale(backward)
            backward.backward()
            if step:
                self._step(i, opt)
            losses.append(value.detach())
            for name, fn in metrics.items():
                metric_sums[name][i] += as_float(fn(out.detach(), y)) * samples
        self.pending = 0 if step else self.pending + 1
        return torch.stack([v.float() for v in losses]).tolist() if mixed else torch.stack(losses).tolist()

    def flush(self) -> None:
        """Step the members whose gradients wait in an unfinished window (an epoch whose
        length was unknown, or a stop mid-window); the gradients, divided by the
        window's planned length, are rescaled to the mean over the batches seen."""
        if self.pending == 0:
            return
        if self.pending != self.window:
            with torch.no_grad():
                for params in self.params:
                    grads = [p.grad for p in params if p.grad is not None]
                    if grads:
                        ops.multi_scale_(grads, self.window / self.pending)
        for i, opt in enumerate(self.optimizers):
            self._step(i, opt)
        self.pending = 0

    def _step(self, i: int, opt) -> None:
        scaler = self.scalers[i] if self.scalers is not None else None
        if scaler is not None:
            scaler.unscale_(opt)
        for hook in self.before_step:
            hook(i, opt)
        settings = self.settings
        if settings.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params[i], settings.clip_norm)
        if settings.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params[i], settings.clip_value)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if self.schedulers is not None:
            self.schedulers[i].step()
