"""The architecture picture: no import cycles, registries import no providers, core never imports the CLI,
and the cheap entry points (--help, zoo list) never import torch.

Imports are read from the source with `ast` (every import, also those inside functions), so a cycle hidden
behind a lazy import is still a cycle here. Only `if TYPE_CHECKING:` blocks are left out: they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "realspike_cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never executed)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    return (n for n in ast.walk(tree) if id(n) not in skip)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                # `from pkg import mod` depends on the submodule when it is one, else on the module itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_cycle_finder_catches_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_left_out_and_others_are_not():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\ndef f():\n    import b\n")
    names = {alias.name for n in runtime_nodes(tree) if isinstance(n, ast.Import) for alias in n.names}
    assert names == {"b"}


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("registry", ["realspike_cli.core.registry", "realspike_cli.core.datasets.registry"])
def test_registries_import_no_providers(registry):
    graph = import_graph()
    if registry not in graph:
        pytest.fail(f"{registry} is missing")
    providers = {m for m in graph if m.startswith(("realspike_cli.core.archs", "realspike_cli.core.datasets."))}
    assert not (graph[registry] & (providers - {registry})), graph[registry]


def test_core_never_imports_the_cli_or_rich():
    for name, deps in import_graph().items():
        if name.startswith("realspike_cli.core"):
            assert not any(d.startswith("realspike_cli.cli") for d in deps), name
            source = (PACKAGE.parent / (name.replace(".", "/"))).with_suffix(".py")
            if source.exists():
                text = source.read_text(encoding="utf-8")
                assert "import typer" not in text and "import rich" not in text and "from rich" not in text, name


@pytest.mark.parametrize("argv", [["--help"], ["zoo", "list"], ["zoo", "info", "resnet34-imagenet"]])
def test_cheap_commands_do_not_import_torch(argv):
    code = ("import sys; from realspike_cli.cli.app import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]


def test_package_import_is_torch_free_and_every_public_name_resolves():
    code = ("import sys, realspike_cli as rs\nassert 'torch' not in sys.modules\n"
            "missing = [n for n in rs.__all__ if getattr(rs, n, None) is None]\nassert not missing, missing")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
