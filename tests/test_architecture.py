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


#: method calls that change a list, dict or set in place
_MUTATING = {"append", "extend", "insert", "remove", "pop", "popitem", "clear", "update", "setdefault", "add",
             "discard", "difference_update", "intersection_update", "symmetric_difference_update", "sort", "reverse"}
_CONTAINERS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_CONTAINER_CALLS = {"list", "dict", "set", "defaultdict", "collections.defaultdict", "OrderedDict",
                    "collections.OrderedDict", "Counter", "collections.Counter"}


def _module_containers(tree: ast.Module) -> set[str]:
    """Names bound at module level to a list, dict or set (a literal, a comprehension or a call)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and (
                isinstance(node.value, _CONTAINERS)
                or isinstance(node.value, ast.Call) and ast.unparse(node.value.func) in _CONTAINER_CALLS):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _container_mutations(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) where a function changes a module-level list, dict or set in place (an item or
    slice assigned or deleted, an augmented assignment, a mutating method called): state shared by
    every caller in the process, which a forked worker inherits and threads race on. A local name
    that hides the module's is not counted."""
    shared = _module_containers(tree)
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        args = fn.args
        local = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, (args.vararg,
                                                                                                 args.kwarg))]}
        if not isinstance(fn, ast.Lambda):
            local |= {t.id for n in ast.walk(fn) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.For))
                      for t in ast.walk(n.target if not isinstance(n, ast.Assign) else ast.Tuple(n.targets))
                      if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        names = shared - local
        for node in ast.walk(fn):
            target = None
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
                for t in (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]):
                    base = t.value if isinstance(t, ast.Subscript) else t if isinstance(node, ast.AugAssign) else None
                    if isinstance(base, ast.Name) and base.id in names:
                        target = base.id
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in _MUTATING and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id in names:
                target = node.func.value.id
            if target:
                found.append((node.lineno, ast.unparse(node).splitlines()[0][:70]))
    return found


def test_no_module_level_container_is_changed_at_run_time():
    """The house rule, for the containers: a module-level list, dict or set is a read-only table;
    none is filled, emptied or changed by a function (a cache or a registry there is state shared
    by every caller, forked workers included: caches are ``functools.lru_cache`` with a bound)."""
    found = [f"{name}:{line} {what}" for name, path in _modules().items()
             for line, what in _container_mutations(ast.parse(path.read_text()))]
    assert found == [], "\n".join(found)


def test_the_container_check_sees_a_planted_cache():
    planted = ast.parse("_SEEN = {}\nTABLE = {'a': 1}\n\ndef f(k):\n    _SEEN[k] = 1\n    return TABLE[k]\n\n"
                        "def g(x):\n    _SEEN.setdefault(x, []).append(x)\n\n"
                        "def h(_SEEN):\n    _SEEN[0] = 1\n")
    assert [line for line, _ in _container_mutations(planted)] == [5, 9]


#: caches without a bound: each is keyed by an icosphere level (0-7, checked before the cache is
#: filled) and at most a dtype, so eight entries at most; anything else gives a ``maxsize``
_UNBOUNDED_CACHE_KEYS = {"level", "dtype"}
#: one exception: the interpreter's path (one per process)
_UNBOUNDED_CACHE_ELSE = {"geomorph_bids.engine.device._cuda_problem_in_a_child"}


def test_caches_without_a_bound_are_keyed_by_a_level():
    found = []
    for name, path in _modules().items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for deco in fn.decorator_list:
                text = ast.unparse(deco)
                unbounded = text in ("cache", "functools.cache") or (
                    "maxsize=None" in text.replace(" ", "") and ("lru_cache" in text or "cached_tables" in text))
                if not unbounded or f"{name}.{fn.name}" in _UNBOUNDED_CACHE_ELSE:
                    continue
                keys = {a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]}
                if not keys or not keys <= _UNBOUNDED_CACHE_KEYS:
                    found.append(f"{name}.{fn.name}({', '.join(sorted(keys))}): {text}")
    assert found == [], "\n".join(found)


#: where the environment's template folders are read: the template search of the entry points
#: (``TemplateSearch.from_environment``), the participant level's settings and the output-density
#: sphere's default for Python callers (``load_density_sphere(templateflow_home=None)``)
_TEMPLATE_ENVIRONMENT = ("TEMPLATEFLOW_HOME", "SUBJECTS_DIR", "FREESURFER_HOME")
_TEMPLATE_ENVIRONMENT_READERS = {"geomorph_bids.io.template_sources", "geomorph_bids.io.templates",
                                 "geomorph_bids.cli.settings"}


def test_the_template_folders_of_the_environment_are_read_in_one_place():
    """Settings are decided once: a module below the entry points that read ``$SUBJECTS_DIR`` itself
    (the real pairs' fsaverage did, beside the template search's own list) could find another folder
    than the run recorded."""
    found = []
    for name, path in _modules().items():
        if name in _TEMPLATE_ENVIRONMENT_READERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in _TEMPLATE_ENVIRONMENT:  # os.environ["..."], .get("...")
                found.append(f"{name}:{node.lineno} {node.value}")
    assert found == [], "\n".join(found)


#: the start of a path that names a folder of some machine, not of the operating system
#: (``/proc``, ``/sys/fs/cgroup`` are the kernel's and allowed)
_MACHINE_FOLDERS = ("/tmp", "/var/tmp", "/work", "/home/", "/Users/", "/scratch", "/mnt/", "/data/", "/root", "~/")


def _hard_coded_folders(tree: ast.Module) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(_MACHINE_FOLDERS)]


def test_no_hard_coded_folders():
    """The house rule: no path of a particular machine in the code (a scratch folder, a home
    folder, the developers' ``/work``): folders come from the caller, the environment read at an
    entry point, or ``tempfile``; examples in messages stand inside the text, not as a path."""
    found = [f"{name}:{line} {value[:60]!r}" for name, path in _modules().items()
             for line, value in _hard_coded_folders(ast.parse(path.read_text()))]
    assert found == [], "\n".join(found)
    planted = ast.parse("import os\nCACHE = '/tmp/geomorph'\nwork = os.path.join('/work/shared', 'x')\n"
                        "MOUNTS = '/proc/self/mounts'\nhelp = 'e.g. -w /tmp/w'\n")
    assert [line for line, _ in _hard_coded_folders(planted)] == [2, 3]


#: modules that fetch from the network: the package never downloads (templates come from the
#: folders a user points at, the bundled maps or installed packages' files: docs/templates.md)
_NETWORK = ("urllib.request", "urllib3", "requests", "http.client", "httpx", "ftplib", "pooch", "templateflow",
            "datalad", "huggingface_hub", "torch.hub", "nilearn.datasets")


def _network_imports(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                 if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [(node.lineno, n) for n in names if any(n == m or n.startswith(m + ".") for m in _NETWORK)]
    found += [(node.lineno, ast.unparse(node)) for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and ast.unparse(node).startswith("torch.hub.")]
    return found


def test_no_hidden_downloads():
    """No module imports a network client (or TemplateFlow's API, whose ``get`` downloads): a run on
    a compute node without network must behave as one with it."""
    found = [f"{name}:{line} {what}" for name, path in _modules().items()
             for line, what in _network_imports(ast.parse(path.read_text()))]
    assert found == [], "\n".join(found)
    planted = ast.parse("import socket\nfrom urllib.parse import quote\nimport urllib.request\n"
                        "from templateflow import api\ndef f(torch):\n    return torch.hub.load('x', 'y')\n")
    assert sorted({line for line, _ in _network_imports(planted)}) == [3, 4, 6]


def test_messages_name_repository_files_as_the_source_repositorys():
    """A message or help text pointing at ``docs/models.md`` or ``scripts/install.sh`` sent an installed user
    (``pip install geomorph-bids``: the wheel holds neither folder) to a file they do not have. Every such
    mention in a string that is not a docstring says where it is: ``the source repository's docs/models.md``."""
    import re

    mention = re.compile(r"(docs|scripts)/[\w.-]+\.(md|sh|py)\b")
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        strings = {}  # an implicitly joined literal's parts are one constant: its text, at its first line
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                strings[(node.lineno, node.col_offset)] = node.value
            elif isinstance(node, ast.JoinedStr):
                strings[(node.lineno, node.col_offset)] = "".join(
                    v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        for (line, _), text in strings.items():
            for m in mention.finditer(text):
                if not text[:m.start()].endswith("the source repository's "):
                    bare.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {m.group()}")
    assert bare == []
