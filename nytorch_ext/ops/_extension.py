"""Loads the compiled kernels, `nytorch_ext._C`, once.

Importing `_C` registers `torch.ops.nytorch_ext.*` with the dispatcher. When it
cannot be loaded (not built, built for another torch, built from older sources,
NYTORCH_EXT_DISABLE_C=1),
nytorch_ext runs the same operations on plain PyTorch ops and says so once.
"""
from __future__ import annotations

import os
import warnings

import torch  # the extension links against libtorch: load it first

from .registry import OPS

_C = None
LOAD_ERROR: str | None = None

if os.environ.get("NYTORCH_EXT_DISABLE_C", "").strip() not in ("", "0"):
    LOAD_ERROR = "disabled by NYTORCH_EXT_DISABLE_C"
else:
    try:
        from .. import _C  # type: ignore[attr-defined,no-redef]
    except ImportError as exc:  # pragma: no cover - depends on the install
        LOAD_ERROR = f"{type(exc).__name__}: {exc}"

# Every op of the registry that _C must define. An older build of _C (sources
# updated, extension not rebuilt) lacks some: use the fallback, and say so.
REQUIRED_OPS = tuple(op.name for op in OPS if op.required)


# Plain Python functions of `_C` (metadata helpers outside the dispatcher).
REQUIRED_FUNCTIONS = ("build_info", "views_in_place", "entries_are", "parameter_views",
                      "copy_module_tree", "tensor_groups")


def missing_ops(names=REQUIRED_OPS, functions=REQUIRED_FUNCTIONS) -> list:
    """The ops of ``names`` (and functions of ``functions``) that the loaded
    extension does not define."""
    return ([n for n in names if not hasattr(torch.ops.nytorch_ext, n)]
            + [n for n in functions if _C is None or not hasattr(_C, n)])


if _C is not None and missing_ops():
    LOAD_ERROR = (f"stale build: nytorch_ext._C lacks {', '.join(missing_ops())}; "
                  "it was built from older sources")
    _C = None

if _C is None:
    warnings.warn(
        "nytorch_ext: the compiled kernels (nytorch_ext._C) could not be loaded "
        f"({LOAD_ERROR}); using the pure-PyTorch fallback, which gives the same "
        "results more slowly (the noise ops' normals to rounding). Reinstall with `pip install --no-build-isolation .` "
        "to build them.",
        RuntimeWarning,
        stacklevel=2,
    )

BUILD_INFO: dict = _C.build_info() if _C is not None else {"cpu": None, "cuda": False}


def native(name: str, python_impl, *, op: bool = False):
    """The one place that chooses compiled vs Python: when the extension is
    loaded, the op ``torch.ops.nytorch_ext.<name>`` (``op=True``, its default
    overload) or the plain function ``_C.<name>`` (a metadata helper outside the
    dispatcher); else ``python_impl``, the same contract in plain PyTorch."""
    if _C is None:
        return python_impl
    return getattr(torch.ops.nytorch_ext, name).default if op else getattr(_C, name)
