"""The import rule, checked (docs/jobs.md, "One shape for every job family", says it in words):

1. Tasks import services; services never import tasks. A service names the job it starts by
   its spec in the app's `jobs.py` (workers/job_registry.py), so there is no services ↔ tasks
   circle in any app.
2. `workers/` is the job platform: it imports no domain app (courses, media_pipeline,
   infra_tasks). Domain apps plug into it through registries (jobs, periodic jobs, subjects,
   retry rules, lost-job handlers) from their own `apps.py` and `jobs.py`.
3. No import cycle between the project's modules at module level (an import inside a
   function, or under `if TYPE_CHECKING`, does not count).

The check reads the source (ast), so it sees imports inside functions too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workers", "courses", "media_pipeline", "infra_tasks", "project")
DOMAIN = ("courses", "media_pipeline", "infra_tasks")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, *, top_level_only: bool) -> Iterator[str]:
    """Project modules `module` imports (`from a import b` counts `a.b` when it is a module)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, nested: bool) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if inner and top_level_only:
                continue
            if isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(
                        [*package.split(".")[: len(package.split(".")) - child.level + 1], base]
                    ).strip(".")
                yield base
                yield from (f"{base}.{alias.name}" for alias in child.names)
            yield from visit(child, inner)

    for name in visit(tree, False):
        if name in MODULES and name != module:
            yield name


def _is_services(module: str) -> bool:
    return module.endswith(".services") or ".services." in module


def _is_tasks(module: str) -> bool:
    return module.endswith(".tasks") or ".tasks." in module


def test_services_never_import_tasks() -> None:
    offences = [
        f"{module} imports {imported}"
        for module in MODULES
        if _is_services(module)
        for imported in _imports(module, top_level_only=False)
        if _is_tasks(imported)
    ]
    assert offences == []


def test_the_job_platform_imports_no_domain_app() -> None:
    offences = [
        f"{module} imports {imported}"
        for module in MODULES
        if module.split(".")[0] == "workers"
        for imported in _imports(module, top_level_only=False)
        if imported.split(".")[0] in DOMAIN
    ]
    assert offences == []


def test_no_module_level_import_cycle() -> None:
    graph = {module: set(_imports(module, top_level_only=True)) for module in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                walk(imported)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    # A package's __init__ importing its own submodules (a re-export) is not a cycle.
    real = [cycle for cycle in cycles if not any(b.startswith(a + ".") for a, b in pairwise(cycle))]
    assert [" -> ".join(cycle) for cycle in real] == []
