"""The layering of docs/architecture.md, checked on the source: no import cycle, no upward
import (function-level imports included), and no Nipype below the interfaces."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import geomorph_bids

PACKAGE = Path(geomorph_bids.__file__).parent
#: layer of each sub-package / top-level module: a module may import from its own sub-package or
#: from a lower layer only (the root package holds ``__version__`` and a lazy facade over
#: ``engine.register``: it is outside the layering)
RANK = {"errors": 0, "resources": 0, "derivatives": 0, "crashfiles": 0, "quality": 0, "sphere": 1, "io": 2,
        "model": 3, "engine": 4, "results": 5, "interfaces": 6, "reports": 6, "workflows": 7, "batch": 8, "cli": 9}
NO_NIPYPE = ("errors", "resources", "derivatives", "crashfiles", "quality", "sphere", "io", "model", "engine",
             "results", "reports", "batch")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(geomorph_bids modules imported anywhere in the file, other top-level packages)."""
    ours, others = set(), set()
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            if target.split(".")[0] != "geomorph_bids":
                others.add(target.split(".")[0])
                continue
            for alias in node.names:
                ours.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.startswith("geomorph_bids") else others).add(alias.name.split(".")[0]
                                                                             if not alias.name.startswith(
                                                                                 "geomorph_bids") else alias.name)
    return {m for m in ours if m in modules and m != name}, others


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_upward_imports_and_no_nipype_below_the_interfaces():
    modules = _modules()
    problems = []
    for name, path in modules.items():
        layer = _layer(name)
        ours, others = _imports(name, path, modules)
        if layer is None:
            continue
        for target in ours:
            t = _layer(target)
            if t is None or t == layer:
                continue
            if RANK[t] >= RANK[layer]:
                problems.append(f"{name} imports {target} ({layer} -> {t})")
        if layer in NO_NIPYPE and {"nipype", "niworkflows"} & others:
            problems.append(f"{name} imports Nipype")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    modules = _modules()
    edges = {n: {t for t in _imports(n, p, modules)[0] if _layer(t) is not None} for n, p in modules.items()
             if _layer(n) is not None}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, trail + [node]):
                return True
        state[node] = 2
        return False

    for n in sorted(edges):
        if state.get(n) is None and visit(n, []):
            break
    assert not cycle, " -> ".join(cycle)


#: calls that make state shared by every caller in the process when made at module level
_STATEFUL_CALLS = ("threading.Lock", "threading.RLock", "threading.local", "threading.Event", "queue.Queue",
                   "queue.SimpleQueue", "collections.deque", "Lock", "RLock", "local")


def test_no_module_level_mutable_state():
    """The house rule: no ``global`` statement, and no lock, thread-local or queue made at module
    level (the reader threads of io.limits kept a pool of idle threads that way, which forked
    children had to be made to forget). Read-only lookup tables are not state. A setting that is
    the process's own (torch's, BLAS's, the warning filters) is shared between a caller's threads
    through ``io.process_wide``, whose instances forget their parent's blocks in a forked child."""
    found = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        found += [f"{name}:{node.lineno} global {', '.join(node.names)}"
                  for node in ast.walk(tree) if isinstance(node, ast.Global)]
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Call) and ast.unparse(value.func) in _STATEFUL_CALLS:
                found.append(f"{name}:{node.lineno} {ast.unparse(node)[:60]}")
    assert found == []


def _public_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of the module's public functions and of its public classes' public
    methods (``__init__`` included: its parameters are the class's)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                        not item.name.startswith("_") or item.name == "__init__"):
                    yield f"{node.name}.{item.name}", item


def test_public_functions_have_type_hints():
    """The house rule: every public function and method says the types of its parameters and what
    it returns (``__init__``: its parameters), so that a reader of the engine's API (and a type
    checker) need not read the body."""
    missing = []
    for name, path in _modules().items():
        for qualname, fn in _public_functions(ast.parse(path.read_text())):
            a = fn.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
            bare = [p.arg for p in params if p.annotation is None and p.arg not in ("self", "cls")]
            if fn.returns is None and fn.name != "__init__":
                bare.append("return")
            if bare:
                missing.append(f"{name}.{qualname} ({path.name}:{fn.lineno}): {', '.join(bare)}")
    assert missing == [], "\n".join(missing)
