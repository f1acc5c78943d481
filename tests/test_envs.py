"""The position-only cart-pole and the batched tensor cart-pole."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs import EnvError, GymnasiumBatchedEnv, TensorCartPole, make_batched_env
from envs.batched import check_env_id


def test_position_only_cartpole_passes_env_checkers():
    env = gym.make("PositionOnlyCartPole-v1")
    gym_check_env(env.unwrapped)
    sb3_check_env(gym.make("PositionOnlyCartPole-v1"))
    assert env.observation_space.shape == (2,)
    assert env.observation_space.dtype == np.float32
    assert env.spec.max_episode_steps == 500 and env.spec.reward_threshold == 475


def test_position_only_observation_is_position_and_angle_of_full_state():
    full, hidden = gym.make("CartPole-v1"), gym.make("PositionOnlyCartPole-v1")
    obs_full, _ = full.reset(seed=3)
    obs_hidden, _ = hidden.reset(seed=3)
    terminated = False
    while not terminated:
        np.testing.assert_array_equal(obs_hidden, obs_full[[0, 2]])
        assert hidden.observation_space.contains(obs_hidden)
        obs_full, *_ = full.step(1)
        obs_hidden, _, terminated, _, _ = hidden.step(1)


@pytest.mark.parametrize("position_only", [True, False])
def test_tensor_cartpole_matches_gymnasium_step_for_step(position_only):
    """Same start states and actions: same observations, rewards and flags, for many episodes."""
    rng = np.random.default_rng(0)
    n = 8
    tensor_env = TensorCartPole(n, position_only=position_only)
    tensor_env.reset(seed=0)
    gym_envs = [gym.make("CartPole-v1") for _ in range(n)]
    for i, env in enumerate(gym_envs):
        env.reset(seed=i)
        env.unwrapped.state = tensor_env.state[i].double().numpy().copy()
    observed = [0, 2] if position_only else [0, 1, 2, 3]
    episodes_ended = 0
    for _ in range(300):
        actions = rng.integers(0, 2, size=n)
        result = tensor_env.step(torch.as_tensor(actions))
        for i, env in enumerate(gym_envs):
            obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            np.testing.assert_allclose(result.final_obs[i].numpy(), obs[observed], atol=1e-4)
            assert result.reward[i].item() == reward
            assert result.terminated[i].item() == terminated
            assert result.truncated[i].item() == truncated
            if terminated or truncated:
                episodes_ended += 1
                env.reset()
                env.unwrapped.state = tensor_env.state[i].double().numpy().copy()
                np.testing.assert_array_equal(
                    result.obs[i].numpy(), tensor_env.state[i, observed].numpy()
                )
    assert episodes_ended > 50  # random actions drop the pole within ~20 steps


def test_tensor_cartpole_truncates_at_time_limit_and_resets_in_same_step():
    env = TensorCartPole(2, max_episode_steps=5)
    env.reset(seed=0)
    for _ in range(4):
        result = env.step(torch.tensor([0, 1]))
        assert not result.truncated.any()
    result = env.step(torch.tensor([0, 1]))
    assert result.truncated.all() and not result.terminated.any()
    assert not torch.equal(result.obs, result.final_obs)  # a fresh episode began
    assert (env.elapsed == 0).all()
    assert (result.obs.abs() <= 0.05).all()


def test_tensor_cartpole_seeds_each_env_independently_of_batch_size():
    small, large = TensorCartPole(3), TensorCartPole(10)
    torch.testing.assert_close(small.reset(seed=7), large.reset(seed=7)[:3], rtol=0, atol=0)
    for _ in range(200):  # many episodes: the start-state table is refilled along the way
        a = small.step(torch.ones(3, dtype=torch.long))
        b = large.step(torch.ones(10, dtype=torch.long))
        torch.testing.assert_close(a.obs, b.obs[:3], rtol=0, atol=0)
    assert not torch.equal(TensorCartPole(3).reset(seed=8), small.reset(seed=7))


def test_start_states_are_uniform_in_gymnasium_bounds():
    env = TensorCartPole(4000, position_only=False)
    states = env.reset(seed=1)
    assert states.abs().max() <= 0.05
    assert abs(states.mean()) < 0.002 and abs(states.std() - 0.1 / np.sqrt(12)) < 0.002


def test_gymnasium_ids_run_behind_the_batched_interface():
    env = make_batched_env("envs:PositionOnlyCartPole-v1", 4)  # gymnasium's module:EnvId form
    assert isinstance(env, GymnasiumBatchedEnv)
    obs = env.reset(seed=0)
    assert obs.shape == (4, 2) and obs.dtype == torch.float32
    ended = 0
    for _ in range(100):
        result = env.step(torch.ones(4, dtype=torch.long))
        done = result.terminated | result.truncated
        ended += int(done.sum())
        assert torch.equal(result.final_obs[~done], result.obs[~done])
        assert (result.final_obs[done, 1].abs() > 0.2).all()  # fell over
    assert ended > 0


def test_built_in_ids_use_the_tensor_env():
    assert isinstance(make_batched_env("PositionOnlyCartPole-v1", 2), TensorCartPole)
    assert make_batched_env("CartPole-v1", 2).obs_dim == 4


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("NoSuchEnv-v0", "unknown env id"),
        ("hostile_envs:MultiBinaryActions-v0", "needs a Discrete or Box action space"),
    ],
)
def test_unusable_env_ids_are_rejected_clearly(env_id, message, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "hostile"))  # as --env imports it
    with pytest.raises(EnvError, match=message):
        check_env_id(env_id)


def test_registration_is_idempotent():
    import importlib

    importlib.reload(envs)
    assert "PositionOnlyCartPole-v1" in gym.registry
