"""The README's Python example runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
