"""The package's import graph: no cycles, no upward imports, no private names.

Every module of ``nytorch_ext/`` is parsed with ``ast`` (nothing is imported), and
every import statement in it counts: module level, inside functions and methods,
under ``try`` or ``if``, and under ``if TYPE_CHECKING:`` too. A type-only import is
still a dependency (the two modules must be read, and change, together), so it is
not an exception: a lower module that needs to name a higher one's type declares
the interface it uses as a ``typing.Protocol`` instead (as ``particles/product.py``
does for the particle kernel).

The layers, bottom up: ``ops`` < ``particles`` < ``swarm`` < ``train`` < the
top-level modules (``__init__`` and nytorch's import paths ``module``, ``mtype``,
``particle_module``), which only re-export. A module may import its own layer and
the layers below. Python's implicit import of a module's parent packages is not an
edge: only what the statements name.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "nytorch_ext"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

LAYERS = {"ops": 0, "particles": 1, "swarm": 2, "train": 3}
TOP = max(LAYERS.values()) + 1
TOP_LEVEL_MODULES = {PACKAGE, f"{PACKAGE}.module", f"{PACKAGE}.mtype", f"{PACKAGE}.particle_module",
                     f"{PACKAGE}.distributed"}
COMPILED = {f"{PACKAGE}._C"}  # the extension: a module without Python source


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement of ``importer`` reads from."""
    if node.level == 0:
        return node.module or ""
    package = importer if _is_package(importer) else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(name: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import statement of
    module ``name`` that reaches into the package."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES or submodule in COMPILED:
                    found.append((submodule, "", node.lineno))  # `from pkg import module`
                else:
                    found.append((source, alias.name, node.lineno))
    return [(module, what, line) for module, what, line in found
            if module == PACKAGE or module.startswith(PACKAGE + ".")]


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int:
    if name in TOP_LEVEL_MODULES:
        return TOP
    parts = name.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        raise AssertionError(f"{name} belongs to no layer: put it in a subpackage or add it to LAYERS / "
                             f"TOP_LEVEL_MODULES in {Path(__file__).name}")
    return LAYERS[parts[1]]


def _known(module: str) -> str:
    """The module of the package that an import names (a name imported from a
    package's ``__init__`` is an edge to that ``__init__``)."""
    if module in MODULES or module in COMPILED:
        return module
    raise AssertionError(f"an import names {module}, which is not a module of {PACKAGE}")


def test_every_module_parses_and_every_import_resolves():
    assert len(MODULES) > 20
    for name, edges in GRAPH.items():
        for module, _, line in edges:
            assert _known(module), f"{name}:{line}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_from_a_higher_layer(name):
    mine = _layer(name)
    upward = [f"{MODULES[name].relative_to(ROOT.parent)}:{line} imports {module}"
              for module, _, line in GRAPH[name] if module not in COMPILED and _layer(module) > mine]
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(upward)


def _cycles() -> list[list[str]]:
    """Every import cycle, each once (the strongly connected components with more
    than one module, or a module that imports itself), by Tarjan's algorithm."""
    edges = {name: sorted({m for m, _, _ in GRAPH[name] if m in MODULES}) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                components.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return components


def test_no_import_cycles():
    cycles = _cycles()
    detail = []
    for component in cycles:
        inside = set(component)
        detail.append(" <-> ".join(component) + ":\n" + "\n".join(
            f"    {name}:{line} imports {module}" for name in component
            for module, _, line in GRAPH[name] if module in inside))
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_no_module_imports_another_modules_private_names():
    """``from M import _name`` reaches into M's internals: M should offer what is
    needed under a public name. A private *module* (``ops._extension``) may be
    imported for its public names, and ``_C``, the compiled extension module (or
    None where it is not loaded, as ``ops._extension._C``), keeps PyTorch's name
    for it."""
    private = [f"{MODULES[name].relative_to(ROOT.parent)}:{line} imports {what} from {module}"
               for name, edges in GRAPH.items() for module, what, line in edges
               if what.startswith("_") and not what.startswith("__") and what != "_C" and module != name]
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_the_checks_see_cycles_upward_and_private_imports(monkeypatch):
    """The checks themselves: a made-up graph with a cycle, an upward import and a
    private name is caught."""
    fake = {name: list(edges) for name, edges in GRAPH.items()}
    ops, product = f"{PACKAGE}.ops", f"{PACKAGE}.particles.product"
    fake[ops] = fake[ops] + [(product, "_private", 1)]
    fake[product] = fake[product] + [(ops, "", 1)]
    monkeypatch.setitem(globals(), "GRAPH", fake)
    assert any(ops in c and product in c for c in _cycles())
    with pytest.raises(AssertionError, match="lower layer imports a higher one"):
        test_no_import_from_a_higher_layer(ops)
    with pytest.raises(AssertionError, match="private names"):
        test_no_module_imports_another_modules_private_names()
