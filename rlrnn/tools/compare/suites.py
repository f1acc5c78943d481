"""``rlrnn compare --suite memory | continuous``: where a fixed window of frames is not enough,
and control with Box actions from positions alone.

On the clean position-only cart-pole four stacked frames hold all the history the task needs. The
memory suite trains the same agents on cart-poles whose observations are noisy or flicker
(:mod:`envs.variants`), where a policy has to filter a signal over more steps than any fixed
window keeps, over several seeds, in one command. It writes one report per env (the
:mod:`rlrnn.tools.compare.compare` report: curves, results table, configs) in ``<out>/<env>/`` and
one
summary of all of them in ``<out>/``: ``summary.md``, ``summary.csv`` and ``summary.json``
(agent x env: final return, mean [95% bootstrap CI over seeds], no interval for one seed), and
for each env the verdict of the best recurrent agent against each frame stack: above or below
(the 95% intervals apart), overlapping (and which mean is ahead), or, with one seed, only which
mean is ahead.

The continuous suite trains mlp, a frame stack, gru, lstm and sb3-contrib's ``RecurrentPPO`` on
the two Box-action envs whose velocities are hidden: the continuous-force cart-pole and the
position-only pendulum, with each env's defaults
(:data:`rlrnn.learning.hyperparams.ENV_HYPERPARAMS`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlrnn.errors import UsageError
from rlrnn.files import atomic_write_text, check_no_link_below, make_writable_dir
from rlrnn.learning.memory import check_acting_memory
from rlrnn.runs.folder import RunFolder
from rlrnn.tools.compare.compare import (
    RunSpec,
    check_out_dir,
    default_workers,
    plan_runs,
    prepare_runs,
    run_all,
)
from rlrnn.tools.compare.report import AgentResult, mean_and_interval, write_report

SUITES = ("memory", "continuous")
# (label, agent, frame-stack k): the frame stack twice, at the usual window and at twice it.
MEMORY_AGENTS: tuple[tuple[str, str, int | None], ...] = (
    ("mlp", "mlp", None),
    ("framestack-k4", "framestack", 4),
    ("framestack-k8", "framestack", 8),
    ("gru", "gru", None),
    ("mingru", "mingru", None),
    ("lstm", "lstm", None),
)
RECURRENT = ("gru", "mingru", "lstm")
FRAME_STACKS = ("framestack-k4", "framestack-k8")
MEMORY_ENVS = ("NoisyPositionOnlyCartPoleEasy-v1", "FlickeringPositionOnlyCartPole-v1")
FULL_MEMORY_ENVS = (
    *MEMORY_ENVS,
    "NoisyPositionOnlyCartPoleMedium-v1",
    "NoisyPositionOnlyCartPoleHard-v1",
    # The agent also sees its last push: what a Kalman filter integrates into the velocities.
    "NoisyPositionOnlyCartPoleEasy-LastAction-v1",
)
TOTAL_TIMESTEPS = 300_000
EVAL_INTERVAL = 20_480  # 15 periodic evaluations a run: they would cost more than training
CONTINUOUS_AGENTS: tuple[tuple[str, str, int | None], ...] = (
    ("mlp", "mlp", None),
    ("framestack-k4", "framestack", 4),
    ("gru", "gru", None),
    ("lstm", "lstm", None),
    ("sb3-recurrentppo", "sb3-recurrentppo", None),
)
CONTINUOUS_ENVS = ("ContinuousPositionOnlyCartPole-v1", "PositionOnlyPendulum-v1")
# suite -> (its agents, its envs, its envs with --full, env steps a run)
PLANS = {
    "memory": (MEMORY_AGENTS, MEMORY_ENVS, FULL_MEMORY_ENVS, TOTAL_TIMESTEPS),
    "continuous": (CONTINUOUS_AGENTS, CONTINUOUS_ENVS, CONTINUOUS_ENVS, 200_000),
}


@dataclass(frozen=True)
class SuiteRun(RunSpec):
    """One (env, agent, seed) run of a suite; ``name`` tells the two frame stacks apart."""

    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.config.env_id} {self.name} s{self.config.seed}"


def plan_suite(
    out_dir: Path,
    seeds: list[int],
    full: bool,
    overrides: dict[str, Any],
    suite: str = "memory",
) -> list[SuiteRun]:
    """The runs of ``suite``, env by env (the default envs first), in
    ``<out>/<env>/runs/<label>-s<seed>/``."""
    agents, envs, full_envs, total_timesteps = PLANS[suite]
    overrides = {
        "ppo.total_timesteps": total_timesteps,
        "eval_interval": EVAL_INTERVAL,
        **overrides,
    }
    runs = []
    for env_id in full_envs if full else envs:
        for name, agent, k in agents:
            for spec in plan_runs([agent], seeds, env_id, out_dir / env_id, overrides, k):
                run_dir = out_dir / env_id / "runs" / f"{name}-s{spec.config.seed}"
                runs.append(SuiteRun(spec.config, run_dir, name))
    return runs


def run_suite(
    suite: str,
    out_dir: Path,
    seeds: list[int],
    full: bool,
    overrides: dict[str, Any],
    episodes: int,
    workers: int | None,
    show_progress: bool,
    command: str,
) -> str:
    """Train (or re-use, or resume) every run of ``suite``, evaluate, and write its reports;
    returns the summary's markdown. Ctrl-C / SIGTERM stop every run cleanly
    (:class:`rlrnn.errors.Interrupted`, saying that ``command`` resumes)."""
    if suite not in SUITES:
        raise UsageError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    runs = plan_suite(out_dir, seeds, full, overrides, suite)
    check_out_dir(out_dir)
    for env_id in {run.config.env_id for run in runs}:  # each env's report folder
        check_no_link_below(out_dir, out_dir / env_id / "configs", "report folder")
    for run in runs:
        check_acting_memory(run.config, run.config.env_id, episodes, "cpu", "episodes")
    prepare_runs(runs)  # nothing is written before this point
    workers = workers or default_workers(len(runs))
    records = run_all(runs, episodes, workers, show_progress=show_progress, resume_command=command)
    out_dir = make_writable_dir(out_dir, "report folder")
    return write_suite_report(out_dir, runs, records, episodes, command, suite)


def write_suite_report(
    out_dir: Path,
    runs: list[SuiteRun],
    records: list[dict[str, Any]],
    episodes: int,
    command: str,
    suite: str = "memory",
) -> str:
    """Each env's report in ``<out>/<env>/`` and the summary in ``<out>/``; returns the
    summary's markdown."""
    by_env: dict[str, list[dict[str, Any]]] = {}
    for run, record in zip(runs, records, strict=True):
        by_env.setdefault(run.config.env_id, []).append(record | {"agent": run.name})
    table: dict[str, dict[str, Any]] = {}
    for env_id, env_records in by_env.items():
        check_no_link_below(out_dir, out_dir / env_id, "report folder")  # else writes land outside
        env_dir = make_writable_dir(out_dir / env_id, "report folder")
        rows = write_report(env_dir, env_records, env_id, episodes, command)
        table[env_id] = {row.agent: row for row in rows}
    markdown = summary_markdown(table, episodes, command, suite)
    atomic_write_text(out_dir / "summary.md", markdown)
    atomic_write_text(out_dir / "summary.csv", summary_csv(table))
    data = {
        "command": command,
        "episodes": episodes,
        "results": {e: {a: r.__dict__ for a, r in rows.items()} for e, rows in table.items()},
        "separated": {e: separation(rows) for e, rows in table.items()},
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(data, indent=1))
    return markdown


def separation(rows: dict[str, AgentResult]) -> dict[str, Any] | None:
    """The best recurrent agent (by final mean) against each frame stack: its verdict
    (:func:`verdict`) under the stack's name. None when the suite lacks one of them."""
    recurrent = [rows[a] for a in RECURRENT if a in rows]
    stacks = [rows[a] for a in FRAME_STACKS if a in rows]
    if not recurrent or not stacks:
        return None
    best = max(recurrent, key=lambda r: r.final_mean)
    return {"best_recurrent": best.agent, **{s.agent: verdict(best, s) for s in stacks}}


def verdict(agent: AgentResult, other: AgentResult) -> dict[str, Any]:
    """``agent`` against ``other``: ``relation`` is "above" or "below" when their 95% intervals
    lie apart, "overlapping" when they do not, "no interval" when either has one seed;
    ``difference`` is ``agent``'s mean less ``other``'s (its sign says which is ahead)."""
    difference = agent.final_mean - other.final_mean
    low, high = agent.final_ci_low, agent.final_ci_high
    other_low, other_high = other.final_ci_low, other.final_ci_high
    if low is None or high is None or other_low is None or other_high is None:
        relation = "no interval"
    elif low > other_high:
        relation = "above"
    elif high < other_low:
        relation = "below"
    else:
        relation = "overlapping"
    return {"relation": relation, "difference": difference}


def describe_verdict(found: dict[str, Any]) -> str:
    """A :func:`verdict` in words, e.g. ``below, 36.6 behind (95% intervals apart)``."""
    gap = abs(found["difference"])
    ahead = (
        "level with it"
        if gap < 0.05
        else f"{gap:.1f} {'ahead' if found['difference'] > 0 else 'behind'}"
    )
    return {
        "above": f"above, {ahead} (95% intervals apart)",
        "below": f"below, {ahead} (95% intervals apart)",
        "overlapping": f"overlapping 95% intervals, {ahead} on the mean",
        "no interval": f"{ahead} on the mean (1 seed, no interval)",
    }[found["relation"]]


def summary_markdown(
    table: dict[str, dict[str, AgentResult]], episodes: int, command: str, suite: str = "memory"
) -> str:
    envs = list(table)
    agents = list(dict.fromkeys(a for rows in table.values() for a in rows))
    lines = [
        f"# {suite.capitalize()} suite: final return, mean [95% CI] over seeds",
        "",
        "| agent | " + " | ".join(envs) + " |",
        "|---|" + "---|" * len(envs),
    ]
    for agent in agents:
        cells = []
        for env_id in envs:
            r = table[env_id].get(agent)
            cells.append("–" if r is None else mean_and_interval(r))
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Best recurrent agent (by final mean) against each frame stack: above or below when the"
        " 95% intervals lie apart, else overlapping; and by how much its mean is ahead or behind:",
        "",
    ]
    for env_id in envs:
        s = separation(table[env_id])
        if s is not None:
            best = table[env_id][s["best_recurrent"]]
            verdicts = "; ".join(
                f"vs {k} ({table[env_id][k].final_mean:.1f}): {describe_verdict(v)}"
                for k, v in s.items()
                if k != "best_recurrent"
            )
            lines.append(f"- {env_id}: {best.agent} ({best.final_mean:.1f}) {verdicts}")
    seeds = next(iter(next(iter(table.values())).values())).seeds
    interval = (
        "the interval is a percentile bootstrap over seeds"
        if seeds > 1
        else "no interval: a bootstrap over one seed would only repeat its value"
    )
    lines += [
        "",
        f"Final weights ({RunFolder.CHECKPOINTS['final']}), deterministic actions, {episodes}"
        f" fresh episodes per seed, {seeds} seed{'s' * (seeds != 1)}; {interval}. Each env's"
        " curves and full table are in its folder.",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines) + "\n"


def summary_csv(table: dict[str, dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["env_id", "agent", "seeds", "final_mean", "final_ci_low", "final_ci_high"])
    for env_id, rows in table.items():
        for r in rows.values():
            values = (r.final_mean, r.final_ci_low, r.final_ci_high)  # no interval: empty
            writer.writerow(
                [env_id, r.agent, r.seeds] + ["" if v is None else round(v, 4) for v in values]
            )
    return buffer.getvalue()
