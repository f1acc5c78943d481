"""Learning, for real: memory balances the pole from positions alone; no memory cannot.

The agent judged is a run's ``best.pt``: the checkpoint of its best periodic evaluation within
the 100,000-step budget, re-evaluated here on 100 fresh episodes. The default run checks one
seed of each agent; ``-m slow`` checks the full claim (seeds 0-4).
"""

import dataclasses

import pytest

from rlrnn.checkpoint import load_checkpoint
from rlrnn.config import AgentConfig, RunConfig
from rlrnn.evaluation import evaluate
from rlrnn.training import train

SOLVED = 475.0


def train_and_evaluate(tmp_path, agent: str, seed: int) -> tuple[dict, float]:
    config = RunConfig(seed=seed, eval_interval=8192, agent=AgentConfig(agent=agent))
    summary = train(config, tmp_path / f"{agent}-{seed}", show_progress=False)
    policy, _, _ = load_checkpoint(tmp_path / f"{agent}-{seed}" / "best.pt")
    return summary, evaluate(policy, config.env_id, episodes=100).mean


def test_lstm_balances_the_pole_without_velocities(tmp_path):
    summary, best_mean = train_and_evaluate(tmp_path, "lstm", seed=0)
    assert summary["env_steps"] <= 100_000
    assert summary["solved_at_steps"] is not None
    assert best_mean >= SOLVED


def test_mlp_cannot_balance_without_velocities(tmp_path):
    summary, best_mean = train_and_evaluate(tmp_path, "mlp", seed=0)
    assert summary["best_eval_mean"] < 150
    assert best_mean < 150


@pytest.mark.slow
def test_lstm_solves_for_four_of_five_seeds_and_mlp_for_none(tmp_path):
    lstm = [train_and_evaluate(tmp_path, "lstm", seed)[1] for seed in range(5)]
    mlp = [train_and_evaluate(tmp_path, "mlp", seed)[1] for seed in range(5)]
    assert sum(mean >= SOLVED for mean in lstm) >= 4, lstm
    assert max(mlp) < 150, mlp


def test_config_round_trips_through_json():
    config = dataclasses.replace(
        RunConfig(), seed=5, agent=AgentConfig(agent="gru", pi_hidden=(32, 32))
    )
    assert RunConfig.from_dict(config.to_dict()) == config
