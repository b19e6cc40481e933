"""The package's layers, checked on the source (every import, also those inside functions and
under ``TYPE_CHECKING``), so that a change that breaks them fails here, not in review:

- only ``gui/`` imports Qt (PySide6, pyqtgraph) or ``dermaseg_app.gui`` (the one exception: the
  ``dermaseg`` command starts the window);
- ``core/`` imports neither torch nor Qt; the application layer (``app/``) imports no Qt;
- the main window is the GUI's one composition root: no other module of ``gui/`` imports it
  (``gui/app.py`` builds it);
- the modules of ``gui/`` import each other without a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dermaseg_app"
QT = ("PySide6", "pyqtgraph", "shiboken6")
MAIN_WINDOW = "dermaseg_app.gui.main_window"
ENTRY_POINTS = {("dermaseg_app.cli", "dermaseg_app.gui.app")}  # `dermaseg` with no subcommand: the window
BUILDS_THE_WINDOW = {"dermaseg_app.gui.app"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Every module ``name`` imports (``from a.b import c`` counts ``a.b.c`` when that is a module)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    out.add(f"{base}.{alias.name}")
    return out


IMPORTS = {name: _imports(name) for name in MODULES}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _offending(names: list[str], forbidden: tuple[str, ...]) -> list[tuple[str, str]]:
    return sorted((name, imp) for name in names for imp in IMPORTS[name]
                  if any(_in(imp, f) for f in forbidden))


def test_the_walk_sees_the_packages() -> None:
    """(Guards the test itself: it found the modules and their imports.)"""
    for package in ("core", "ml", "app", "gui", "commands"):
        assert any(_in(m, f"dermaseg_app.{package}") for m in MODULES), package
    assert "dermaseg_app.gui.editing" in IMPORTS[MAIN_WINDOW]
    assert any(_in(imp, "PySide6") for imp in IMPORTS[MAIN_WINDOW])


def test_only_the_gui_imports_qt_or_the_gui() -> None:
    outside = [m for m in MODULES if not _in(m, "dermaseg_app.gui")]
    bad = [(m, imp) for m, imp in _offending(outside, QT + ("dermaseg_app.gui",))
           if (m, imp) not in ENTRY_POINTS]
    assert bad == []


def test_the_entry_point_imports_the_gui_only_when_it_starts() -> None:
    """``dermaseg predict`` never loads Qt: the window's import sits inside a function."""
    for module, target in ENTRY_POINTS:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
        top |= {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        assert target not in top


@pytest.mark.parametrize("package, forbidden", [
    ("dermaseg_app.core", QT + ("torch", "torchvision", "dermaseg_app.ml", "dermaseg_app.app")),
    ("dermaseg_app.app", QT),
    ("dermaseg_app.ml", QT + ("dermaseg_app.app",)),
])
def test_lower_layers_do_not_import_upper_ones(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offending([m for m in MODULES if _in(m, package)], forbidden) == []


def test_the_main_window_is_the_only_composition_root() -> None:
    gui = [m for m in MODULES if _in(m, "dermaseg_app.gui") and m not in BUILDS_THE_WINDOW | {MAIN_WINDOW}]
    assert _offending(gui, (MAIN_WINDOW,)) == []


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> modules it imports), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_the_gui_modules_import_each_other_without_a_cycle() -> None:
    gui = {m for m in MODULES if _in(m, "dermaseg_app.gui")}
    graph = {m: {imp for imp in IMPORTS[m] if imp in gui and imp != m} for m in gui}
    # a package's __init__ is imported with any of its modules: not an edge of the cycle
    graph = {m: {i for i in deps if MODULES[i].name != "__init__.py"} for m, deps in graph.items()}
    assert _cycle(graph) == []


def test_the_whole_package_imports_without_a_cycle() -> None:
    graph = {m: {imp for imp in IMPORTS[m] if imp in MODULES and imp != m
                 and MODULES[imp].name != "__init__.py"} for m in MODULES}
    assert _cycle(graph) == []
