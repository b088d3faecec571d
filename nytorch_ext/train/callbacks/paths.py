"""Checking, before a run, that a callback's output file can be written."""
from __future__ import annotations

import os


def file_path(path, name: str) -> str:
    """``path`` (a str or os.PathLike) as a non-empty str; errors name the argument ``name``."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}") from None
    if not path:
        raise ValueError(f"{name} must not be empty")
    return path


def check_writable(path: str, what: str) -> None:
    """Raise unless a file can be written at ``path`` (its directory existing or
    creatable), without creating anything; errors start with ``what`` (e.g. "Checkpoint path")."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory, not a file name")
    directory = os.path.dirname(os.path.abspath(path))
    existing = directory
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path!r}: {existing!r} is a file, so no directory can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path!r}: the directory {existing!r} is not writable")
