import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pg_cluster
import pytest
import torch

from rlrnn.cli import main
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.runs.training import train

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless rendering


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Callable[..., Path]:
    """``tiny_run(agent, env_id=None)``: a finished 2,048-step run of ``agent`` (on ``env_id``;
    None: the config's default env), trained once per session."""
    runs: dict[tuple[str, str | None], Path] = {}

    def make(agent: str = "lstm", env_id: str | None = None) -> Path:
        if (agent, env_id) not in runs:
            config = RunConfig(
                agent=AgentConfig(agent=agent),
                ppo=PPOConfig(total_timesteps=2048, num_envs=16, num_steps=16),
                eval_interval=0,
                eval_episodes=2,
                **({} if env_id is None else {"env_id": env_id}),
            )
            folder = tmp_path_factory.mktemp("tiny") / agent
            train(config, folder, show_progress=False)
            runs[agent, env_id] = folder
        return runs[agent, env_id]

    return make


@pytest.fixture
def cli() -> Callable[[list[str]], int]:
    """``rlrnn.cli.main`` as a function: argparse's own errors exit, the others return the code."""

    def run(argv: list[str]) -> int:
        try:
            return main(argv)
        except SystemExit as e:
            return int(e.code)

    return run


@pytest.fixture(scope="session")
def forked(tmp_path_factory) -> Callable[[list[dict]], dict]:
    """``forked(cases)``: run command lines through ``tests/forkrun.py`` (each in a process of
    its own, forked from one that imported rlrnn once); returns its report with every result's
    exit code, stdout, stderr and peak memory. A case: ``{"entry", "args", "cwd"}``, optionally
    ``"env"`` and ``"path"``."""
    logs = tmp_path_factory.mktemp("forked")
    calls = 0

    def run(cases: list[dict]) -> dict:
        nonlocal calls
        calls += 1
        full = []
        for k, case in enumerate(cases):
            out = logs / f"{calls}-{k}"
            full.append(
                {"env": {}, "path": [], **case, "stdout": f"{out}.out", "stderr": f"{out}.err"}
            )
        runner = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("forkrun.py"))],
            input=json.dumps(full),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert runner.returncode == 0, runner.stderr
        report = json.loads(runner.stdout)
        for result, case in zip(report["results"], full, strict=True):
            result["stdout"] = Path(case["stdout"]).read_text()
            result["stderr"] = Path(case["stderr"]).read_text()
        return report

    return run


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server: ``RLRNN_TEST_POSTGRES_URL`` (``.ci/run`` starts one), else a
    throwaway one started here. Skipped, saying why, only where none can be started; with
    ``RLRNN_REQUIRE_POSTGRES=1`` (CI) that is a failure instead."""
    url = os.environ.get("RLRNN_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="rlrnn-pg-"))  # not under pytest's 0700 tmp: the
    try:  # server may run as another user
        url = pg_cluster.start(folder)
    except pg_cluster.ClusterError as e:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("RLRNN_REQUIRE_POSTGRES"):
            pytest.fail(f"no PostgreSQL server could be started: {e}")
        pytest.skip(f"no PostgreSQL server could be started: {e}")
    yield url
    pg_cluster.stop(folder)
    shutil.rmtree(folder, ignore_errors=True)
