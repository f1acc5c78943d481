"""One host sync per training iteration: counted on the CPU, where a GPU run would wait."""

import dataclasses

import pytest
import torch

from agents import TorchLSTM
from envs import make_batched_env
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.host_syncs import count_host_syncs
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.loading import build_agent
from rlrnn.runs.training import train

TINY = PPOConfig(total_timesteps=512, num_envs=8, num_steps=16, num_minibatches=2, update_epochs=2)


def test_the_counter_sees_every_kind_of_host_read():
    x = torch.arange(6.0)
    with count_host_syncs() as counts:
        x.sum().item()
        bool(x.max() > 2)
        x.tolist()
        x.cpu().numpy()
        x.nonzero()
        torch.tensor([1.0, 2.0])
        torch.full((), 3.0)  # a fill: no host data, not counted
        x * 2
    assert counts == {
        "item": 2,
        "tolist": 1,
        "cpu": 1,
        "numpy": 1,
        "nonzero": 1,
        "tensor from host data": 1,
    }
    assert "tolist" not in torch.Tensor.__dict__  # the methods are put back


@pytest.mark.parametrize(
    ("agent", "backend", "extra"),
    [
        ("lstm", "custom", {}),
        ("lstm", "custom", {"desired_kl": 0.01}),  # the learning rate adapts on the device
        ("lstm", "custom", {"bptt_len": 4}),  # chunks replayed from states kept on the device
        ("lstm", "torch", {}),
        ("gru", "custom", {"normalize_reward": False}),
        ("framestack", "custom", {}),
        ("mlp", "custom", {}),
    ],
)
def test_rollout_and_update_make_no_host_sync(agent, backend, extra, monkeypatch):
    # The torch backend cuts its sequences at every step off the CPU, reading nothing.
    monkeypatch.setattr(TorchLSTM, "cut_on_host", False)
    ppo_config = dataclasses.replace(TINY, **extra)
    config = RunConfig(agent=AgentConfig(agent=agent, backend=backend), ppo=ppo_config)
    torch.manual_seed(0)
    env = make_batched_env(config.env_id, ppo_config.num_envs)
    ppo = PPOLearner(build_agent(config, env.obs_dim, env.num_actions), env, ppo_config, 0)
    ppo.iterate()  # the optimizer's state is made at the first step
    with count_host_syncs() as counts:
        ppo.iterate()
    assert sum(counts.values()) == 0, counts


def test_a_training_run_syncs_once_per_iteration(tmp_path):
    """The loop's one sync (every statistic in one copy) is all an iteration adds."""

    def syncs(iterations: int) -> int:
        ppo_config = dataclasses.replace(TINY, total_timesteps=iterations * TINY.batch_size)
        config = RunConfig(ppo=ppo_config, eval_interval=0, checkpoint_interval=0)
        with count_host_syncs() as counts:
            train(config, tmp_path / f"run{iterations}", show_progress=False)
        return sum(counts.values())

    assert syncs(5) - syncs(2) == 3
