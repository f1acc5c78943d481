"""rlrnn policies speak Stable-Baselines3's ``predict`` protocol, and the CLI's RecurrentPPO is the
same reference as the one benchmarks/speed_vs_sb3.py calls."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scripts import load_script
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import envs  # noqa: F401  (registers PositionOnlyCartPole-v1)
from agents import make_agent

ROOT = Path(__file__).resolve().parents[1]


def test_sb3_evaluate_policy_runs_an_rlrnn_agent():
    agent = make_agent("lstm", obs_dim=2, num_actions=2)
    vec_env = DummyVecEnv([lambda: Monitor(gym.make("PositionOnlyCartPole-v1")) for _ in range(3)])
    vec_env.seed(0)
    returns, lengths = evaluate_policy(
        agent, vec_env, n_eval_episodes=6, deterministic=True, return_episode_rewards=True
    )
    assert len(returns) == 6
    assert all(1 <= r <= 500 for r in returns)
    np.testing.assert_array_equal(returns, lengths)  # reward 1 per step


def test_predict_keeps_memory_between_calls_and_forgets_at_episode_start():
    agent = make_agent("lstm", obs_dim=2, num_actions=2)
    obs = np.array([[0.01, -0.02], [0.03, 0.04]], dtype=np.float32)
    _, state = agent.predict(obs, episode_start=np.array([True, True]))
    _, carried = agent.predict(obs, state, episode_start=np.array([False, False]))
    _, restarted = agent.predict(obs, state, episode_start=np.array([True, True]))
    _, fresh = agent.predict(obs, episode_start=np.array([True, True]))
    assert not np.allclose(carried.h.numpy(), fresh.h.numpy())
    np.testing.assert_allclose(restarted.h.numpy(), fresh.h.numpy())


@pytest.mark.parametrize("env_id", ["PositionOnlyCartPole-v1", "PositionOnlyPendulum-v1"])
def test_the_speed_script_and_the_cli_build_the_same_recurrentppo(env_id, monkeypatch):
    """benchmarks/speed_vs_sb3.py calls sb3-contrib with the zoo's settings in SB3's names;
    ``--agent sb3-recurrentppo`` translates rlrnn's defaults. Both must be the same reference."""
    from sb3_contrib import RecurrentPPO

    from rlrnn import default_config
    from rlrnn.runs.sb3 import build_model, make_vec_env

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports its neighbours
    speed = load_script("speed_vs_sb3")
    n_envs, normalized, kwargs = speed.ZOO[env_id]
    config = default_config("sb3-recurrentppo", env_id)
    assert config.ppo.num_envs == n_envs
    assert config.agent.normalize_obs == config.ppo.normalize_reward == normalized
    vec_env = make_vec_env(config, n_envs)
    cli = build_model(config, vec_env, "cpu")
    script = RecurrentPPO("MlpLstmPolicy", vec_env, device="cpu", **kwargs)
    for name in ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef", "vf_coef"):
        assert getattr(cli, name) == getattr(script, name), name
    for name in ("max_grad_norm", "normalize_advantage", "use_sde", "sde_sample_freq"):
        assert getattr(cli, name) == getattr(script, name), name
    for progress in (1.0, 0.5):
        assert cli.lr_schedule(progress) == pytest.approx(script.lr_schedule(progress))
        assert cli.clip_range(progress) == pytest.approx(script.clip_range(progress))
    for key, value in script.policy_kwargs.items():
        assert cli.policy_kwargs[key] == value, key
    assert str(cli.policy) == str(script.policy)  # the same layers, widths and activations
