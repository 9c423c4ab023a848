"""The package layout stays readable: no import circle inside trainers/, and the shipped model imports only torch,
transformers and the standard library (its files travel to the Hub as remote code)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# folder -> the name it is installed under (pyproject.toml's package-dir)
PACKAGES = {"trainers": "dcclip.trainers", "modeling_dcclip": "modeling_dcclip"}


def _module_name(path: Path, folder: str) -> str:
    parts = path.relative_to(REPO_ROOT / folder).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join([PACKAGES[folder], *parts])


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports for type hints only never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, module: str) -> set[str]:
    """Modules `path` imports when it runs: at module level and inside functions (a lazy import that closes a circle
    is still a circle), but not under `if TYPE_CHECKING:`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph(folder: str) -> dict[str, set[str]]:
    modules = {_module_name(path, folder): path for path in (REPO_ROOT / folder).rglob("*.py")}
    return {name: _imports(path, name) & set(modules) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            # `import a.b` also imports the package a: a package's __init__ importing its own children is no circle
            if target != node and state.get(target) == 1 and not node.startswith(target + "."):
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_trainers_has_no_import_circle():
    assert _find_cycle(_graph("trainers")) is None


def test_the_cycle_finder_finds_a_circle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_shipped_model_imports_only_torch_transformers_and_the_standard_library():
    allowed = {"torch", "transformers", "modeling_dcclip", "__future__"}
    for path in (REPO_ROOT / "modeling_dcclip").glob("*.py"):
        roots = {name.split(".")[0] for name in _imports(path, _module_name(path, "modeling_dcclip"))}
        outside = {root for root in roots - allowed if root and root not in sys.stdlib_module_names}
        assert not outside, f"{path.name} imports {outside}"
