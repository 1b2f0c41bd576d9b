"""The shape of `app/`, read with `ast`: no import cycle between its packages, no module
over 500 lines, no function over 60 lines. Exceptions are listed here with their reason."""
from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# path relative to app/ -> why it may be longer, for now
LONG_MODULES: dict[str, str] = {}
# "path:function" -> why
LONG_FUNCTIONS = {
    "celery_config.py:make_celery": "one flat table of Celery settings; splitting it would "
                                    "scatter the configuration (owner: celery + jobs)",
    "openapi.py:_jobs_paths": "hand-written document being generated from the models by "
                              "branch `options` (issue 11, point 4)",
    "openapi.py:_schemas": "as _jobs_paths (branch `options`)",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(APP.rglob("*.py")):
        parts = list(path.relative_to(APP.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _unit(module: str) -> str:
    """The package a module belongs to (app.jobs, app.supervisor...); a top-level module
    of `app` (app.settings, app.errors, app itself) is a unit of its own."""
    parts = module.split(".")
    if len(parts) >= 2 and (APP / parts[1]).is_dir():
        return ".".join(parts[:2])
    return ".".join(parts[:2]) if len(parts) >= 2 else "app"


def _imported(module: str, path: Path) -> set[str]:
    """Every app module `module` imports, anywhere in the file (function-local too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from app import errors` needs app.errors; `from app import create_app`
            # needs the package itself.
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in MODULES else base)
    return {name for name in names if name in MODULES}


def _unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        source = _unit(module)
        targets = {_unit(name) for name in _imported(module, path)} - {source}
        graph.setdefault(source, set()).update(targets)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, done = [], set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycles.append(trail[trail.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, trail + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return cycles


def test_no_import_cycle_between_packages():
    assert _cycles(_unit_graph()) == []


def test_the_cycle_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _unit("app.supervisor.control") == "app.supervisor"
    assert _unit("app.settings") == "app.settings"
    assert "app.supervisor.control" in _imported("app.supervisor.api",
                                                 MODULES["app.supervisor.api"])


def test_no_module_over_500_lines():
    long = {str(path.relative_to(APP)): len(path.read_text().splitlines())
            for path in MODULES.values()}
    over = {name: lines for name, lines in long.items()
            if lines > MAX_MODULE_LINES and name not in LONG_MODULES}
    assert over == {}
    assert set(LONG_MODULES) <= set(long), "an exception names a module that is gone"


def test_no_function_over_60_lines():
    over, seen = {}, set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                key = f"{path.relative_to(APP)}:{node.name}"
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    seen.add(key)
                    if key not in LONG_FUNCTIONS:
                        over[key] = lines
    assert over == {}
    assert seen == set(LONG_FUNCTIONS), "an exception is no longer needed: remove it"
