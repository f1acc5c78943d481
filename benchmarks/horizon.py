"""Do the cores hold their state past the horizon they trained on? Train on 500-step episodes,
judge the final weights on 5,000-step episodes.

A gated linear recurrence (``mingru``: the gates read the input only) is argued to be monostable:
with no input its state decays to one fixed point, so it may fail to hold a state over horizons
longer than it trained on. This trains each core on each env with its defaults, then evaluates
``final.pt`` on ``--episodes`` episodes with the env's 500-step limit and with
``--long-steps`` (return / limit: the share of the episode balanced), and records one long
episode's hidden state for a figure:

    python benchmarks/horizon.py --out benchmarks/results/horizon_automatic.json \\
        --figure docs/horizon.png
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from provenance import provenance  # benchmarks/, beside this script
from stability import variant_config  # benchmarks/, beside this script

from agents.registry import AGENTS
from envs.batched import make_batched_env
from rlrnn.files import atomic_write_text, save_figure
from rlrnn.learning.acting import Step, step_policy
from rlrnn.learning.evaluation import evaluate
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.training import train
from rlrnn.tools.compare.workers import Stopped, run_tasks

CORES = ("lstm", "gru", "mingru")
ENVS = {  # env -> env steps of training (the memory suite's budget for the noisy one)
    "PositionOnlyCartPole-v1": 100_000,
    "NoisyPositionOnlyCartPoleEasy-v1": 300_000,
}
TRACE_STEPS = 5_000


def hidden_trace(policy: Any, env_id: str, steps: int) -> dict[str, list[float]]:
    """One deterministic episode of up to ``steps`` steps: the pole angle and the last layer's
    hidden state (its norm and first four units) at every step."""
    env = make_batched_env(env_id, 1, "cpu", steps)
    trace: dict[str, list[float]] = {"angle": [], "norm": [], "units": []}

    def record(step: Step) -> bool:
        h = step.state.h[-1, 0]
        trace["angle"].append(float(step.obs[0, -1]))
        trace["norm"].append(float(h.norm()))
        trace["units"].append([round(float(v), 4) for v in h[:4]])
        return not bool(step.result.terminated[0] | step.result.truncated[0])

    try:
        step_policy(policy, env, record, seed=10_000, max_steps=steps)
    finally:
        env.close()
    return trace


def run(job: tuple[str, str, int], episodes: int, long_steps: int) -> dict[str, Any]:
    agent, env_id, seed = job
    config = variant_config(agent, f"--env {env_id}", ENVS[env_id], seed)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(config, Path(tmp), show_progress=False)
        policy, _, _ = load_checkpoint(Path(tmp) / "final.pt")
        short = evaluate(policy, env_id, episodes)
        long = evaluate(policy, env_id, episodes, max_episode_steps=long_steps)
        trace = hidden_trace(policy, env_id, long_steps) if seed == 0 else None
    return {
        "agent": agent,
        "env_id": env_id,
        "seed": seed,
        "budget": ENVS[env_id],
        "solved_at_steps": summary["solved_at_steps"],
        "short_steps": 500,
        "short_mean": float(short.mean),
        "long_steps": long_steps,
        "long_mean": float(long.mean),
        "long_returns": [float(r) for r in long.returns],
        "trace": trace,
    }


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traced = [r for r in records if r["trace"]]
    envs = list(dict.fromkeys(r["env_id"] for r in traced))
    agents = list(dict.fromkeys(r["agent"] for r in traced))
    fig, axes = plt.subplots(
        len(agents), len(envs), figsize=(6 * len(envs), 2.4 * len(agents)), squeeze=False
    )
    for i, agent in enumerate(agents):
        for j, env_id in enumerate(envs):
            ax = axes[i][j]
            found = [r for r in traced if r["agent"] == agent and r["env_id"] == env_id]
            if not found:
                ax.set_axis_off()
                continue
            trace = found[0]["trace"]
            steps = range(len(trace["norm"]))
            ax.plot(steps, [u for u in trace["units"]], lw=0.6)
            ax.plot(steps, trace["norm"], color="black", lw=0.8, label="|h|")
            ax.axvline(500, color="red", ls="--", lw=0.8, label="training horizon")
            ax.set_title(f"{agent}, {env_id} (seed 0): {len(trace['norm']):,} steps", fontsize=9)
            ax.set_xlabel("step")
            ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(
        "Hidden state over one long episode: the last layer's |h| and first four units",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", nargs="+", default=list(CORES))
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=20, help="episodes per evaluation")
    parser.add_argument("--long-steps", type=int, default=TRACE_STEPS)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, help="result file (JSON)")
    parser.add_argument("--figure", type=Path, help="hidden state figure (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = provenance()
    agents = [a for a in args.agents if a in AGENTS]
    jobs = [(a, e, s) for e in args.envs for a in agents for s in args.seeds]
    records: list[dict[str, Any]] = []

    def done(index: int, record: dict[str, Any]) -> None:
        records.append(record)
        print(
            f"{record['agent']} {record['env_id']} s{record['seed']}: 500 steps"
            f" {record['short_mean']:.1f}, {record['long_steps']:,} steps"
            f" {record['long_mean']:.1f}",
            flush=True,
        )

    task = functools.partial(run, episodes=args.episodes, long_steps=args.long_steps)
    try:
        run_tasks(task, jobs, args.workers, done)
    except Stopped as e:
        print(f"horizon: {e} after {len(records)} of {len(jobs)} runs", file=sys.stderr)
        raise SystemExit(128 + e.signal_number) from None
    records.sort(key=lambda r: (r["env_id"], agents.index(r["agent"]), r["seed"]))
    if args.out:
        atomic_write_text(args.out, json.dumps({**source, "runs": records}, indent=1) + "\n")
    if args.figure:
        plot(records, args.figure)


if __name__ == "__main__":
    main()
