"""The agent zoo, the SB3 reference agents and ``rlrnn compare``, run as a user runs them."""

import csv
import inspect
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from processes import rlrnn
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from envs import PositionOnlyCartPoleEnv
from rlrnn.cli import main
from rlrnn.learning.config import AGENT_NAMES
from rlrnn.learning.evaluation import evaluate
from rlrnn.learning.hyperparams import HYPERPARAMS, default_config
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.sb3 import SB3Policy
from rlrnn.tools.common.seed_stats import iqm
from rlrnn.tools.common.stability import pooled_stays_solved, stability
from rlrnn.tools.compare.evaluations import cached_evaluations, evaluation_key, evaluation_settings
from rlrnn.tools.compare.report import bootstrap_ci

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--total-timesteps", "1024", "--eval-interval", "512", "--episodes", "5"]


def test_every_agent_has_valid_tuned_defaults():
    assert set(HYPERPARAMS) == set(AGENT_NAMES)
    for agent in AGENT_NAMES:
        assert default_config(agent).agent.agent == agent
    assert default_config("lstm2").agent.num_layers == 2
    assert default_config("framestack").agent.frame_stack == 4


def test_train_uses_the_agents_defaults_and_the_command_line_wins(tmp_path):
    run_dir = tmp_path / "fs"
    args = ["train", "--agent", "framestack", "--frame-stack", "3", "--total-timesteps", "1024"]
    code = main([*args, "--eval-interval", "0", "--run-dir", str(run_dir), "--quiet"])
    assert code == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["agent"]["frame_stack"] == 3  # given
    assert config["agent"]["hidden_size"] == default_config("framestack").agent.hidden_size
    agent, _, _ = load_checkpoint(run_dir / "final.pt")
    assert agent.initial_state(2).h.shape == (1, 2, 2 * 2)  # k-1 = 2 past observations of 2


@pytest.mark.parametrize("agent", ["sb3-ppo", "sb3-recurrentppo"])
def test_sb3_agents_train_into_the_same_run_layout_and_load_back(tmp_path, agent):
    run_dir = tmp_path / agent
    args = ["train", "--agent", agent, "--total-timesteps", "1024", "--eval-interval", "512"]
    code = main([*args, "--eval-episodes", "3", "--run-dir", str(run_dir), "--quiet"])
    assert code == 0
    assert {"config.json", "summary.json", "best.pt", "final.pt", "learning_curve.png", "tb"} <= {
        p.name for p in run_dir.iterdir()
    }
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["agent"] == agent and summary["env_steps"] >= 1024
    assert [e["env_steps"] for e in summary["evaluations"]][:2] == [512, 1024]
    policy, config, _ = load_checkpoint(run_dir / "final.pt")
    assert isinstance(policy, SB3Policy) and config.agent.agent == agent
    # The reloaded weights act as the last evaluation of the trained ones did.
    result = evaluate(policy, config.env_id, 3)
    assert result.mean == pytest.approx(summary["final_eval_mean"])
    # ... and through SB3's own evaluator, by the predict protocol.
    mean, _ = evaluate_policy(policy, Monitor(PositionOnlyCartPoleEnv()), n_eval_episodes=2)
    assert 0 < mean <= 500


def test_bootstrap_interval_and_iqm():
    assert iqm(np.arange(8.0)) == pytest.approx(np.mean([2, 3, 4, 5]))
    mean, low, high = bootstrap_ci(np.full((4, 3), 7.0))
    np.testing.assert_allclose([mean, low, high], 7.0)
    rng = np.random.default_rng(1)
    samples = rng.normal(10.0, 2.0, size=(200, 1))
    mean, low, high = bootstrap_ci(samples)
    assert low[0] < 10.0 < high[0] and high[0] - low[0] < 1.0  # ~ 2 * 1.96 * 2 / sqrt(200)
    with_gap = np.array([[1.0, np.nan], [3.0, 5.0]])  # the first seed has no value yet
    mean, _, _ = bootstrap_ci(with_gap)
    np.testing.assert_allclose(mean, [2.0, 5.0])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "report"
    result = rlrnn(
        "compare", "--agents", "mlp", "lstm", "--seeds", "2", "--workers", "2",
        "--out", str(out), *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| mlp | 2 |" in result.stdout and "| lstm | 2 |" in result.stdout
    return out


def near(value: float):
    """results.csv keeps 4 decimals."""
    return pytest.approx(value, abs=1e-4)


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {row["agent"]: row for row in csv.DictReader(f)}


def test_compare_report_matches_its_runs(report):
    rows = read_csv(report / "results.csv")
    assert list(rows) == ["mlp", "lstm"]
    for agent, row in rows.items():
        runs = [report / "runs" / f"{agent}-s{seed}" for seed in (0, 1)]
        summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
        evals = [json.loads((r / "compare_eval.json").read_text()) for r in runs]
        assert all(len(e["final"]) == 5 for e in evals)
        finals = [statistics.mean(e["final"]) for e in evals]
        assert float(row["final_mean"]) == near(statistics.mean(finals))
        assert float(row["final_ci_low"]) <= float(row["final_mean"]) <= float(row["final_ci_high"])
        assert float(row["final_iqm"]) == near(iqm(finals))  # over runs, not pooled episodes
        solved = sum(s["solved_at_steps"] is not None for s in summaries)
        assert int(row["solved_seeds"]) == solved
        assert int(row["parameters"]) == summaries[0]["parameters"]
        held = [stability(s["evaluations"], s["reward_threshold"]) for s in summaries]
        stays = pooled_stays_solved(held)
        assert row["stays_solved"] == ("" if stays is None else str(round(stays, 4)))
        sps = statistics.median(s["steps_per_second"] for s in summaries)
        assert float(row["steps_per_second"]) == near(sps)
        # The evaluation is real: the final checkpoint replays the same returns.
        policy, config, _ = load_checkpoint(runs[0] / "final.pt")
        assert evaluate(policy, config.env_id, 5).returns.tolist() == evals[0]["final"]
    configs = sorted(p.name for p in (report / "configs").iterdir())
    assert configs == ["lstm-s0.json", "lstm-s1.json", "mlp-s0.json", "mlp-s1.json"]
    assert json.loads((report / "configs" / "mlp-s1.json").read_text())["seed"] == 1
    markdown = (report / "results.md").read_text()
    assert "| mlp | 2 |" in markdown and "95% CI" in markdown and "Machine:" in markdown
    image = np.asarray(Image.open(report / "learning_curves.png").convert("L"))
    assert image.shape[1] > 1000 and image.std() > 10  # a drawn figure, not a blank page


def test_compare_again_reuses_runs_and_reproduces_the_numbers(report, tmp_path):
    before = read_csv(report / "results.csv")
    again = rlrnn("compare", "--agents", "mlp", "lstm", "--seeds", "2", "--out", str(report), *TINY)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("(re-used)") == 4
    assert read_csv(report / "results.csv") == before
    # A fresh comparison of the same seeds, in this process, trains the same numbers again.
    fresh = tmp_path / "fresh"
    args = ["compare", "--agents", "lstm", "--seeds", "1", "--workers", "1", "--quiet"]
    assert main([*args, "--out", str(fresh), *TINY]) == 0
    row, old = read_csv(fresh / "results.csv")["lstm"], before["lstm"]
    old_run = json.loads((report / "runs" / "lstm-s0" / "compare_eval.json").read_text())
    new_run = json.loads((fresh / "runs" / "lstm-s0" / "compare_eval.json").read_text())
    assert new_run == old_run
    assert row["parameters"] == old["parameters"]


def test_compare_evaluates_a_run_again_once_it_is_trained_further(report, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(report / "runs" / "mlp-s0", run)
    saved = run / "compare_eval.json"
    # Saved returns under a matching key are re-used: shown by returns no evaluation gives.
    planted = json.loads(saved.read_text()) | {"final": [1.0] * 5}
    saved.write_text(json.dumps(planted))
    args = ["compare", "--runs", str(run), "--episodes", "5", "--quiet", "--out"]
    assert main([*args, str(tmp_path / "before")]) == 0
    assert float(read_csv(tmp_path / "before" / "results.csv")["mlp"]["final_mean"]) == 1.0
    # The case: the finished compare run resumed with more steps, then compared again.
    resume = ["--resume", str(run), "--total-timesteps", "2048", "--quiet"]
    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *resume],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert main([*args, str(tmp_path / "after")]) == 0
    policy, config, _ = load_checkpoint(run / "final.pt")
    fresh = evaluate(policy, config.env_id, 5).returns.tolist()  # the comparison's episodes
    assert json.loads(saved.read_text())["final"] == fresh
    row = read_csv(tmp_path / "after" / "results.csv")["mlp"]
    assert float(row["final_mean"]) == near(statistics.mean(fresh))


def test_saved_returns_are_keyed_on_both_checkpoints_and_every_evaluation_setting(report):
    settings = evaluation_settings("PositionOnlyCartPole-v1", 5)
    # Every argument of evaluate that can change a return is a setting of the key.
    assert set(settings) == set(inspect.signature(evaluate).parameters) - {"agent", "check_every"}
    run = report / "runs" / "lstm-s1"
    key = evaluation_key(run, settings)
    assert {"final_sha256", "best_sha256", "torch"} <= set(key)
    saved = run / "compare_eval.json"
    assert cached_evaluations(saved, key)["key"] == key  # as the comparison saved it
    for name in key:
        assert cached_evaluations(saved, key | {name: "changed"}) == {}, name


def test_compare_adds_finished_runs_and_refuses_ones_from_another_env(report, tmp_path, capsys):
    out = tmp_path / "with-runs"
    run = report / "runs" / "lstm-s0"
    assert main(["compare", "--runs", str(run), "--out", str(out), "--episodes", "5"]) == 0
    assert list(read_csv(out / "results.csv")) == ["lstm"]
    capsys.readouterr()
    code = main(["compare", "--runs", str(run), "--env", "CartPole-v1", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "is from env PositionOnlyCartPole-v1, not CartPole-v1" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agents", "transformer"], "unknown agent 'transformer'"),
        (["--agents", "framestack", "--frame-stack", "0"], "--frame-stack must be >= 1"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--agents", "lstm", "lstm"], "only once"),
        (["--runs", "no/such/run"], "is not a finished run folder"),
        (["--episodes", "0"], "--episodes must be >= 1"),
        (["--full", "--agents", "mlp"], "leave out --agents or --full"),
        (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    ],
)
def test_compare_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["compare", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlrnn compare: error:") and "\n" not in err
    assert message in err
    assert not out.exists()


def test_compare_refuses_an_out_folder_holding_other_configs(report, capsys):
    args = ["compare", "--agents", "mlp", "--seeds", "1", "--out", str(report), *TINY]
    assert main([*args, "--total-timesteps", "2048"]) == 2  # the last --total-timesteps wins
    err = capsys.readouterr().err
    assert err.startswith("rlrnn compare: error:")
    assert "differs in ppo.total_timesteps (1024 -> 2048))" in err


def test_lstm2_and_framestack_train_and_act(tmp_path):
    for agent in ("lstm2", "framestack", "gru", "rnn"):
        run_dir = tmp_path / agent
        args = ["train", "--agent", agent, "--total-timesteps", "1024", "--eval-interval", "0"]
        assert main([*args, "--num-envs", "16", "--run-dir", str(run_dir), "--quiet"]) == 0
        policy, _, _ = load_checkpoint(run_dir / "final.pt")
        actions, _ = policy.act(
            torch.zeros(3, 2), policy.initial_state(3), torch.ones(3), deterministic=True
        )
        assert actions.shape == (3,)


def test_evaluate_py_runs_compare_on_finished_runs(report, tmp_path):
    out = tmp_path / "via-evaluate"
    run = report / "runs" / "mlp-s0"
    args = ["compare", "--runs", str(run), "--out", str(out), "--episodes", "3", "--quiet"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert list(read_csv(out / "results.csv")) == ["mlp"]
