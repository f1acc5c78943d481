"""The README's Python example runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    """The commands of the README's quick start: the main job, then the test command."""
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_trains_saves_loads_and_evaluates(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", readme_example()]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("12,288 env steps") and lines[1].startswith("final weights: ")
    assert lines[1].endswith("over 20 episodes")
    run = tmp_path / "runs" / "api-example"
    names = ("final.pt", "best.pt", "last.pt", "config.json", "summary.json", "learning_curve.png")
    assert all((run / name).is_file() for name in names)


def test_ci_runs_the_quick_start_commands_as_written_in_a_new_environment():
    commands = quick_start_commands()
    assert len(commands) == 2 and "train.py" in commands[0] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-2:] == commands  # the main job, then the tests, last
    assert any(line.startswith("python3 -m venv") for line in ci)  # not the machine's packages


def test_the_constraints_file_pins_every_dependency_within_its_range():
    """constraints.txt (the versions the tests last passed with) satisfies pyproject's ranges."""
    from packaging.requirements import Requirement

    text = (ROOT / "constraints.txt").read_text().splitlines()
    pins = dict(line.lower().replace("_", "-").split("==") for line in text if "==" in line)
    project = tomllib_load(ROOT / "pyproject.toml")["project"]
    extras = project["optional-dependencies"]
    needed = project["dependencies"] + extras["dev"] + extras["export"]
    for requirement in map(Requirement, needed):
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, name
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def tomllib_load(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip's vendored reader
        from pip._vendor import tomli as tomllib
    return tomllib.loads(path.read_text())
