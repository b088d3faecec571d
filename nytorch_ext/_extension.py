"""Loads the compiled kernels, `nytorch_ext._C`, once.

Importing `_C` registers `torch.ops.nytorch_ext.*` with the dispatcher. When it
cannot be loaded (not built, built for another torch, NYTORCH_EXT_DISABLE_C=1),
nytorch_ext runs the same operations on plain PyTorch ops and says so once.
"""
from __future__ import annotations

import os
import warnings

import torch  # noqa: F401  (the extension links against libtorch: load it first)

_C = None
LOAD_ERROR: str | None = None

if os.environ.get("NYTORCH_EXT_DISABLE_C", "").strip() not in ("", "0"):
    LOAD_ERROR = "disabled by NYTORCH_EXT_DISABLE_C"
else:
    try:
        from . import _C  # type: ignore[attr-defined,no-redef]
    except ImportError as exc:  # pragma: no cover - depends on the install
        LOAD_ERROR = f"{type(exc).__name__}: {exc}"

if _C is None:
    warnings.warn(
        "nytorch_ext: the compiled kernels (nytorch_ext._C) could not be loaded "
        f"({LOAD_ERROR}); using the pure-PyTorch fallback, which gives the same "
        "results more slowly. Reinstall with `pip install --no-build-isolation .` "
        "to build them.",
        RuntimeWarning,
        stacklevel=2,
    )

BUILD_INFO: dict = _C.build_info() if _C is not None else {"cpu": None, "cuda": False}
