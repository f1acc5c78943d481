"""The house: envs and agents know nothing of rlrnn; inside rlrnn the command line uses the
tools, the tools use run-keeping (``rlrnn.runs``), run-keeping uses learning
(``rlrnn.learning``), never the reverse; no import circles, counting the imports made inside
functions; no module over 350 lines; a run's file names spelled in one module; the library
speaks in fields, not flags; ``import rlrnn`` registers its gymnasium ids."""

import ast
import re
import subprocess
import sys
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


def test_no_module_is_over_350_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 350
    }
    assert long == {}


def string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant in ``path`` but the docstrings (f-strings' literal parts too)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


RUN_FILE = re.compile(
    r"(?<![\w.])(config\.json|summary\.json|best\.pt|final\.pt|last\.pt|learning_curve\.png"
    r"|compare_eval\.json|probe\.png|\.rlrnn-run|\.rlrnn-lock)(?!\w)"
)
# A comparison suite's own report (summary.md, .csv, .json beside the envs' reports) is not a run.
NOT_A_RUN = {("rlrnn/tools/compare/suites.py", "summary.json")}


def test_a_runs_file_names_are_spelled_in_one_module():
    spelled = {
        (str(p.relative_to(ROOT)), m[1])
        for p in (ROOT / "rlrnn").rglob("*.py")
        for _, text in string_literals(p)
        for m in RUN_FILE.finditer(text)
    }
    outside = {(f, name) for f, name in spelled if f != "rlrnn/runs/folder.py"} - NOT_A_RUN
    assert outside == set()
    assert ("rlrnn/runs/folder.py", "last.pt") in spelled  # the pattern finds what it looks for


def test_learning_and_run_keeping_speak_in_fields_not_flags():
    flags = [
        f"{p.relative_to(ROOT)}:{line}: {text!r}"
        for package in ("learning", "runs")
        for p in (ROOT / "rlrnn" / package).rglob("*.py")
        for line, text in string_literals(p)
        if re.search(r"(?<![\w-])--[a-z][a-z-]+", text)
    ]
    assert flags == []


def test_import_rlrnn_registers_its_gym_ids_and_imports_no_torch():
    code = (
        "import sys, gymnasium as gym, rlrnn;"
        " print('PositionOnlyCartPole-v1' in gym.registry, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_the_readmes_layout_is_the_packages_map():
    """The README's Layout names every module of learning and runs, and the tools families,
    all of them and no other."""
    block = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    sections = re.split(r"\n  (learning|runs|tools|cli)/", block)
    named = dict(zip(sections[1::2], sections[2::2], strict=True))
    for package in ("learning", "runs"):
        text = named[package].split(":", 1)[1]
        modules = {p.stem for p in (ROOT / "rlrnn" / package).glob("*.py")} - {"__init__"}
        listed = {w for w in re.findall(r"[a-z][a-z0-9_]+", text) if w in modules}
        assert listed == modules, package
    families = set(re.findall(r"([a-z]+)/", named["tools"]))
    assert families == {p.parent.name for p in (ROOT / "rlrnn" / "tools").glob("*/__init__.py")}
