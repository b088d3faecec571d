"""Argument rules of the fused ops, for the pure-PyTorch fallback.

They mirror csrc/checks.cpp and csrc/ops.cpp exactly (same exception types, the
same argument names in the messages), so both backends accept and reject the
same calls, and every check runs before any write.

``aliasing=False`` skips the memory-overlap checks, which need real data
pointers: the fake implementations (FakeTensor, meta) run every other rule.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def floating(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dtype not in FLOATING:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")


def same(t, name: str, ref: torch.Tensor, ref_name: str) -> None:
    floating(t, name)
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}")
    if t.device != ref.device:
        raise RuntimeError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")
    if t.shape != ref.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but {ref_name} has shape {tuple(ref.shape)}")


def finite(value: float, name: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def writable(t: torch.Tensor, name: str, op: str) -> None:
    """The compiled ops' autograd rule (csrc/ops.cpp): no writing a tensor that
    requires grad while grad mode is on."""
    if torch.is_grad_enabled() and t.requires_grad:
        raise RuntimeError(f"nytorch_ext::{op} writes {name}, which requires grad; these in-place ops are not "
                           "differentiable: call them under torch.no_grad()")


def contiguous(t: torch.Tensor, name: str) -> None:
    if not t.is_contiguous():
        raise RuntimeError(
            f"{name} must be contiguous (call .contiguous() first); in-place, out= and list forms never copy"
        )


def _span(t: torch.Tensor) -> tuple[int, int]:
    start = t.data_ptr()
    return start, start + t.numel() * t.element_size()


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors share any memory (both non-empty, same device)."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device or a.device.type == "meta":
        return False
    return _overlap(_span(a), _span(b))


def out_alias(out: torch.Tensor, inp: torch.Tensor, in_name: str) -> None:
    if out.numel() == 0 or inp.numel() == 0:
        return
    o, i = _span(out), _span(inp)
    if _overlap(o, i) and o != i:
        raise RuntimeError(
            f"out partially overlaps {in_name}: out may be the very same memory as an input, or disjoint from it"
        )


def binary_out(out, x, y, aliasing: bool = True) -> None:
    floating(x, "x")
    same(y, "y", x, "x")
    same(out, "out", x, "x")
    for t, name in ((out, "out"), (x, "x"), (y, "y")):
        contiguous(t, name)
    if aliasing:
        out_alias(out, x, "x")
        out_alias(out, y, "y")


def lincomb_out(out, coeffs: Sequence[float], tensors: Sequence[torch.Tensor], aliasing: bool = True) -> None:
    if len(coeffs) == 0:
        raise ValueError("coeffs must not be empty")
    if len(coeffs) != len(tensors):
        raise ValueError(f"coeffs has {len(coeffs)} entries but tensors has {len(tensors)}")
    floating(tensors[0], "tensors[0]")
    for k, t in enumerate(tensors):
        same(t, f"tensors[{k}]", tensors[0], "tensors[0]")
        contiguous(t, f"tensors[{k}]")
    same(out, "out", tensors[0], "tensors[0]")
    contiguous(out, "out")
    for k, t in enumerate(tensors):
        if aliasing:
            out_alias(out, t, f"tensors[{k}]")


def multi(
    outs: Sequence[torch.Tensor],
    outs_name: str,
    inputs: Sequence[tuple[Sequence[torch.Tensor], str]],
    one_group: bool = True,
    aliasing: bool = True,
) -> None:
    """List rules; ``one_group=False`` admits several (device, dtype) groups, which
    the public API then launches one group at a time."""
    n = len(outs)
    for tensors, name in inputs:
        m = len(tensors)
        if not (m == n or (m == 1 and n > 0)):
            raise ValueError(
                f"{name} has {m} tensors but {outs_name} has {n} (they must have equal lengths, "
                f"or {name} must hold a single tensor shared by all)"
            )
    if n == 0:
        return
    floating(outs[0], f"{outs_name}[0]")
    for i, out in enumerate(outs):
        out_name = f"{outs_name}[{i}]"
        floating(out, out_name)
        if one_group and out.dtype != outs[0].dtype:
            raise TypeError(f"{out_name} has dtype {out.dtype} but {outs_name}[0] has dtype {outs[0].dtype}")
        if one_group and out.device != outs[0].device:
            raise RuntimeError(f"{out_name} is on {out.device} but {outs_name}[0] is on {outs[0].device}")
        contiguous(out, out_name)
        for tensors, name in inputs:
            shared = len(tensors) == 1 and n > 1
            j = 0 if shared else i
            floating(tensors[j], f"{name}[{j}]")
            contiguous(tensors[j], f"{name}[{j}]")
            same(tensors[j], f"{name}[{j}]", out, out_name)

    if not aliasing:
        return
    spans = sorted((_span(o), i) for i, o in enumerate(outs) if o.numel() > 0)
    for (a, i), (b, j) in zip(spans, spans[1:]):
        if _overlap(a, b):
            raise RuntimeError(f"{outs_name}[{i}] and {outs_name}[{j}] overlap: every output must be written exactly once")
    for tensors, name in inputs:
        shared = len(tensors) == 1 and n > 1
        for j, t in enumerate(tensors):
            if t.numel() == 0:
                continue
            s = _span(t)
            for o, i in spans:  # the fallback is not the fast path: a plain scan will do
                if _overlap(o, s) and (shared or i != j or o != s):
                    reason = (
                        "a shared input may not be written by the same call"
                        if shared
                        else "an input may alias only its own output, exactly"
                    )
                    raise RuntimeError(f"{name}[{j}] overlaps {outs_name}[{i}]: {reason}")


def multi_axpby(outs, xs, ys, one_group: bool = True, aliasing: bool = True) -> None:
    if len(xs) != len(outs):
        raise ValueError(f"xs has {len(xs)} tensors but outs has {len(outs)}")
    if len(ys) != len(outs):
        raise ValueError(f"ys has {len(ys)} tensors but outs has {len(outs)}")
    multi(outs, "outs", [(xs, "xs"), (ys, "ys")], one_group, aliasing)


def multi_blend(targets, sources, alphas, one_group: bool = True, aliasing: bool = True,
                alphas_name: str = "alphas") -> None:
    if len(sources) == 0 and len(targets) > 0:
        raise ValueError("sources must not be empty")
    if not (len(alphas) == 1 or len(alphas) == len(targets)):
        raise ValueError(
            f"{alphas_name} has {len(alphas)} entries but targets has {len(targets)} (give one, or one per target)"
        )
    multi(targets, "targets", [(sources, "sources")], one_group, aliasing)


def blend_noise(self, best, weight: float, noise_scale: float, aliasing: bool = True) -> None:
    finite(weight, "weight")
    finite(noise_scale, "noise_scale")
    floating(self, "self")
    same(best, "best", self, "self")
    contiguous(self, "self")
    contiguous(best, "best")
    if aliasing:
        out_alias(self, best, "best")


def multi_blend_noise(targets, sources, weights, noise_scale: float, streams, one_group: bool = True,
                      aliasing: bool = True) -> None:
    if len(streams) != len(targets):
        raise ValueError(f"streams has {len(streams)} entries but targets has {len(targets)} (give one per target)")
    for k, w in enumerate(weights):
        finite(w, f"weights[{k}]")
    finite(noise_scale, "noise_scale")
    multi_blend(targets, sources, weights, one_group, aliasing, alphas_name="weights")
