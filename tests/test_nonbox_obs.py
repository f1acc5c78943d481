"""Discrete and MultiDiscrete observations as one-hots, end to end; Dict and Tuple refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import make_batched_env
from envs.batched import EnvError, check_env_id, env_sizes
from envs.spaces import encode, flat_size
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.evaluation import evaluate
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.training import train

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "hostile"
sys.path.insert(0, str(HOSTILE))  # spaces_envs, as --env spaces_envs:... imports it


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(5, start=-2),
        gym.spaces.MultiDiscrete([3, 2]),
        gym.spaces.MultiDiscrete([[2, 3], [4, 1]], start=[[1, 0], [0, 5]]),
    ],
)
def test_encoding_is_gymnasiums_flatten_one_hot(space):
    space.seed(0)
    samples = [space.sample() for _ in range(30)]
    expected = np.stack([gym.spaces.flatten(space, x) for x in samples])
    encoded = encode(space, np.array(samples))
    np.testing.assert_array_equal(encoded, expected)
    assert encoded.shape == (30, flat_size(space)) and encoded.dtype == np.float32
    assert (encoded.sum(axis=1) == np.prod(np.shape(samples[0]))).all()  # one 1 per component


def test_discrete_observations_come_out_of_the_batched_env_as_one_hots():
    env = make_batched_env("FrozenLake-v1", 3)
    assert env.obs_dim == 16 and env_sizes("FrozenLake-v1") == (16, 4)
    obs = env.reset(seed=0)
    assert obs.shape == (3, 16) and (obs[:, 0] == 1).all() and (obs.sum(1) == 1).all()
    result = env.step(torch.tensor([1, 2, 1]))
    assert (result.obs.sum(1) == 1).all() and (result.final_obs.sum(1) == 1).all()


def test_multidiscrete_env_trains_saves_loads_and_evaluates(tmp_path):
    env_id = "spaces_envs:MultiDiscreteObs-v0"
    config = RunConfig(
        env_id=env_id,
        agent=AgentConfig(agent="gru"),
        ppo=PPOConfig(total_timesteps=8192, num_envs=16, num_steps=16),
        eval_interval=0,
        eval_episodes=2,
    )
    train(config, tmp_path / "run", show_progress=False)
    path = tmp_path / "run" / "final.pt"
    signature = torch.load(path, weights_only=True)["env"]
    assert signature["obs_dim"] == 5 and signature["num_actions"] == 2  # one-hots of 2 and 3
    policy, _, _ = load_checkpoint(path, env_id=env_id)
    returns = evaluate(policy, env_id, episodes=20).returns
    assert len(returns) == 20
    # The cue is the first one-hot: reading it is enough; chance is 5 of 10 steps.
    assert returns.mean() > 7.5


def cli(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(HOSTILE), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "rlrnn.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.slow  # four processes: about 20 s on an idle 2-core CPU
def test_discrete_env_end_to_end_on_the_command_line(tmp_path):
    run = tmp_path / "lake"
    done = cli(
        "train", "--env", "FrozenLake-v1", "--agent", "lstm", "--total-timesteps", "2048",
        "--eval-interval", "1024", "--run-dir", str(run), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = cli("evaluate", str(run), "--checkpoint", "final", "--episodes", "5", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["episodes"] == 5
    gif = tmp_path / "lake.gif"
    done = cli("evaluate", str(run), "--gif", str(gif), "--render-max-steps", "5")
    assert done.returncode == 0, done.stderr
    assert gif.stat().st_size > 0


@pytest.mark.parametrize(
    ("env_id", "kind"), [("spaces_envs:DictObs-v0", "Dict"), ("Blackjack-v1", "Tuple")]
)
def test_dict_and_tuple_observations_are_one_line_and_exit_2(env_id, kind, tmp_path):
    with pytest.raises(EnvError, match=f"has a {kind} observation space"):
        check_env_id(env_id)
    done = cli("train", "--env", env_id, "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"has a {kind} observation space; rlrnn needs Box, Discrete or MultiDiscrete" in lines[0]
    assert not (tmp_path / "run").exists()
