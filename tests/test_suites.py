"""``rlrnn compare --suite memory``: its plan, its summary and its verdicts, and a tiny run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from processes import rlrnn

from rlrnn.tools.compare.report import AgentResult, plot_learning_curves
from rlrnn.tools.compare.suites import (
    EVAL_INTERVAL,
    FULL_MEMORY_ENVS,
    MEMORY_AGENTS,
    MEMORY_ENVS,
    TOTAL_TIMESTEPS,
    plan_suite,
    run_suite,
    separation,
    summary_csv,
    summary_markdown,
    verdict,
)


def test_plan_covers_envs_agents_and_seeds_in_distinct_folders(tmp_path):
    runs = plan_suite(tmp_path, [0, 1, 2], full=False, overrides={})
    assert len(runs) == len(MEMORY_ENVS) * len(MEMORY_AGENTS) * 3
    assert len({r.run_dir for r in runs}) == len(runs) == len({r.label for r in runs})
    stacks = {
        r.name: r.config.agent.frame_stack for r in runs if r.config.agent.agent == "framestack"
    }
    assert stacks == {"framestack-k4": 4, "framestack-k8": 8}
    assert {r.config.ppo.total_timesteps for r in runs} == {300_000}
    first = runs[0]
    assert first.run_dir == tmp_path / MEMORY_ENVS[0] / "runs" / "mlp-s0"
    full = plan_suite(tmp_path, [0], full=True, overrides={"ppo.total_timesteps": 4096})
    assert [r.config.env_id for r in full[:: len(MEMORY_AGENTS)]] == list(FULL_MEMORY_ENVS)
    assert {r.config.ppo.total_timesteps for r in full} == {4096}


def test_the_continuous_suite_plans_box_action_envs_with_their_defaults(tmp_path):
    from rlrnn.learning.hyperparams import ENV_HYPERPARAMS
    from rlrnn.tools.compare.suites import CONTINUOUS_AGENTS, CONTINUOUS_ENVS

    runs = plan_suite(tmp_path, [0, 1], full=False, overrides={}, suite="continuous")
    assert len(runs) == len(CONTINUOUS_ENVS) * len(CONTINUOUS_AGENTS) * 2
    assert [r.config.env_id for r in runs[:: 2 * len(CONTINUOUS_AGENTS)]] == list(CONTINUOUS_ENVS)
    assert {r.name for r in runs} == {name for name, _, _ in CONTINUOUS_AGENTS}
    assert {r.config.ppo.total_timesteps for r in runs} == {200_000}
    pendulum = ENV_HYPERPARAMS["PositionOnlyPendulum-v1"]["ppo"]
    for r in runs:
        if r.config.env_id == "PositionOnlyPendulum-v1" and r.name in ("gru", "lstm"):
            assert r.config.ppo.gamma == pendulum["gamma"], r.label


def row(agent: str, mean: float, low: float | None, high: float | None, seeds: int = 5):
    return AgentResult(
        agent, seeds, mean, low, high, mean, mean, 0.0, 0, None, None, None, None, 1000.0, 100
    )


def test_the_verdict_says_above_below_or_overlapping_and_which_mean_is_ahead():
    rows = {
        "mlp": row("mlp", 40, 38, 42),
        "framestack-k4": row("framestack-k4", 100, 90, 110),
        "framestack-k8": row("framestack-k8", 150, 140, 170),
        "gru": row("gru", 200, 180, 220),
        "lstm": row("lstm", 160, 150, 175),
    }
    above = {"relation": "above", "difference": 100.0}
    assert separation(rows) == {
        "best_recurrent": "gru",
        "framestack-k4": above,
        "framestack-k8": {"relation": "above", "difference": 50.0},
    }
    rows["gru"] = row("gru", 200, 165, 220)  # overlaps k8's [140, 170]
    assert separation(rows)["framestack-k8"] == {"relation": "overlapping", "difference": 50.0}
    assert separation({"mlp": rows["mlp"]}) is None
    table = summary_markdown({"Env-v1": rows}, 100, "rlrnn compare --suite memory")
    assert "| gru | 200.0 [165.0, 220.0] |" in table
    assert (
        "- Env-v1: gru (200.0) vs framestack-k4 (100.0): above, 100.0 ahead (95% intervals"
        " apart); vs framestack-k8 (150.0): overlapping 95% intervals, 50.0 ahead on the mean"
    ) in table


def test_a_recurrent_agent_behind_the_frame_stack_is_called_behind():
    # The case: gru 28.2 against framestack k=8 at 64.8 was called "overlapping".
    rows = {
        "framestack-k4": row("framestack-k4", 30.0, 27.0, 33.0),
        "framestack-k8": row("framestack-k8", 64.8, 60.1, 69.0),
        "gru": row("gru", 28.2, 26.0, 31.0),
        "lstm": row("lstm", 25.0, 20.0, 29.0),
    }
    verdicts = separation(rows)
    assert verdicts["framestack-k8"]["relation"] == "below"
    assert verdicts["framestack-k8"]["difference"] == pytest.approx(-36.6)
    assert verdicts["framestack-k4"]["relation"] == "overlapping"
    table = summary_markdown({"Env-v1": rows}, 100, "test")
    assert "vs framestack-k8 (64.8): below, 36.6 behind (95% intervals apart)" in table
    assert "vs framestack-k4 (30.0): overlapping 95% intervals, 1.8 behind on the mean" in table


def test_one_seed_prints_no_interval():
    rows = {
        "framestack-k8": row("framestack-k8", 64.8, None, None, seeds=1),
        "gru": row("gru", 28.2, None, None, seeds=1),
    }
    table = summary_markdown({"Env-v1": rows}, 100, "test")
    assert "| gru | 28.2 (1 seed, no interval) |" in table
    assert "vs framestack-k8 (64.8): 36.6 behind on the mean (1 seed, no interval)" in table
    assert "[28.2, 28.2]" not in table and "1 seed;" in table
    assert summary_csv({"Env-v1": rows}).splitlines()[1:] == [
        "Env-v1,framestack-k8,1,64.8,,",
        "Env-v1,gru,1,28.2,,",
    ]


def fake_records(env_steps: list[list[int]], finals: list[float]) -> list[dict]:
    """One seed's record per entry: its evaluations at ``env_steps`` and its final return."""
    records = []
    for seed, (steps, final) in enumerate(zip(env_steps, finals, strict=True)):
        evaluations = [
            {"env_steps": s, "train_seconds": 1.0 + s / 1000, "mean_return": final} for s in steps
        ]
        summary = {"evaluations": evaluations, "reward_threshold": None, "solved_at_steps": None}
        records.append({"seed": seed, "summary": summary, "final_returns": [final]})
    return records


@pytest.mark.parametrize("seeds", [1, 3])
def test_curves_of_one_evaluation_per_run_are_drawn(tmp_path, seeds):
    """A line through one point draws nothing: each agent's single point must show."""
    groups = {
        "gru": fake_records([[4096]] * seeds, [100.0] * seeds),
        "framestack-k8": fake_records([[4096]] * seeds, [200.0 + s for s in range(seeds)]),
    }
    path = tmp_path / "curves.png"
    plot_learning_curves(groups, "Env-v1", None, path)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    axes = image[: int(image.shape[0] * 0.8)]  # above the legend, which shows the colours too
    for color in ((31, 119, 180), (255, 127, 14)):  # tab10's first two: gru, framestack-k8
        near = (np.abs(axes - color).sum(-1) < 40).sum()
        assert near > 50, (color, near)  # a marker in each panel, not an empty axes


@pytest.mark.slow  # ten tiny runs: about 30 s on an idle 2-core CPU
def test_a_tiny_suite_writes_each_envs_report_and_the_summary(tmp_path):
    overrides = {"ppo.total_timesteps": 1024, "eval_interval": 512, "eval_episodes": 2}
    markdown = run_suite("memory", tmp_path, [0], False, overrides, 2, 2, False, "test")
    for env_id in MEMORY_ENVS:
        assert (tmp_path / env_id / "results.md").is_file()
        assert (tmp_path / env_id / "learning_curves.png").is_file()
        assert env_id in markdown
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["results"][MEMORY_ENVS[0]]) == {name for name, _, _ in MEMORY_AGENTS}
    assert (tmp_path / "summary.md").read_text() == markdown


def test_suite_refuses_options_that_choose_envs_or_agents(tmp_path):
    done = rlrnn("compare", "--suite", "memory", "--agents", "mlp", "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rlrnn compare: error: --suite chooses the envs and agents; leave out --agents"
    ]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize("float_path", ["automatic", "default"])
@pytest.mark.parametrize(
    "env_id", ["NoisyPositionOnlyCartPoleEasy-v1", "FlickeringPositionOnlyCartPole-v1"]
)
def test_gru_beats_a_window_of_8_frames_over_10_seeds_on_two_float_paths(
    tmp_path, env_id, float_path
):
    """docs/memory.md's verdict, from the runs the suite makes (its budget, its evaluation
    schedule): gru's final weights over seeds 0-9 lie above framestack k = 8's, 95% intervals
    apart, on the noisy and the flickering cart-pole, on each float path."""
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if float_path == "default":
        env["ATEN_CPU_CAPABILITY"] = "default"
    out = tmp_path / "report"
    command = ["compare", "--env", env_id, "--agents", "gru", "framestack", "--frame-stack", "8"]
    command += ["--seeds", "10", "--total-timesteps", str(TOTAL_TIMESTEPS)]
    command += ["--eval-interval", str(EVAL_INTERVAL), "--out", str(out), "--quiet"]
    subprocess.run([sys.executable, "-m", "rlrnn.cli", *command], env=env, check=True)
    rows = {
        r["agent"]: AgentResult(**r)
        for r in json.loads((out / "report.json").read_text())["results"]
    }
    found = verdict(rows["gru"], rows["framestack"])
    assert found["relation"] == "above", (rows, found)
