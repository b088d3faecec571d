"""Write docs/api.md, the API reference, from the public names' docstrings.

    python tools/api_docs.py            # rewrite docs/api.md
    python tools/api_docs.py --check    # exit 1 when docs/api.md is out of date

The reference covers ``nytorch_ext`` (nytorch's particle API and the names it
re-exports), ``nytorch_ext.ops``, ``nytorch_ext.swarm`` and ``nytorch_ext.train``:
every name in each module's ``__all__``, in that order, with its signature and its
docstring; for a class, also the public methods and properties it defines itself
(inherited ``nn.Module`` methods are torch's and are not repeated). A name already
documented under an earlier module is listed there by reference, not twice.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "api.md")
MODULES = ["nytorch_ext.ops", "nytorch_ext", "nytorch_ext.swarm", "nytorch_ext.train", "nytorch_ext.distributed"]

HEADER = """\
# API reference

Generated from the docstrings by `python tools/api_docs.py` (do not edit by hand; CI
runs `python tools/api_docs.py --check`). The guided tours are in the
[README](../README.md); the rules behind the ops are in [ops.md](ops.md), the particle
semantics in [nytorch-compatibility.md](nytorch-compatibility.md), the swarm and the
trainer in [swarm-and-training.md](swarm-and-training.md).

Modules: {toc}.
"""


class _Written:
    """An annotation shown as written: the modules use ``from __future__ import
    annotations``, so annotations are strings, which inspect would show quoted."""

    def __init__(self, text: str):
        self.text = text.strip("'\"")

    def __repr__(self) -> str:
        return self.text


def signature(obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins and C types have none
        return "(...)"
    def written(annotation):
        return _Written(annotation) if isinstance(annotation, str) else annotation
    params = [p.replace(annotation=written(p.annotation)) for p in sig.parameters.values()]
    text = str(sig.replace(parameters=params, return_annotation=written(sig.return_annotation)))
    return text.replace("(self, ", "(").replace("(self)", "()").replace("(cls, ", "(")


def docstring(obj) -> str:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else "*(no docstring)*"


def own_members(cls) -> list[tuple[str, object]]:
    """Public methods, properties and class/static methods defined on ``cls`` itself."""
    members = []
    for name, raw in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(raw, (staticmethod, classmethod)):
            members.append((name, raw.__func__))
        elif isinstance(raw, property) or inspect.isfunction(raw):
            members.append((name, raw))
    return members


def member_section(owner: str, name: str, member) -> list[str]:
    if isinstance(member, property):
        lines = [f"#### `{owner}.{name}` (property)", ""]
    elif name == "__init__":
        lines = [f"#### `{owner}{signature(member)}`", ""]
    else:
        lines = [f"#### `{owner}.{name}{signature(member)}`", ""]
    return lines + [docstring(member), ""]


def undocumented_line(owner: str, members: list[tuple[str, object]]) -> list[str]:
    """Members without a docstring (mostly nytorch's own API, whose behaviour
    nytorch-compatibility.md describes, and overridden hooks), in one line."""
    if not members:
        return []
    names = [f"`{name}`" if isinstance(member, property) else f"`{name}{signature(member)}`"
             for name, member in members if name != "__init__"]
    return [f"Also on `{owner}`: " + ", ".join(names) + ".", ""] if names else []


def entry(module_name: str, name: str, obj) -> list[str]:
    qualified = f"{module_name}.{name}"
    if inspect.ismodule(obj):
        return [f"### `{qualified}` (module)", "", docstring(obj).split("\n\n")[0], ""]
    if inspect.isclass(obj):
        bases = [b.__name__ for b in obj.__bases__ if b is not object]
        lines = [f"### class `{qualified}{signature(obj)}`", ""]
        if bases:
            lines += [f"Bases: {', '.join(f'`{b}`' for b in bases)}", ""]
        lines += [docstring(obj), ""]
        members = own_members(obj)
        for member_name, member in members:
            if inspect.getdoc(member) and (member_name != "__init__" or member.__doc__):
                lines += member_section(name, member_name, member)
        lines += undocumented_line(name, [(n, m) for n, m in members if not inspect.getdoc(m)])
        return lines
    if callable(obj):
        return [f"### `{qualified}{signature(obj)}`", "", docstring(obj), ""]
    return [f"### `{qualified}` = `{obj!r}`", ""]


def render() -> str:
    sys.path.insert(0, ROOT)
    anchors = [m.replace(".", "") for m in MODULES]
    toc = ", ".join(f"[`{m}`](#{a})" for m, a in zip(MODULES, anchors))
    lines = [HEADER.format(toc=toc)]
    documented: dict[int, str] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        # Module docstrings hold reST tables and lists: shown verbatim.
        lines += [f"## {module_name}", "", "```text", docstring(module), "```", ""]
        for name in module.__all__:
            obj = getattr(module, name)
            where = documented.get(id(obj))
            if where is not None and not inspect.ismodule(obj):
                lines += [f"- `{module_name}.{name}`: see `{where}`.", ""]
                continue
            lines += entry(module_name, name, obj)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                documented[id(obj)] = f"{module_name}.{name}"
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md differs from the docstrings")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = open(OUTPUT).read() if os.path.exists(OUTPUT) else ""
        if current != text:
            print("docs/api.md is out of date: run python tools/api_docs.py", file=sys.stderr)
            return 1
        return 0
    with open(OUTPUT, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUTPUT, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
