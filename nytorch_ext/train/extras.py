"""Optional extras (matplotlib, tensorboard): imported when used, with an ImportError
that names the ``pip install nytorch_ext[extra]`` to run when they are missing."""
from __future__ import annotations

import importlib


def require(module: str, name: str, feature: str, extra: str, package: str):
    """``module.name``, or an ImportError: ``feature`` needs ``package`` (the ``extra``)."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise ImportError(f"{feature} needs {package}, which is not installed: pip install nytorch_ext[{extra}] "
                          f"(or pip install {package})") from e
