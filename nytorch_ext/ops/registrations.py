"""Applies the registry (registry.py) to the compiled ops: fake implementations
(so they trace under torch.compile and FakeTensor), autograd formulas for the
allocating forms, and a CUDA implementation of every mutating op when the
extension was built without CUDA kernels. Imported once, by nytorch_ext.ops,
when nytorch_ext._C is loaded.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import torch

from ._extension import BUILD_INFO
from .registry import OPS

_NS = "nytorch_ext::"


def _warn_once(fn: Callable[..., Any]) -> Callable[..., Any]:
    warned = False

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        nonlocal warned
        if not warned:
            warned = True
            warnings.warn(
                "nytorch_ext was built without CUDA kernels; CUDA tensors run on the "
                "pure-PyTorch fallback. Rebuild on a machine with nvcc and a CUDA build "
                "of PyTorch (or NYTORCH_EXT_CUDA=1) for the fused kernels.",
                RuntimeWarning,
                stacklevel=3,
            )
        return fn(*args, **kwargs)

    return wrapper


for _op in OPS:
    if _op.fake is not None:
        torch.library.register_fake(_NS + _op.name)(_op.fake)
    if _op.backward is not None:
        torch.library.register_autograd(_NS + _op.name, _op.backward, setup_context=_op.setup_context)
    # The compiled Autograd kernel has already applied the grad rule: the plain fallback.
    if _op.mutates and _op.fallback is not None and not BUILD_INFO.get("cuda"):
        torch.library.impl(_NS + _op.name, "CUDA")(_warn_once(_op.fallback))
