"""rlrnn policies speak Stable-Baselines3's ``predict`` protocol."""

import gymnasium as gym
import numpy as np
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import envs  # noqa: F401  (registers PositionOnlyCartPole-v1)
from agents import make_agent


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
