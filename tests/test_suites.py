"""``rlrnn compare --suite memory``: its plan, its summary and its verdicts, and a tiny run."""

import json

import pytest
from processes import rlrnn

from rlrnn.tools.compare_report import AgentResult
from rlrnn.tools.suites import (
    FULL_MEMORY_ENVS,
    MEMORY_AGENTS,
    MEMORY_ENVS,
    plan_suite,
    run_suite,
    separation,
    summary_markdown,
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


def row(agent: str, mean: float, low: float, high: float) -> AgentResult:
    return AgentResult(
        agent, 5, mean, low, high, mean, mean, 0.0, 0, None, None, None, None, 1000.0, 100
    )


def test_the_verdict_needs_the_best_recurrent_interval_above_each_frame_stack():
    rows = {
        "mlp": row("mlp", 40, 38, 42),
        "framestack-k4": row("framestack-k4", 100, 90, 110),
        "framestack-k8": row("framestack-k8", 150, 140, 170),
        "gru": row("gru", 200, 180, 220),
        "lstm": row("lstm", 160, 150, 175),
    }
    assert separation(rows) == {
        "best_recurrent": "gru",
        "framestack-k4": True,
        "framestack-k8": True,
    }
    rows["gru"] = row("gru", 200, 165, 220)  # overlaps k8's [140, 170]
    assert separation(rows)["framestack-k8"] is False
    assert separation({"mlp": rows["mlp"]}) is None
    table = summary_markdown({"Env-v1": rows}, 100, "rlrnn compare --suite memory")
    assert "| gru | 200.0 [165.0, 220.0] |" in table
    assert "- Env-v1: gru vs framestack-k4: above, framestack-k8: overlapping" in table


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
