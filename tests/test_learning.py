"""Learning, for real: memory balances the pole from positions alone and stays solved; no memory
cannot balance it.

The agent judged is a run's ``final.pt`` (the weights a user keeps), re-evaluated here on 100
fresh episodes after the 100,000-step budget; ``best.pt`` is only a safety net. The default run
checks one seed of the ``lstm`` and the ``mlp``; ``-m slow`` checks every memory agent over
seeds 0-19 on two float paths, as ``benchmarks/stability.py`` measures them for
docs/stability.md.
"""

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from rlrnn.learning.config import AgentConfig, RunConfig
from rlrnn.learning.evaluation import evaluate
from rlrnn.learning.hyperparams import default_config
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.training import train
from rlrnn.tools.common.stability import stability

SOLVED = 475.0
ROOT = Path(__file__).resolve().parents[1]


def train_and_evaluate(
    tmp_path, agent: str, seed: int, eval_interval: int = 8192
) -> tuple[dict, float]:
    """Train ``agent``'s defaults; the summary and the final weights' 100-episode mean."""
    config = dataclasses.replace(default_config(agent), seed=seed, eval_interval=eval_interval)
    summary = train(config, tmp_path / f"{agent}-{seed}", show_progress=False)
    policy, _, _ = load_checkpoint(tmp_path / f"{agent}-{seed}" / "final.pt")
    return summary, evaluate(policy, config.env_id, episodes=100).mean


def test_lstm_balances_the_pole_without_velocities_and_stays_solved(tmp_path):
    summary, final_mean = train_and_evaluate(tmp_path, "lstm", seed=0)
    assert summary["env_steps"] <= 100_000
    assert summary["solved_at_steps"] is not None
    held = stability(summary["evaluations"], SOLVED)
    assert held.after_solve >= 3 and held.stays_solved == 1.0, summary["evaluations"]
    assert final_mean >= SOLVED


def test_mlp_cannot_balance_without_velocities(tmp_path):
    summary, final_mean = train_and_evaluate(tmp_path, "mlp", seed=0)
    assert summary["best_eval_mean"] < 150
    assert final_mean < 150


def stability_report(
    tmp_path, agents, float_path, seeds=range(20), budget: int = 100_000, env_id: str = ""
) -> dict:
    """benchmarks/stability.py as the docs run it (seeds 0-19, 100k steps, the position-only
    cart-pole unless given), in a process of its own so that ``ATEN_CPU_CAPABILITY`` picks
    torch's kernels; its report, checked for what ran."""
    out = tmp_path / "stability.json"
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if float_path == "default":
        env["ATEN_CPU_CAPABILITY"] = "default"
    seeds = [str(seed) for seed in seeds]
    command = [sys.executable, str(ROOT / "benchmarks" / "stability.py"), "--agents", *agents]
    command += ["--seeds", *seeds, "--budgets", str(budget), "--out", str(out)]
    command += ["--env", env_id] if env_id else []
    subprocess.run(command, env=env, check=True, capture_output=True)
    report = json.loads(out.read_text())
    assert report["float_path"].startswith(float_path)
    assert [row["agent"] for row in report["rows"]] == list(agents)
    return report


@pytest.mark.slow
@pytest.mark.parametrize("float_path", ["automatic", "default"])
def test_mlp_final_weights_fail_on_seeds_0_to_19_on_two_float_paths(tmp_path, float_path):
    """Without memory the task cannot be solved (docs/compare.md): no seed comes near."""
    report = stability_report(tmp_path, ("mlp",), float_path)
    finals = [run["final"] for run in report["runs"]]
    assert len(finals) == 20 and max(finals) < 150, finals


# What seeds 0-19 at the default budget support on each float path (docs/stability.md, from
# benchmarks/results/stability_100k_*.json), per agent: (final weights >= 475 on at least this
# many of 20 seeds, pooled share of evaluations after a first solve that stay solved). Each bound
# sits at the low tail of what both paths measured together (e.g. lstm and gru: 32 of 40 seeds,
# and a binomial of 20 seeds at 0.8 falls below 12 about 1 time in 100), so that a regression
# fails and another machine's rounding does not. None of them is the docs' target.
BOUNDS = {
    "lstm": (12, 0.65),
    "gru": (12, 0.65),
    "lstm2": (16, 0.80),  # 38 of 40; below 16 of 20 at 0.95: 0.3 in 100
    "framestack": (9, 0.50),  # 28 of 40; below 9 of 20 at 0.7: 0.5 in 100
    "rnn": (2, 0.25),  # 14 of 40; below 2 of 20 at 0.35: 0.2 in 100
}


@pytest.mark.slow
@pytest.mark.parametrize("float_path", ["automatic", "default"])
@pytest.mark.parametrize(
    "agents", [("lstm", "gru"), ("lstm2", "framestack", "rnn")], ids=["lstm-gru", "others"]
)
def test_memory_agents_over_seeds_0_to_19_on_two_float_paths(tmp_path, agents, float_path):
    """The final weights of 20 seeds and the share of evaluations after a first solve that
    stay solved, pooled, for each agent."""
    report = stability_report(tmp_path, agents, float_path)
    for row in report["rows"]:
        final_solved, stays_solved = BOUNDS[row["agent"]]
        assert row["seeds"] == 20
        assert row["final_ok"] >= final_solved, row
        assert (row["stays_solved"] or 0.0) >= stays_solved, row


# mingru's final weights over seeds 0-9 at 200k steps on its defaults (docs/parallel-time.md,
# from benchmarks/results/mingru_200k_*.json): 8 of 10 seeds reached 475 on the automatic float
# path and 9 of 10 on scalar kernels, 17 of 20; a binomial of 10 seeds at 0.85 falls below 6
# about 1 time in 100, so that a regression fails and another machine's rounding does not.
MINGRU_FINAL_SOLVED = 6  # of 10 seeds, on each float path


@pytest.mark.slow
@pytest.mark.parametrize("float_path", ["automatic", "default"])
def test_mingru_final_weights_over_seeds_0_to_9_at_200k_on_two_float_paths(tmp_path, float_path):
    """The scan core solves the position-only cart-pole from its defaults."""
    report = stability_report(tmp_path, ("mingru",), float_path, range(10), 200_000)
    (row,) = report["rows"]
    assert row["seeds"] == 10 and row["budget"] == 200_000
    assert row["final_ok"] >= MINGRU_FINAL_SOLVED, row


def test_config_round_trips_through_json():
    config = dataclasses.replace(
        RunConfig(), seed=5, agent=AgentConfig(agent="gru", pi_hidden=(32, 32))
    )
    assert RunConfig.from_dict(config.to_dict()) == config


# The continuous-force cart-pole over seeds 0-9 at its defaults' 200k steps (docs/continuous.md,
# from benchmarks/results/stability_continuous_cartpole_200k_*.json): final weights >= 475 on 10
# and 9 of 10 seeds for lstm (19 of 20), 8 and 9 for gru (17 of 20); of the evaluations after a
# first solve 92% and 85% stayed solved for lstm, 63% and 82% for gru. A binomial of 10 seeds at
# 0.9 falls below 7 about 1 time in 80, at 0.85 below 6 about 1 in 100: bounds that a regression
# fails and another machine's rounding does not.
CONTINUOUS_BOUNDS = {"lstm": (7, 0.6), "gru": (6, 0.45)}


@pytest.mark.slow
@pytest.mark.parametrize("float_path", ["automatic", "default"])
def test_continuous_cartpole_over_seeds_0_to_9_on_two_float_paths(tmp_path, float_path):
    """Box actions balance the pole from positions: a Gaussian head on lstm and gru."""
    env_id = "ContinuousPositionOnlyCartPole-v1"
    agents = ("lstm", "gru")
    report = stability_report(tmp_path, agents, float_path, range(10), 200_000, env_id)
    assert {run["env_id"] for run in report["runs"]} == {env_id}
    for row in report["rows"]:
        final_solved, stays_solved = CONTINUOUS_BOUNDS[row["agent"]]
        assert row["seeds"] == 10 and row["solved"] == 10, row
        assert row["final_ok"] >= final_solved, row
        assert (row["stays_solved"] or 0.0) >= stays_solved, row


# lstm and gru on the position-only pendulum's defaults over seeds 0-9 at 200k steps, on each
# float path (docs/continuous.md, from benchmarks/results/stability_pendulum_bounds_*.json): gru's
# final weights reach -200 on at least 9 of 10 seeds, the target; lstm's on 8 and 7. lstm's
# count bound leaves room for another CPU's rounding; its median bound catches a return to the
# defaults before the bounds loss, when lstm's median final was -201 and -202 (now -189, -184).
PENDULUM_OK = {"gru": 9, "lstm": 5}
PENDULUM_MEDIAN = -200.0


@pytest.mark.slow
@pytest.mark.parametrize("float_path", ["automatic", "default"])
def test_pendulum_over_seeds_0_to_9_on_two_float_paths(tmp_path, float_path):
    """The pendulum swung up from cos and sin alone: gSDE, 64-step rollouts and a bounds loss."""
    env_id = "PositionOnlyPendulum-v1"
    agents = ("lstm", "gru")
    report = stability_report(tmp_path, agents, float_path, range(10), 200_000, env_id)
    assert {run["env_id"] for run in report["runs"]} == {env_id}
    for row in report["rows"]:
        assert row["seeds"] == 10, row
        assert row["final_ok"] >= PENDULUM_OK[row["agent"]], row
        assert statistics.median(row["finals"]) >= PENDULUM_MEDIAN, row
