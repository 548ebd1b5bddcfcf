"""The import graph of ``include/`` and ``spark_tasks/`` has no cycle (read statically, with ast).

Every import counts, the lazy ones inside functions too: a lazy import only hides a cycle
until a call closes it. Imports under ``if TYPE_CHECKING:`` do not run, so they do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

from imgclf.settings import PROJECT_ROOT

ROOTS = {"imgclf": PROJECT_ROOT / "include" / "imgclf", "spark_tasks": PROJECT_ROOT / "spark_tasks"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the two packages."""
    found = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``module`` imports (at any depth of its code)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                out.add(submodule if submodule in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in out if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def test_no_import_cycle_in_include_or_spark_tasks():
    graph = import_graph()
    assert len(graph) > 20  # the walk found the packages
    assert cycles(graph) == [], "import cycles: " + "; ".join(
        " <-> ".join(c) for c in cycles(graph)
    )


def test_include_never_imports_spark_tasks():
    graph = import_graph()
    upward = {
        module: sorted(d for d in deps if d.startswith("spark_tasks"))
        for module, deps in graph.items()
        if module.startswith("imgclf")
    }
    assert {module: deps for module, deps in upward.items() if deps} == {}


def test_no_spark_submit_job_imports_another():
    """Jobs share code through modules of their own (featurizer, classification, ...)."""
    jobs = {f"spark_tasks.{n}" for n in ("train", "tune", "challenge", "evidence", "featurize",
                                         "evaluate", "predict")}  # fmt: skip
    graph = import_graph()
    assert jobs <= set(graph)
    assert {job: sorted(graph[job] & jobs) for job in jobs if graph[job] & jobs} == {}


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    """The check itself: two modules importing each other inside functions are a cycle."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("from pkg.a import f\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    modules = {"pkg.a", "pkg.b", "pkg.c"}
    graph = {m: imports_of(m, tmp_path / f"{m[-1]}.py", modules) for m in sorted(modules)}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
