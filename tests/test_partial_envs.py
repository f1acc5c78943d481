"""The noisy and flickering position-only cart-poles: registered, checked, and the tensor batch
equal to the gymnasium env step for step, noise and flicker included."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from processes import rlrnn
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import (
    NAMED_VARIANTS,
    EnvError,
    PartialCartPoleEnv,
    TensorPartialCartPole,
    make_batched_env,
)
from envs.batched import check_env_id, env_sizes, is_registered
from envs.variants import VariantError, variant_params
from rlrnn.errors import UsageError
from rlrnn.learning.config import PPOConfig, RunConfig
from rlrnn.learning.evaluation import evaluate
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.training import train

HIGH = np.array([4.8, 0.41887903], dtype=np.float32)  # the position-only observation box


@pytest.mark.parametrize("env_id", sorted(NAMED_VARIANTS))
def test_named_variants_pass_env_checkers_and_keep_cartpole_v1_limits(env_id):
    env = gym.make(env_id)
    gym_check_env(env.unwrapped)
    sb3_check_env(gym.make(env_id))
    assert env.spec.max_episode_steps == 500 and env.spec.reward_threshold == 475
    assert env.observation_space.shape == (2 + NAMED_VARIANTS[env_id].last_action,)
    batched = make_batched_env(env_id, 3)
    assert isinstance(batched, TensorPartialCartPole)
    assert (batched.max_episode_steps, batched.reward_threshold) == (500, 475)


def test_named_levels_are_popgyms():
    assert variant_params("NoisyPositionOnlyCartPoleEasy-v1") == (0.1, 0.0, False)
    assert variant_params("NoisyPositionOnlyCartPoleMedium-v1") == (0.2, 0.0, False)
    assert variant_params("NoisyPositionOnlyCartPoleHard-v1") == (0.3, 0.0, False)
    assert variant_params("FlickeringPositionOnlyCartPole-v1") == (0.0, 0.5, False)
    assert variant_params("NoisyPositionOnlyCartPoleEasy-LastAction-v1") == (0.1, 0.0, True)
    assert variant_params("FlickeringPositionOnlyCartPole-p0.2-LastAction-v1") == (0, 0.2, True)
    assert variant_params("PositionOnlyCartPole-v1") is None


@pytest.mark.parametrize(
    ("env_id", "sigma", "flicker"),
    [
        ("NoisyPositionOnlyCartPoleEasy-v1", 0.1, 0.0),
        ("NoisyPositionOnlyCartPoleHard-v1", 0.3, 0.0),
        ("FlickeringPositionOnlyCartPole-v1", 0.0, 0.5),
        ("FlickeringPositionOnlyCartPole-p0.2-v1", 0.0, 0.2),
        ("NoisyPositionOnlyCartPoleMedium-LastAction-v1", 0.2, 0.0),
        ("FlickeringPositionOnlyCartPole-LastAction-v1", 0.0, 0.5),
    ],
)
def test_tensor_variant_matches_gymnasium_step_for_step(env_id, sigma, flicker):
    """Same start states, seeds and actions: the same corrupted observations (same stream),
    the same last actions where shown, rewards and flags, over many episodes and through
    resets."""
    rng = np.random.default_rng(0)
    n = 8
    tensor_env = make_batched_env(env_id, n)
    first = tensor_env.reset(seed=0)
    gym_envs = [gym.make(env_id) for _ in range(n)]
    for i, env in enumerate(gym_envs):
        env.reset(seed=i)
        env.unwrapped.state = tensor_env.state[i].double().numpy().copy()
    # The first observation of episode 0: the gymnasium env's own start state, the same stream.
    assert (tensor_env.sigma, tensor_env.flicker) == (sigma, flicker)
    assert env.unwrapped._observe(tensor_env.state[n - 1, [0, 2]].numpy(), 0) == pytest.approx(
        first[n - 1].numpy(), abs=1e-6
    )
    episodes_ended = 0
    for _ in range(300):
        actions = rng.integers(0, 2, size=n)
        result = tensor_env.step(torch.as_tensor(actions))
        for i, env in enumerate(gym_envs):
            obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            np.testing.assert_allclose(result.final_obs[i].numpy(), obs, atol=1e-4)
            assert result.reward[i].item() == reward
            assert result.terminated[i].item() == terminated
            assert result.truncated[i].item() == truncated
            if terminated or truncated:
                episodes_ended += 1
                env.reset()  # the next episode of the same stream
                env.unwrapped.state = tensor_env.state[i].double().numpy().copy()
                seen = env.unwrapped._observe(tensor_env.state[i, [0, 2]].float().numpy(), 0)
                np.testing.assert_allclose(result.obs[i].numpy(), seen, atol=1e-6)
    assert episodes_ended > 50


def test_noise_has_the_named_spread_and_flicker_the_named_rate():
    noisy = TensorPartialCartPole(4000, sigma=0.1)
    obs = noisy.reset(seed=3)
    true = noisy.state[:, [0, 2]].float()
    error = (obs - true).numpy()  # the start states are far from the box's edges: no clipping
    assert error.mean(axis=0) == pytest.approx([0, 0], abs=0.01)
    assert error.std(axis=0) == pytest.approx([0.1, 0.1], rel=0.05)
    flicker = TensorPartialCartPole(4000, flicker=0.5)
    blanks = [(flicker.reset(seed=3) == 0).all(dim=1).float().mean().item()]
    for _ in range(5):
        blanks.append((flicker.step(torch.ones(4000)).obs == 0).all(dim=1).float().mean().item())
    assert np.mean(blanks) == pytest.approx(0.5, abs=0.02)


def test_noise_stays_in_the_observation_box():
    env = TensorPartialCartPole(2000, sigma=5.0)
    obs = env.reset(seed=0)
    assert (obs.abs() <= torch.as_tensor(HIGH)).all()
    assert (obs.abs() == torch.as_tensor(HIGH)).any()  # clipped, not rescaled


def test_each_env_sees_its_own_stream_whatever_the_batch_size():
    small, large = TensorPartialCartPole(3, sigma=0.2), TensorPartialCartPole(10, sigma=0.2)
    torch.testing.assert_close(small.reset(seed=5), large.reset(seed=5)[:3])
    for _ in range(40):
        a, b = small.step(torch.ones(3)), large.step(torch.ones(10))
        torch.testing.assert_close(a.obs, b.obs[:3])
        torch.testing.assert_close(a.final_obs, b.final_obs[:3])


def test_resume_from_state_dict_draws_the_same_stream():
    env = TensorPartialCartPole(4, sigma=0.1, flicker=0.3)
    env.reset(seed=1)
    for _ in range(30):
        env.step(torch.zeros(4))
    saved = io.BytesIO()
    torch.save(env.state_dict(), saved)  # as last.pt keeps it
    saved.seek(0)
    copy = TensorPartialCartPole(4, sigma=0.1, flicker=0.3)
    copy.load_state_dict(torch.load(saved))
    for _ in range(30):
        torch.testing.assert_close(env.step(torch.ones(4)).obs, copy.step(torch.ones(4)).obs)


@pytest.mark.parametrize("last_action", [False, True])
def test_parametrized_ids_register_on_demand(last_action):
    env_id = "NoisyPositionOnlyCartPole-sigma0.15" + ("-LastAction" if last_action else "") + "-v1"
    assert is_registered(env_id) and env_sizes(env_id) == (2 + last_action, 2)
    check_env_id(env_id)
    env = gym.make(env_id).unwrapped
    assert (env.sigma, env.last_action) == (0.15, last_action)
    batched = make_batched_env(env_id, 2)
    assert (batched.sigma, batched.last_action) == (0.15, last_action)
    assert batched.obs_dim == 2 + last_action


def test_the_last_action_is_the_push_just_made_and_zero_after_a_reset():
    env = TensorPartialCartPole(3, sigma=0.1, last_action=True)
    assert (env.reset(seed=0)[:, 2] == 0).all()
    for _ in range(200):
        actions = torch.tensor([0, 1, 1])
        result = env.step(actions)
        torch.testing.assert_close(result.final_obs[:, 2], actions * 2.0 - 1)
        ended = result.terminated | result.truncated
        torch.testing.assert_close(result.obs[:, 2], torch.where(ended, 0.0, actions * 2.0 - 1))
    assert env._episodes.sum() > 0  # the always-pushing envs fell at least once


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("NoisyPositionOnlyCartPole-sigma-0.1-v1", "sigma must be a finite number >= 0, got -0.1"),
        ("FlickeringPositionOnlyCartPole-p1.5-v1", "must be in [0, 1], got 1.5"),
        ("FlickeringPositionOnlyCartPole-p-0.5-v1", "must be in [0, 1], got -0.5"),
        ("NoisyPositionOnlyCartPole-sigmanan-v1", "finite number"),
        ("NoisyPositionOnlyCartPole-sigmaabc-v1", "sigma must be a number"),
        ("FlickeringPositionOnlyCartPole-sigma0.1-v1", "takes p"),
    ],
)
def test_bad_parameters_are_refused(env_id, message):
    with pytest.raises(EnvError, match=message.replace("[", r"\[")):
        check_env_id(env_id)
    assert not is_registered(env_id)


def test_bad_parameters_in_python_raise_value_errors():
    with pytest.raises(VariantError, match="sigma"):
        PartialCartPoleEnv(sigma=-0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TensorPartialCartPole(2, flicker=1.1)


def test_bad_parameters_on_the_command_line_are_one_line_and_exit_2(tmp_path):
    env_id = "NoisyPositionOnlyCartPole-sigma-0.1-v1"  # the other ids fail the same way (above)
    done = rlrnn("train", "--env", env_id, "--run-dir", str(tmp_path / "run"), timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and env_id in lines[0], done.stderr
    assert not (tmp_path / "run").exists()


def test_the_probe_reads_the_true_velocities_behind_the_noise():
    from rlrnn.learning.config import RunConfig
    from rlrnn.runs.loading import build_agent
    from rlrnn.tools.probe.probe import collect, has_hidden_state

    env_id = "NoisyPositionOnlyCartPoleHard-v1"
    assert has_hidden_state(env_id) and not has_hidden_state("Acrobot-v1")
    agent = build_agent(RunConfig(env_id=env_id), 2, 2)
    data = collect(agent, env_id, episodes=4)
    assert data.velocities.shape == (len(data.episode), 2) and len(data.episode) > 4
    assert data.features[0].shape[0] == len(data.episode)


def test_a_last_action_variant_trains_saves_loads_and_evaluates(tmp_path):
    env_id = "FlickeringPositionOnlyCartPole-p0.3-LastAction-v1"
    config = RunConfig(
        env_id=env_id, ppo=PPOConfig(total_timesteps=2048), eval_interval=0, eval_episodes=2
    )
    train(config, tmp_path / "run", show_progress=False)
    path = tmp_path / "run" / "final.pt"
    assert torch.load(path, weights_only=True)["env"]["obs_dim"] == 3
    policy, _, _ = load_checkpoint(path, env_id=env_id)
    assert len(evaluate(policy, env_id, episodes=3).returns) == 3
    with pytest.raises(UsageError, match="obs dim 3 there, 2 in"):  # no action seen: refused
        load_checkpoint(path, env_id="FlickeringPositionOnlyCartPole-p0.3-v1")


def test_sb3_agents_train_on_a_parametrized_id_in_compare_workers(tmp_path):
    """Each compare worker registers the id on its own: SB3 makes its envs with gym.make."""
    env_id = "NoisyPositionOnlyCartPole-sigma0.15-LastAction-v1"
    out = tmp_path / "cmp"
    flags = f"--agents sb3-ppo --env {env_id} --seeds 2 --total-timesteps 1024 --episodes 2"
    done = rlrnn("compare", *flags.split(), "--quiet", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| sb3-ppo | 2 |" in (out / "results.md").read_text()
