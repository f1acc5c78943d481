"""A sweep of wrong invocations of every command: each ends with exit code 2, one clear line on
stderr, no traceback, and no file left behind."""

import concurrent.futures as cf
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlrnn.config import PPOConfig, RunConfig
from rlrnn.hyperparams import LogRange, default_config, search_space, with_values
from rlrnn.storage import create_study, open_storage
from rlrnn.training import train
from rlrnn.tune_setup import Setup

ROOT = Path(__file__).resolve().parents[1]
TRAIN, EVALUATE = str(ROOT / "train.py"), str(ROOT / "evaluate.py")
RLRNN = "-m", "rlrnn.cli"

# A study in a journal file, made for the lstm's defaults (see ``outcomes``).
SHARED = ["tune", "--storage", "journal:{tmp}/study.log", "--study", "shared"]
# (command, arguments, a fragment of the one-line message); {run}, {tmp} are filled in.
CASES = [
    ((TRAIN,), ["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    ((TRAIN,), ["--env", "Pendulum-v1"], "needs a Discrete action space"),
    ((TRAIN,), ["--agent", "transformer"], "invalid choice: 'transformer'"),
    ((TRAIN,), ["--num-envs", "0"], "num_envs must be >= 1, got 0"),
    ((TRAIN,), ["--num-steps", "-3"], "num_steps must be >= 1, got -3"),
    ((TRAIN,), ["--learning-rate", "fast"], "invalid float value: 'fast'"),
    ((TRAIN,), ["--learning-rate", "0"], "learning_rate must be > 0"),
    ((TRAIN,), ["--gamma", "1.5"], "gamma must be in (0, 1]"),
    ((TRAIN,), ["--total-timesteps", "10"], "less than one rollout"),
    ((TRAIN,), ["--num-minibatches", "3"], "must divide num_envs"),
    ((TRAIN,), ["--hidden-size", "0"], "hidden_size must be >= 1, got 0"),
    ((TRAIN,), ["--agent", "framestack", "--frame-stack", "0"], "frame_stack (k) must be >= 1"),
    ((TRAIN,), ["--run-dir", "{tmp}/blocker/run"], "cannot write run directory"),
    ((TRAIN,), ["--resume", "{tmp}/no-such-run"], "no such run folder"),
    ((TRAIN,), ["--resume", "{tmp}/empty"], "no last.pt in it"),
    ((TRAIN,), ["--resume", "{run}"], "pass a larger --total-timesteps"),
    ((TRAIN,), ["--resume", "{run}", "--agent", "gru"], "changes agent.agent (lstm -> gru)"),
    ((EVALUATE,), ["{tmp}/no-such-run"], "checkpoint not found"),
    ((EVALUATE,), ["{tmp}/folder.pt"], "checkpoint not found"),
    ((EVALUATE,), ["{tmp}/truncated.pt"], "damaged or not an rlrnn checkpoint"),
    ((EVALUATE,), ["{tmp}/notes.txt"], "damaged or not an rlrnn checkpoint"),
    ((EVALUATE,), ["{tmp}/newer.pt"], "written by a newer rlrnn"),
    ((EVALUATE,), ["{run}", "--episodes", "0"], "--episodes must be >= 1, got 0"),
    ((EVALUATE,), ["{run}", "--episodes", "many"], "invalid int value: 'many'"),
    ((EVALUATE,), ["{run}", "--obs-noise", "-1"], "--obs-noise must be >= 0"),
    ((EVALUATE,), ["{run}", "--env", "CartPole-v1"], "does not fit CartPole-v1"),
    ((EVALUATE,), ["{run}", "--gif", "{tmp}/out.txt"], "unknown file type '.txt'"),
    ((EVALUATE,), ["{run}", "--gif", "{tmp}/empty"], "unknown file type"),
    ((EVALUATE,), ["{run}", "--video", "{tmp}/nowhere/out.mp4"], "does not exist"),
    (RLRNN, ["compare", "--agents", "transformer"], "unknown agent 'transformer'"),
    (RLRNN, ["compare", "--seeds", "0"], "--seeds must be >= 1, got 0"),
    (RLRNN, ["compare", "--out", "{tmp}/blocker"], "is a file, not a folder"),
    (RLRNN, ["compare", "--env", "CartPole-v1", "--runs", "{run}"], "not CartPole-v1"),
    (RLRNN, ["probe", "{tmp}/no-such-run"], "checkpoint not found"),
    (RLRNN, ["probe", "{run}", "--out", "{tmp}/probe.jpg"], "unknown file type '.jpg'"),
    (RLRNN, ["gradflow", "--steps", "0"], "steps must be >= 1, got 0"),
    (RLRNN, ["gradflow", "--cores", "transformer"], "transformer"),
    (RLRNN, ["nonsense"], "invalid choice: 'nonsense'"),
    ((TRAIN,), ["--config", "{tmp}/no-such.json"], "no such file"),
    ((TRAIN,), ["--config", "{tmp}/notes.txt"], "not a JSON file"),
    ((TRAIN,), ["--config", "{tmp}/wrong.json"], "does not match this version of rlrnn"),
    ((TRAIN,), ["--resume", "{run}", "--config", "{tmp}/wrong.json"], "leave out --config"),
    (RLRNN, ["tune", "--trials", "0"], "--trials must be >= 1, got 0"),
    (RLRNN, ["tune", "--workers", "0"], "--workers must be >= 1, got 0"),
    (RLRNN, ["tune", "--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open storage"),
    (RLRNN, ["tune", "--storage", "::nonsense"], "is not a storage URL"),
    (RLRNN, ["tune", "--storage", "journal:{tmp}/nowhere/study.log"], "does not exist"),
    (RLRNN, ["tune", "--storage", "journal:{tmp}/empty"], "is a folder, not a journal"),
    (RLRNN, [*SHARED, "--agent", "gru"], "base.agent.agent (lstm -> gru)"),
    (RLRNN, [*SHARED, "--env", "CartPole-v1"], "base.env_id (PositionOnlyCartPole-v1 -> CartPole"),
    (RLRNN, [*SHARED, "--objective", "final"], "objective (seconds -> final)"),
    (RLRNN, [*SHARED[:-1], "oldspace"], "space.ppo.learning_rate"),
    (RLRNN, ["compare", "--storage", "::nonsense"], "is not a storage URL"),
    (RLRNN, ["compare", "--study", "x"], "give --storage too"),
]


def make_studies(journal: Path) -> None:
    """``shared``: the study ``rlrnn tune`` makes for the lstm's defaults; ``oldspace``: the
    same with another learning-rate range, as an older rlrnn would have made it."""
    base = with_values(default_config("lstm"), {"eval_interval": 2048})
    space = search_space("lstm")
    storage = open_storage(f"journal:{journal}", journal)
    for name, setup in (
        ("shared", Setup(base, space, threshold=475.0)),
        ("oldspace", Setup(base, space | {"ppo.learning_rate": LogRange(1e-5, 1e-3)})),
    ):
        create_study(storage, name, setup.direction, setup.attrs(), str(journal))


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    run = tmp / "run"
    train(RunConfig(ppo=PPOConfig(total_timesteps=1024), eval_interval=0), run, False)
    (tmp / "blocker").write_text("a file where a folder is expected")
    (tmp / "empty").mkdir()
    (tmp / "folder.pt").mkdir()
    (tmp / "notes.txt").write_text("not a checkpoint")
    (tmp / "wrong.json").write_text(json.dumps({"agent": {"colour": "blue"}}))
    make_studies(tmp / "study.log")
    (tmp / "truncated.pt").write_bytes((run / "final.pt").read_bytes()[:300])
    payload = torch.load(run / "final.pt", weights_only=True)
    torch.save({**payload, "version": payload["version"] + 1}, tmp / "newer.pt")
    work = tmp / "cwd"  # commands run here, so default output paths land inside tmp too
    work.mkdir()
    before = files_under(tmp)

    def invoke(case) -> subprocess.CompletedProcess:
        command, args, _ = case
        args = [a.format(run=run, tmp=tmp) for a in args]
        return subprocess.run(
            [sys.executable, *command, *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=work,
        )

    with cf.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(invoke, CASES))
    return results, files_under(tmp) - before


def test_the_sweep_is_wide():
    assert len(CASES) >= 25
    assert {c[0] for c in CASES} == {(TRAIN,), (EVALUATE,), RLRNN}


@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(c[1]) for c in CASES])
def test_bad_invocation_is_one_clear_line_and_exit_2(outcomes, index):
    result = outcomes[0][index]
    fragment = CASES[index][2]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_no_file_is_left_behind(outcomes):
    assert outcomes[1] == set()
