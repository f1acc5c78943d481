"""The trainer: rollout replay, reproducibility, checkpoints, normalisation."""

import dataclasses
import io
import json

import numpy as np
import pytest
import torch

from agents import RunningNorm
from envs import make_batched_env
from rlrnn.errors import UsageError
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.ppo import KL_LR_BOUNDS, KL_LR_FACTOR, EpisodeStats, PPOLearner
from rlrnn.runs.checkpoint import save_checkpoint
from rlrnn.runs.loading import build_agent, load_checkpoint
from rlrnn.runs.training import train

TINY = PPOConfig(total_timesteps=2048, num_envs=8, num_steps=16, num_minibatches=2, update_epochs=2)


def make_trainer(agent: str = "lstm", shared: bool = True) -> PPOLearner:
    torch.manual_seed(0)
    config = RunConfig(agent=AgentConfig(agent=agent, shared_core=shared), ppo=TINY)
    env = make_batched_env(config.env_id, TINY.num_envs)
    return PPOLearner(build_agent(config, env.obs_dim, env.num_actions), env, TINY, seed=0)


@pytest.mark.parametrize(
    ("agent", "shared"),
    [("lstm", True), ("lstm", False), ("mlp", True), ("framestack", False), ("gru", True)],
)
def test_replaying_a_rollout_from_its_initial_state_reproduces_its_log_probs(agent, shared):
    """The update's minibatches replay whole sequences: they must see what the rollout saw."""
    ppo = make_trainer(agent, shared)
    ppo.collect_rollout()  # a second rollout starts mid-episode, from a non-zero state
    rollout, _ = ppo.collect_rollout()
    assert rollout.episode_starts.sum() > 0  # resets happen inside the sequence
    with torch.no_grad():
        logits, values, _ = ppo.agent(rollout.obs, rollout.initial_state, rollout.episode_starts)
    logp = logits.log_softmax(-1).gather(-1, rollout.actions[..., None]).squeeze(-1)
    torch.testing.assert_close(logp, rollout.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, rollout.values, atol=1e-5, rtol=1e-5)


def test_update_changes_the_policy_and_reports_statistics():
    ppo = make_trainer()
    before = [p.detach().clone() for p in ppo.agent.parameters()]
    stats, episodes = ppo.iterate()
    assert any(not torch.equal(a, b) for a, b in zip(before, ppo.agent.parameters(), strict=True))
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm"):
        assert torch.isfinite(stats[key]), key
    assert stats["entropy"] > 0.5  # near ln 2 at the start
    assert episodes.count > 0 and episodes.return_sum / episodes.count > 5


@pytest.mark.parametrize(("target_kl", "epochs"), [(0.0, 4), (1e-12, 1), (1e9, 4)])
def test_target_kl_ends_the_epochs_early(target_kl, epochs):
    ppo = make_trainer()
    ppo.config = dataclasses.replace(ppo.config, update_epochs=4, target_kl=target_kl)
    ppo.collect_rollout()
    stats, _ = ppo.iterate()  # the second update: its first epoch moves the policy
    assert stats["epochs"] == epochs


@pytest.mark.parametrize(
    ("approx_kl", "factor"), [(0.05, 1 / KL_LR_FACTOR), (0.015, 1.0), (0.001, KL_LR_FACTOR)]
)
def test_kl_adaptive_learning_rate_moves_against_the_kl(approx_kl, factor):
    ppo = make_trainer()
    ppo.config = dataclasses.replace(ppo.config, desired_kl=0.01)
    before = ppo.lr.item()
    ppo._adapt_learning_rate(torch.tensor(approx_kl))
    assert ppo.lr.item() == pytest.approx(before * factor)
    assert ppo.optimizer.param_groups[0]["lr"] is ppo.lr  # Adam reads the adapted rate


def test_kl_adaptive_learning_rate_stays_within_bounds_and_drives_the_update():
    ppo = make_trainer()
    ppo.config = dataclasses.replace(ppo.config, desired_kl=1e-12)  # every step is too big
    stats, _ = ppo.iterate()
    assert stats["learning_rate"].item() < ppo.config.learning_rate / KL_LR_FACTOR
    for _ in range(60):
        ppo._adapt_learning_rate(torch.tensor(1.0))
    assert ppo.lr.item() == pytest.approx(KL_LR_BOUNDS[0])
    for _ in range(60):
        ppo._adapt_learning_rate(torch.tensor(0.0))
    assert ppo.lr.item() == pytest.approx(KL_LR_BOUNDS[1])


def test_fixed_schedule_anneals_the_learning_rate_linearly():
    ppo = make_trainer()
    ppo.iteration = ppo.config.num_iterations // 2
    stats, _ = ppo.iterate()
    assert stats["learning_rate"].item() == pytest.approx(ppo.config.learning_rate / 2)


def test_a_solved_policy_takes_smaller_steps_until_the_end():
    ppo = make_trainer()
    ppo.config = dataclasses.replace(ppo.config, solved_lr_scale=0.25)
    ppo.iteration = ppo.config.num_iterations // 2
    stats, _ = ppo.iterate()
    assert stats["learning_rate"].item() == pytest.approx(ppo.config.learning_rate / 2)
    ppo.solved.fill_(True)
    ppo.iteration = ppo.config.num_iterations // 2
    stats, _ = ppo.iterate()
    assert stats["learning_rate"].item() == pytest.approx(ppo.config.learning_rate / 8)


def test_the_smaller_solved_steps_survive_a_resume():
    ppo = make_trainer()
    ppo.solved.fill_(True)
    ppo.iterate()
    saved = io.BytesIO()  # through bytes, as last.pt carries it
    torch.save({"agent": ppo.agent.state_dict(), "ppo": ppo.state_dict()}, saved)
    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=False)
    resumed = make_trainer()
    resumed.agent.load_state_dict(checkpoint["agent"])
    resumed.load_state_dict(checkpoint["ppo"])
    assert resumed.solved
    rng = checkpoint["ppo"]["cpu_rng"]  # one process, one generator: each run from the saved one
    torch.set_rng_state(rng)
    a, _ = ppo.iterate()
    torch.set_rng_state(rng)
    b, _ = resumed.iterate()
    frac = 1 - 1 / ppo.config.num_iterations
    expected = ppo.config.learning_rate * frac * ppo.config.solved_lr_scale
    assert a["learning_rate"].item() == b["learning_rate"].item() == pytest.approx(expected)
    for p, q in zip(ppo.agent.parameters(), resumed.agent.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_config_saved_before_the_solved_scale_existed_keeps_full_steps():
    data = RunConfig().to_dict()
    assert data["ppo"]["solved_lr_scale"] == 0.1  # the default now
    del data["ppo"]["solved_lr_scale"]  # as an older run's config.json has it
    assert RunConfig.from_dict(data).ppo.solved_lr_scale == 1.0
    assert RunConfig.from_dict(RunConfig().to_dict()) == RunConfig()


def test_the_solved_scale_alone_does_not_freeze_the_observation_normaliser():
    ppo = make_trainer()
    ppo.config = dataclasses.replace(ppo.config, freeze_obs_norm=False, solved_lr_scale=0.5)
    ppo.solved.fill_(True)
    before = ppo.agent.obs_norm.mean.clone()
    ppo.iterate()
    assert not torch.equal(before, ppo.agent.obs_norm.mean)


def episodes(count: int, mean_return: float) -> EpisodeStats:
    return EpisodeStats(
        torch.tensor(float(count)), torch.tensor(count * mean_return), torch.tensor(0.0)
    )


def test_solved_needs_a_recent_record_and_then_stays_latched():
    ppo = make_trainer()
    ppo.threshold = 475.0
    ppo._track_solved(episodes(1, 500.0))  # one long episode is no record
    assert not ppo.solved
    for _ in range(40):
        ppo._track_solved(episodes(2, 200.0))
    assert not ppo.solved  # many episodes, but far below the threshold
    for _ in range(40):
        ppo._track_solved(episodes(2, 500.0))
        if ppo.solved:
            break
    assert ppo.solved and ppo.recent_return >= 475
    ppo._track_solved(episodes(5, 20.0))
    assert ppo.solved  # latched: the normaliser stays frozen through a later dip


def test_observation_statistics_freeze_once_solved():
    ppo = make_trainer()
    ppo.iterate()
    moved = ppo.agent.obs_norm.mean.clone()
    ppo.iterate()
    assert not torch.equal(moved, ppo.agent.obs_norm.mean)  # still learning its statistics
    ppo.solved.fill_(True)
    frozen = {k: v.clone() for k, v in ppo.agent.obs_norm.state_dict().items()}
    ppo.iterate()
    for key, value in ppo.agent.obs_norm.state_dict().items():
        assert torch.equal(value, frozen[key]), key


def test_same_seed_gives_the_same_run(tmp_path):
    config = RunConfig(seed=3, eval_interval=1024, eval_episodes=4, ppo=TINY)
    a = train(config, tmp_path / "a", show_progress=False)
    b = train(config, tmp_path / "b", show_progress=False)
    strip = lambda s: [(e["env_steps"], e["mean_return"]) for e in s["evaluations"]]  # noqa: E731
    assert strip(a) == strip(b)
    wa = torch.load(tmp_path / "a" / "final.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "final.pt", weights_only=True)["model"]
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    train(dataclasses.replace(config, seed=4), tmp_path / "c", show_progress=False)
    wc = torch.load(tmp_path / "c" / "final.pt", weights_only=True)["model"]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_save_load_gives_identical_deterministic_actions_and_states(tmp_path):
    ppo = make_trainer()
    ppo.iterate()  # move the weights and the normaliser away from their initial values
    config = RunConfig(ppo=TINY)
    save_checkpoint(tmp_path / "agent.pt", ppo.agent, config)
    loaded, loaded_config, _ = load_checkpoint(tmp_path / "agent.pt")
    assert loaded_config == config
    env = make_batched_env(config.env_id, 4)
    obs = env.reset(seed=11)
    s1, s2 = ppo.agent.initial_state(4), loaded.initial_state(4)
    starts = torch.ones(4)
    for _ in range(50):
        a1, s1 = ppo.agent.act(obs, s1, starts, deterministic=True)
        a2, s2 = loaded.act(obs, s2, starts, deterministic=True)
        assert torch.equal(a1, a2)
        assert torch.equal(s1.h, s2.h) and torch.equal(s1.c, s2.c)
        result = env.step(a1)
        obs, starts = result.obs, (result.terminated | result.truncated).float()


def test_checkpoint_problems_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(UsageError, match="not a file"):
        load_checkpoint(tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(UsageError, match="damaged or not an rlrnn checkpoint"):
        load_checkpoint(garbage)

    ppo = make_trainer()
    good = tmp_path / "good.pt"
    save_checkpoint(good, ppo.agent, RunConfig(ppo=TINY))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(UsageError):
        load_checkpoint(truncated)

    payload = torch.load(good, weights_only=True)
    config = json.loads(payload["config"])
    config["agent"]["hidden_size"] *= 2  # the weights no longer fit the agent
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(UsageError, match="does not match its agent"):
        load_checkpoint(tmp_path / "mismatch.pt")
    payload["version"] = 99
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(UsageError, match="format version 99"):
        load_checkpoint(tmp_path / "newer.pt")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_running_norm_matches_numpy_statistics():
    norm = RunningNorm(3)
    data = np.random.default_rng(0).normal([1, -2, 5], [0.5, 2, 3], size=(1000, 3))
    for chunk in np.array_split(data, 7):
        norm.update(torch.as_tensor(chunk, dtype=torch.float32))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gamma": 1.5}, "gamma"),
        ({"num_steps": 0}, "num_steps must be >= 1"),
        ({"total_timesteps": 10}, "less than one rollout"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"desired_kl": -0.01}, "desired_kl must be >= 0"),
        ({"solved_lr_scale": 0.0}, r"solved_lr_scale must be in \(0, 1\]"),
        ({"adam_beta2": 1.0}, r"adam_beta2 must be in \[0, 1\)"),
    ],
)
def test_impossible_hyperparameters_are_refused(changes, message):
    with pytest.raises(UsageError, match=message):
        dataclasses.replace(PPOConfig(), **changes)


def test_rlrnn_minibatches_hold_whole_sequences_sb3_ones_need_not():
    """rlrnn replays whole env sequences; SB3 cuts its minibatches from a rollout's steps, as
    rl-baselines3-zoo's pendulum settings do (4 envs x 1024 steps in 32 minibatches)."""
    ppo = dataclasses.replace(PPOConfig(), num_envs=4, num_steps=1024, num_minibatches=32)
    with pytest.raises(UsageError, match=r"num_minibatches \(32\) must divide num_envs \(4\)"):
        RunConfig(ppo=ppo)
    sb3 = RunConfig(agent=AgentConfig(agent="sb3-recurrentppo"), ppo=ppo)
    assert sb3.ppo.batch_size // sb3.ppo.num_minibatches == 128
    with pytest.raises(UsageError, match=r"\(3\) must divide the 4096 steps of a rollout"):
        RunConfig(agent=sb3.agent, ppo=dataclasses.replace(ppo, num_minibatches=3))
    env = make_batched_env("PositionOnlyCartPole-v1", 4)
    agent = build_agent(RunConfig(), 2, 2)
    with pytest.raises(UsageError, match="must divide num_envs"):
        PPOLearner(agent, env, ppo, seed=0)


def test_gsde_is_for_box_actions(tmp_path):
    gsde = dataclasses.replace(PPOConfig(), sde_sample_freq=4)
    with pytest.raises(UsageError, match="sde_sample_freq must be >= 0"):
        dataclasses.replace(gsde, sde_sample_freq=-1)
    for agent in ("gru", "sb3-ppo"):
        config = RunConfig(agent=AgentConfig(agent=agent), ppo=gsde)
        with pytest.raises(UsageError, match="sde_sample_freq is for Box actions"):
            train(config, tmp_path / agent)
        assert not (tmp_path / agent).exists()  # refused before anything was written


def test_the_rollout_writes_into_one_storage_allocated_once():
    """Static addresses from one rollout to the next, as a CUDA graph capture needs."""
    ppo = make_trainer()
    first, _ = ppo.collect_rollout()
    addresses = [t.data_ptr() for t in (first.obs, first.episode_starts, first.actions)]
    obs = first.obs.clone()
    second, _ = ppo.collect_rollout()
    assert [t.data_ptr() for t in (second.obs, second.episode_starts, second.actions)] == addresses
    assert not torch.equal(second.obs, obs)  # written anew, in place


def test_the_bounds_loss_pulls_a_mean_past_the_action_bounds_back_and_leaves_one_inside_alone():
    torch.manual_seed(0)
    ppo = dataclasses.replace(TINY, bound_coef=0.1)
    config = RunConfig(env_id="PositionOnlyPendulum-v1", agent=AgentConfig(agent="gru"), ppo=ppo)
    env = make_batched_env(config.env_id, ppo.num_envs)
    trainer = PPOLearner(build_agent(config, env.obs_dim, 1, continuous=True), env, ppo, seed=0)
    centre, half_range = trainer.action_bounds
    assert (centre.item(), half_range.item()) == (0.0, 2.0)  # the pendulum's torque, +-2
    rollout, _ = trainer.collect_rollout()
    envs = torch.arange(ppo.num_envs)
    bias = trainer.agent.pi_head[-1].bias
    for mean, expected in ((1.9, 0.0), (-7.0, 0.1 * 2.5**2)):  # -7 overshoots -2 by 2.5 x 2
        with torch.no_grad():
            bias.fill_(mean)
            trainer.agent.pi_head[-1].weight.zero_()
        loss, stats = trainer.loss_fn(trainer.agent, rollout, envs, 0.2, ppo, trainer.action_bounds)
        off, _ = trainer.loss_fn(trainer.agent, rollout, envs, 0.2, ppo, None)
        torch.testing.assert_close(loss - off, torch.tensor(expected))
        assert stats["bound_loss"].item() == pytest.approx(expected / 0.1)
    bias.grad = None
    loss.backward()
    assert bias.grad.item() < 0  # descending it raises the mean from -7 towards -2


@pytest.mark.parametrize(
    ("agent", "env_id", "message"),
    [
        ("sb3-ppo", "PositionOnlyPendulum-v1", "bound_coef is for rlrnn's agents, not sb3-ppo"),
        ("gru", "PositionOnlyCartPole-v1", "bound_coef is for Box actions"),
    ],
)
def test_the_bounds_loss_is_for_rlrnns_agents_on_box_actions(tmp_path, agent, env_id, message):
    ppo = dataclasses.replace(TINY, bound_coef=0.1)
    with pytest.raises(UsageError, match=message):
        train(RunConfig(env_id=env_id, agent=AgentConfig(agent=agent), ppo=ppo), tmp_path / "run")
    assert not (tmp_path / "run").exists()
