"""An op's name appears in few files: at most eight in nytorch_ext/ and csrc/
together, callers and headers included (its schema, kernels and registrations on
the C++ side; its public function, registry entry and fallback in
nytorch_ext/ops/; its callers). Adding or renaming an op then touches a known,
short list of places (docs/adding-an-op.md).

An op is counted by its stem (``axpby_out`` -> ``axpby``, ``multi_blend_`` ->
``multi_blend``) wherever it occurs as a substring, in identifiers, strings and
comments alike (``validate_multi_blend`` counts). A stem that is one word and
also a word of another op's stem (``axpby`` in ``multi_axpby``, ``blend`` in
``multi_blend``), or a private name (``_views``), counts only as a whole
identifier, optionally followed by ``_`` or ``_out``.

Outside the ops layer (``nytorch_ext/ops/`` and ``csrc/``) only the op's callers
count: ``ops.<op>``, ``torch.ops.nytorch_ext.<op>``. The higher layers' own API
shares some words with the ops (nytorch's ``particle.blend_``, the particle-level
``lincomb``), and those methods are not places an op's change must reach.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nytorch_ext.ops import registry

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "nytorch_ext").rglob("*.py")),
           *sorted(p for p in (ROOT / "csrc").rglob("*") if p.suffix in (".cpp", ".h", ".cu", ".cuh"))]
MAX_FILES = 8
MAX_FILES_IN_OPS = 3  # the public function, the registry entry, the fallback


def stem(name: str) -> str:
    for suffix in ("_out", "_"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


STEMS = sorted({stem(op.name) for op in registry.OPS})


def pattern(s: str) -> re.Pattern:
    word = s.lstrip("_")
    inside_another = any(word in other.split("_") for other in STEMS if other != s)
    if "_" not in word and (s.startswith("_") or inside_another):
        return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(s)}(?:_out|_)?(?![A-Za-z0-9_])")
    return re.compile(re.escape(s))


_TEXTS = {path: path.read_text(encoding="utf-8", errors="replace") for path in SOURCES}


OPS_LAYER = (ROOT / "nytorch_ext" / "ops", ROOT / "csrc")


def caller_pattern(s: str) -> re.Pattern:
    """A call of the op from a higher layer: through ``nytorch_ext.ops`` (``ops.x``,
    ``ops._impl.x``) or the dispatcher (``torch.ops.nytorch_ext.x``)."""
    return re.compile(rf"(?:\bops\.(?:_impl\.)?|\bnytorch_ext\.){re.escape(s)}(?:_out|_)?(?![A-Za-z0-9_])")


def files_naming(s: str, under: Path = ROOT) -> list[str]:
    inside, outside = pattern(s), caller_pattern(s)
    return [str(path.relative_to(ROOT)) for path, text in _TEXTS.items()
            if path.is_relative_to(under)
            and (inside if any(path.is_relative_to(layer) for layer in OPS_LAYER) else outside).search(text)]


def test_the_sources_are_found():
    assert any(p.name == "ops.cpp" for p in SOURCES) and any(p.name == "registry.py" for p in SOURCES)


def test_the_patterns():
    assert pattern("axpby").search("cpu::axpby(out)") and not pattern("axpby").search("validate_axpby_out")
    assert pattern("blend").search("ops.blend_(x)") and not pattern("blend").search("blend_lists")
    assert pattern("multi_blend").search("validate_multi_blend_noise")
    assert pattern("_views").search("nytorch_ext._views.default") and not pattern("_views").search("parameter_views")
    assert caller_pattern("blend").search("ops.blend_(x, y, a)") and caller_pattern("blend").search("ops._impl.blend(")
    assert caller_pattern("blend").search("torch.ops.nytorch_ext.blend_out.default")
    assert not caller_pattern("blend").search("product.blend_(other, a)") and not caller_pattern("blend").search(
        "ops.blend_noise_(x)")


@pytest.mark.parametrize("name", [op.name for op in registry.OPS])
def test_an_op_name_is_in_at_most_eight_files(name):
    files = files_naming(stem(name))
    assert len(files) <= MAX_FILES, f"{stem(name)!r} appears in {len(files)} files: {files}"


@pytest.mark.parametrize("name", [op.name for op in registry.OPS])
def test_the_ops_package_names_an_op_in_at_most_three_files(name):
    files = files_naming(stem(name), ROOT / "nytorch_ext" / "ops")
    assert len(files) <= MAX_FILES_IN_OPS, f"{stem(name)!r} appears in {len(files)} files: {files}"
