"""The house: envs and agents know nothing of rlrnn; inside rlrnn the command line uses the
tools, the tools use the core, never the reverse; no import circles, counting the imports made
inside functions."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "agents", "rlrnn")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its text (a package's import also
    runs its parents' ``__init__``)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        targets = set()
        for target in found & set(modules):
            parts = target.split(".")
            targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        graph[name] = {t for t in targets if t in modules and not name.startswith(t)}
    return graph


def test_imports_flow_one_way():
    rank = {"envs": 0, "agents": 0, "rlrnn.errors": 1, "rlrnn.files": 1, "rlrnn.learning": 2}
    rank |= {"rlrnn.runs": 3, "rlrnn.tools": 4, "rlrnn.cli": 5, "rlrnn": 6}

    def level(module: str) -> int:
        return max(r for prefix, r in rank.items() if (module + ".").startswith(prefix + "."))

    upward = [
        f"{m} -> {t}"
        for m, targets in import_graph().items()
        for t in targets
        if level(t) > level(m) or (level(m) == 0 and t.startswith("rlrnn"))
    ]
    assert upward == []


def test_no_import_circles():
    graph = import_graph()
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
