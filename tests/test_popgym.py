"""POPGym (the optional extra ``.[popgym]``) end to end: a Discrete-observation POPGym env
trains, saves, loads, evaluates and compares; with no reward threshold, nothing is "solved"."""

import os

import pytest

from envs.batched import env_sizes, is_registered
from rlrnn.learning.evaluation import evaluate
from rlrnn.runs.loading import load_checkpoint
from rlrnn.tools.compare import compare
from rlrnn.tools.compare.report import write_report

if os.environ.get("RLRNN_REQUIRE_POPGYM") != "1":
    pytest.importorskip("popgym", reason="the popgym extra is not installed (.[popgym])")

ENV = "popgym:popgym-RepeatPreviousEasy-v0"  # Discrete(4) cards in, Discrete(4) suits out


def test_popgym_env_trains_saves_loads_evaluates_and_compares(tmp_path):
    assert env_sizes(ENV) == (4, 4)  # the card as a one-hot
    specs = compare.plan_runs(
        ["gru"],
        [0],
        ENV,
        tmp_path,
        {"ppo.total_timesteps": 2048, "eval_interval": 1024, "eval_episodes": 2},
    )
    records = compare.run_all(specs, episodes=4, workers=1, show_progress=False)
    run = specs[0].run_dir
    policy, config, _ = load_checkpoint(run / "final.pt")  # the file's own env id
    assert config.env_id == ENV
    returns = evaluate(policy, ENV, episodes=4).returns
    assert ((returns >= -1) & (returns <= 1)).all()  # scored in POPGym's own units
    assert records[0]["summary"]["reward_threshold"] is None
    rows = write_report(tmp_path / "report", records, ENV, 4, "test")
    table = (tmp_path / "report" / "results.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| gru |"))
    assert row.count("| – ") == 6  # success, solved, steps, seconds, stays solved, worst
    assert rows[0].success_rate is None and rows[0].solved_seeds == 0


def test_a_checkpoint_naming_popgym_is_playable_without_env():
    """popgym is an installed extra: naming it in a file imports it (it only registers envs)."""
    assert is_registered(ENV)
    assert not is_registered("popgym:popgym-NoSuchEnv-v0")
