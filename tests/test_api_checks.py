"""The Python API checks what it is given as the command line does: the same typed errors
(UsageError, or EnvError for an env), raised before anything is written or allocated; configs
read from files (partial ones over their agent's defaults, pipes, damaged ones); what an env or
an SB3 user hands rlrnn."""

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import make_agent
from envs import EnvError
from envs.batched import GymnasiumBatchedEnv
from envs.spaces import ObservationError, encode
from rlrnn import AgentConfig, PPOConfig, RunConfig, default_config, evaluate, load_agent, train
from rlrnn.cli import main
from rlrnn.cli.options import load_config_file
from rlrnn.errors import MemoryBudgetExceeded, ResumeRefused, UsageError
from rlrnn.learning.config import PPO_ADDED_LATER
from rlrnn.runs.checkpoint import env_id_from_file

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "hostile"
sys.path.insert(0, str(HOSTILE))  # spaces_envs, as --env spaces_envs:... imports it

TINY = RunConfig(
    ppo=PPOConfig(total_timesteps=1024, num_envs=16, num_steps=16),
    eval_interval=0,
    eval_episodes=2,
    checkpoint_interval=0,
)
HUGE = 10_000_000


def ppo(**changes) -> RunConfig:
    return RunConfig(ppo=PPOConfig(**changes))


# ---------------------------------------------------------------- train()


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda d: train("lstm", d), UsageError, "got str; for its tuned defaults: default_config"),
        (
            lambda d: train({"agent": {"agent": "gru"}}, d),
            UsageError,
            "takes a RunConfig, got dict",
        ),
        (lambda d: train(TINY, 42), UsageError, "run_dir must be a path, got int"),
        (lambda d: train(TINY, ""), UsageError, "run_dir must be a path, got an empty string"),
        (lambda d: train(TINY, d, show_progress="no"), UsageError, "show_progress must be true"),
        (lambda d: train(TINY, d, resume=1), UsageError, "resume must be true or false, got 1"),
        (lambda d: train(TINY, d, on_evaluation=5), UsageError, "on_evaluation must be callable"),
        (lambda d: train(RunConfig(env_id="NoSuchEnv-v0"), d), EnvError, "unknown env id"),
        (
            lambda d: train(RunConfig(env_id="hostile_envs:TupleActions-v0"), d),
            EnvError,
            "needs a Discrete or Box action space, has Tuple(",
        ),
        (
            lambda d: train(ppo(num_envs=HUGE, total_timesteps=10**9), d),
            MemoryBudgetExceeded,
            "lower num_envs, num_steps or hidden_size",
        ),
        (
            lambda d: train(RunConfig(eval_episodes=200_000_000), d),
            MemoryBudgetExceeded,
            "evaluating 200,000,000 episodes at once (eval_episodes) in training needs about",
        ),
        (lambda d: train(TINY, d, resume=True), ResumeRefused, "no such run folder"),
        (
            lambda d: train(default_config("sb3-ppo"), d, resume=True),
            ResumeRefused,
            "sb3-ppo runs restart",
        ),
    ],
    ids=[
        "agent-name",
        "dict",
        "int-folder",
        "empty-folder",
        "progress",
        "resume",
        "hook",
        "unknown-env",
        "continuous-actions",
        "memory",
        "eval-episodes-memory",
        "resume-nothing",
        "resume-sb3",
    ],
)
def test_a_wrong_train_call_is_one_typed_error_before_the_disk_is_touched(
    tmp_path, call, error, fragment
):
    with pytest.raises(error) as raised:
        call(tmp_path / "run")
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []  # no folder, no marker, no lock


def test_train_refuses_a_folder_that_holds_a_run_and_leaves_it_whole(tmp_path):
    run = tmp_path / "run"
    train(TINY, run, show_progress=False)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    again = RunConfig(seed=1, ppo=TINY.ppo, eval_interval=0, eval_episodes=2)
    with pytest.raises(UsageError, match=r"already holds a run \(config.json, summary.json"):
        train(again, run, show_progress=False)
    with pytest.raises(UsageError, match="already has 1,024 of its 1,024 env steps"):
        train(TINY, run, show_progress=False, resume=True)
    with pytest.raises(UsageError, match=r"changes agent.hidden_size \(32 -> 8\)"):
        train(RunConfig(agent=AgentConfig(hidden_size=8), ppo=TINY.ppo), run, False, True)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


# ---------------------------------------------------------------- the config dataclasses


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: AgentConfig(hidden_size=32.5), "hidden_size must be an integer, got 32.5"),
        (lambda: AgentConfig(hidden_size=True), "hidden_size must be an integer, got True"),
        (lambda: AgentConfig(num_layers="2"), "num_layers must be an integer, got '2'"),
        (lambda: AgentConfig(pi_hidden=(64.0,)), "pi_hidden must be a list of integers"),
        (lambda: AgentConfig(shared_core=1), "shared_core must be true or false, got 1"),
        (lambda: AgentConfig(agent=None), "agent must be a string, got None"),
        (lambda: PPOConfig(learning_rate=math.nan), "learning_rate must be a finite number"),
        (lambda: PPOConfig(gamma=math.inf), "gamma must be a finite number, got inf"),
        (lambda: PPOConfig(num_envs=64.0), "num_envs must be an integer, got 64.0"),
        (lambda: PPOConfig(anneal_lr="yes"), "anneal_lr must be true or false"),
        (lambda: PPOConfig(total_timesteps=[1] * 100), "got [1, 1, 1"),
        (lambda: RunConfig(seed=1.5), "seed must be an integer, got 1.5"),
        (lambda: RunConfig(torch_threads=100_000), "torch_threads must be in [1, 1024]"),
        (
            lambda: RunConfig(agent={"agent": "gru"}),
            "agent must be an instance of AgentConfig, got {",
        ),
        (lambda: RunConfig(ppo=None), "ppo must be an instance of PPOConfig, got None"),
        (lambda: RunConfig(env_id=3), "env_id must be a string, got 3"),
        (
            lambda: RunConfig(env_id="NoisyPositionOnlyCartPole-sigma-1-v1"),
            "the noise sigma must be a finite number >= 0, got -1.0",
        ),
        (lambda: default_config(["lstm"]), "unknown agent ['lstm']"),
        (lambda: default_config(None), "unknown agent None"),
    ],
)
def test_configs_refuse_values_of_the_wrong_type(make, fragment):
    with pytest.raises(UsageError) as raised:
        make()
    assert fragment in str(raised.value) and len(str(raised.value)) < 200


def test_configs_store_plain_values_of_their_declared_types():
    agent = AgentConfig(hidden_size=np.int64(16), pi_hidden=[32, np.int64(8)], shared_core=np.True_)
    assert agent == AgentConfig(hidden_size=16, pi_hidden=(32, 8), shared_core=True)
    assert type(agent.hidden_size) is int and agent.pi_hidden == (32, 8)
    assert hash(agent)  # a list would make it unhashable
    config = RunConfig(agent=agent, ppo=PPOConfig(learning_rate=np.float32(0.5), gamma=1))
    assert type(config.ppo.learning_rate) is float and config.ppo.gamma == 1
    assert type(PPOConfig(learning_rate=np.float64(0.5)).learning_rate) is float
    assert RunConfig.from_dict(json.loads(config.to_json())) == config


# ---------------------------------------------------------------- evaluate() and load_agent()


@pytest.fixture(scope="module")
def policy():
    return make_agent("lstm", obs_dim=2, num_actions=2)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"episodes": 0}, UsageError, "episodes must be >= 1, got 0"),
        ({"episodes": 2.5}, UsageError, "episodes must be an integer, got 2.5"),
        ({"episodes": True}, UsageError, "episodes must be an integer, got True"),
        ({"obs_noise": math.nan}, UsageError, "obs_noise must be a finite number, got nan"),
        ({"obs_noise": math.inf}, UsageError, "obs_noise must be a finite number, got inf"),
        ({"obs_noise": -1.0}, UsageError, "obs_noise must be >= 0, got -1.0"),
        ({"seed": -1}, UsageError, "seed must be in [0, 2**32 - 1], got -1"),
        ({"seed": 1.5}, UsageError, "seed must be an integer, got 1.5"),
        ({"device": "gpu"}, UsageError, "unknown device 'gpu'"),
        ({"device": 0.5}, UsageError, "device must be a torch device or its name"),
        ({"max_episode_steps": 0}, UsageError, "max_episode_steps must be >= 1, got 0"),
        ({"deterministic": "yes"}, UsageError, "deterministic must be true or false"),
        ({"check_every": 0}, UsageError, "check_every must be >= 1, got 0"),
        ({"env_id": "NoSuchEnv-v0"}, EnvError, "unknown env id 'NoSuchEnv-v0'"),
        ({"env_id": None}, UsageError, "env_id must be a string, got None"),
        ({"env_id": "CartPole-v1"}, UsageError, "policy has obs size 2, env 'CartPole-v1' has 4"),
        ({"agent": "final.pt"}, UsageError, "evaluate() takes a policy"),
        ({"episodes": 2_000_000_000}, UsageError, "playing 2,000,000,000 episodes at once needs"),
    ],
)
def test_a_wrong_evaluate_call_is_one_typed_error(policy, kwargs, error, fragment):
    call = {"agent": policy, "env_id": "PositionOnlyCartPole-v1", "episodes": 3} | kwargs
    with pytest.raises(error) as raised:
        evaluate(**call)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_evaluate_still_plays_what_it_is_given(policy):
    result = evaluate(policy, "PositionOnlyCartPole-v1", episodes=np.int64(3), obs_noise=0)
    assert len(result.returns) == 3 and (result.returns >= 1).all()


@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu", 0)])
def test_evaluate_takes_each_name_of_the_cpu(policy, device):
    result = evaluate(policy, "PositionOnlyCartPole-v1", episodes=2, device=device)
    assert len(result.returns) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"which": "../secrets"}, UsageError, "which must be one of best, final, last"),
        ({"run": None}, UsageError, "run must be a path, got NoneType"),
        ({"device": "tpu"}, UsageError, "unknown device 'tpu'"),
        ({"env_id": 5}, UsageError, "env_id must be a string, got 5"),
        ({"env_id": "NoSuchEnv-v0"}, EnvError, "unknown env id"),
        ({}, UsageError, "checkpoint not found"),
    ],
)
def test_a_wrong_load_agent_call_is_one_typed_error(tmp_path, kwargs, error, fragment):
    with pytest.raises(error, match=None) as raised:
        load_agent(**({"run": tmp_path / "nothing"} | kwargs))
    assert fragment in str(raised.value)


# ---------------------------------------------------------------- config files


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_partial_config_starts_from_its_agents_defaults(tmp_path):
    gru = load_config_file(write(tmp_path / "gru.json", {"agent": {"agent": "gru"}}))
    assert gru == default_config("gru")  # its tuned lr, lambda and clip, and solved_lr_scale
    changed = {"agent": {"agent": "gru"}, "ppo": {"gamma": 0.9}, "seed": 3}
    config = load_config_file(write(tmp_path / "changed.json", changed))
    assert config.ppo.gamma == 0.9 and config.seed == 3
    assert config.ppo.learning_rate == default_config("gru").ppo.learning_rate
    nameless = load_config_file(write(tmp_path / "nameless.json", {"ppo": {"gamma": 0.9}}))
    assert nameless.agent.agent == "lstm" and nameless.ppo.solved_lr_scale == 0.1
    with pytest.raises(UsageError, match="unknown agent 'transformer'"):
        load_config_file(write(tmp_path / "t.json", {"agent": {"agent": "transformer"}}))


def test_a_whole_config_of_an_older_version_keeps_what_it_was_trained_with(tmp_path):
    old = default_config("gru").to_dict()
    for name in PPO_ADDED_LATER:
        del old["ppo"][name]
    del old["compile"], old["agent"]["frame_stack"]  # added later too, default unchanged
    config = load_config_file(write(tmp_path / "old.json", old))
    assert config.ppo.solved_lr_scale == PPO_ADDED_LATER["solved_lr_scale"]
    assert config.ppo.learning_rate == default_config("gru").ppo.learning_rate
    # A whole config of this version is taken as it is.
    mine = RunConfig(agent=AgentConfig(agent="gru", hidden_size=8))
    assert load_config_file(write(tmp_path / "mine.json", mine.to_dict())) == mine


def test_a_parametrized_variant_named_in_a_config_file_is_recognised(tmp_path):
    path = write(tmp_path / "noisy.json", {"env_id": "NoisyPositionOnlyCartPole-sigma0.25-v1"})
    config = load_config_file(path)
    assert env_id_from_file(config.env_id, path) == config.env_id  # rlrnn's own: no --env needed


def cli(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlrnn.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "SDL_VIDEODRIVER": "dummy"},
    )


def test_a_config_is_read_from_a_pipe(tmp_path):
    run = tmp_path / "run"
    partial = json.dumps({"agent": {"agent": "gru"}, "eval_interval": 0})
    args = ["--config", "/dev/stdin", "--total-timesteps", "1024", "--num-envs", "16"]
    done = cli("train", *args, "--run-dir", str(run), "--quiet", stdin=partial)
    assert done.returncode == 0, done.stderr
    saved = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    wanted = default_config("gru")
    assert saved.agent == wanted.agent and saved.ppo.learning_rate == wanted.ppo.learning_rate
    assert saved.ppo.total_timesteps == 1024 and saved.eval_interval == 0


def test_the_printed_commands_work_when_pasted_for_a_folder_named_like_an_option(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    args = ["--total-timesteps", "512", "--num-envs", "16", "--eval-interval", "0"]
    assert main(["train", "--run-dir=-dash", *args]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Evaluate it"))
    pasted = shlex.split(line.removeprefix("Evaluate it: ").split("  (")[0])
    assert pasted[:3] == ["python", "evaluate.py", "./-dash"]
    assert main(["evaluate", *pasted[2:], "--episodes", "2"]) == 0


# ---------------------------------------------------------------- what envs and SB3 users hand in


@pytest.mark.parametrize(
    ("space", "obs", "shown"),
    [
        (spaces.Discrete(3), [7], "observation 7, outside its observation space Discrete(3)"),
        (spaces.Discrete(3, start=-1), [-2], "observation -2, outside"),
        (spaces.Discrete(3), [np.nan], "observation nan, outside"),
        (spaces.Discrete(3), [1.5], "observation 1.5, outside"),
        (spaces.MultiDiscrete([3, 2]), [[1, 2]], "observation [1, 2], outside"),
    ],
)
def test_an_observation_outside_its_discrete_space_is_the_envs_fault(space, obs, shown):
    with pytest.raises(ObservationError) as raised:
        encode(space, np.array(obs))
    assert shown in str(raised.value) and "the env is at fault" in str(raised.value)


def test_a_batched_env_names_the_env_that_left_its_space():
    env = GymnasiumBatchedEnv("spaces_envs:OutOfSpaceObs-v0", 2)
    env.reset(seed=0)
    with pytest.raises(EnvError, match="env 'spaces_envs:OutOfSpaceObs-v0' returned the obs"):
        for _ in range(3):
            env.step(torch.zeros(2, dtype=torch.long))


def test_predict_takes_the_state_as_sb3_users_pass_it():
    agent = make_agent("lstm", obs_dim=2, num_actions=2)
    obs = np.array([[0.01, -0.02], [0.03, 0.04]], dtype=np.float32)
    _, state = agent.predict(obs, episode_start=np.array([True, True]))
    as_numpy = tuple(t.numpy() for t in state)  # (h, c), as sb3-contrib's RecurrentPPO returns
    _, carried = agent.predict(obs, state)
    for given in (as_numpy, list(as_numpy)):
        _, from_numpy = agent.predict(obs, given)
        np.testing.assert_array_equal(from_numpy.h.numpy(), carried.h.numpy())
        np.testing.assert_array_equal(from_numpy.c.numpy(), carried.c.numpy())
    with pytest.raises(ValueError, match=r"state h has shape \(1, 3, 32\); this policy keeps"):
        agent.predict(obs, (np.zeros((1, 3, 32)), np.zeros((1, 3, 32))))
    with pytest.raises(ValueError, match="state must be what predict returned, or"):
        agent.predict(obs, np.zeros((1, 2, 32)))
    with pytest.raises(ValueError, match="does not hold whole observations of 2 numbers"):
        agent.predict(np.zeros(3))
    with pytest.raises(ValueError, match="episode_start holds 3 flags for 2 observations"):
        agent.predict(obs, episode_start=np.array([True, False, True]))
