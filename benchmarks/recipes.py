"""Screen training recipes for an env: each recipe (config changes over an agent's defaults on
that env) trains every agent on every seed, and its final weights are judged over 100 fresh
episodes.

    python benchmarks/recipes.py --env PositionOnlyPendulum-v1 --agents gru lstm \
        --seeds 10 11 12 --budget 200000 --out benchmarks/results/pendulum_screen.json \
        --recipe base '{}' --recipe B '{"update_epochs": 10, "num_minibatches": 8, "gamma": 0.95}'

A recipe's keys are PPO fields, or ``agent.<field>`` for the agent's (``agent.hidden_size``).
Runs go two at a time in worker processes, one torch thread each; the result file holds every
run's final return with the provenance of the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from provenance import provenance


def run(job: tuple[str, dict[str, Any], str, int, str, int]) -> dict[str, Any]:
    """One recipe, agent and seed: trained, then its final weights evaluated."""
    from rlrnn import default_config, evaluate, load_agent, train

    torch.set_num_threads(1)
    name, changes, agent, seed, env, budget = job
    base = default_config(agent, env)  # with the env's own changes (ENV_HYPERPARAMS)
    agent_changes = {k.removeprefix("agent."): v for k, v in changes.items() if "." in k}
    ppo_changes = {k: v for k, v in changes.items() if "." not in k}
    config = dataclasses.replace(
        base,
        seed=seed,
        eval_interval=20_000,
        eval_episodes=20,
        agent=dataclasses.replace(base.agent, **agent_changes),
        ppo=dataclasses.replace(base.ppo, total_timesteps=budget, **ppo_changes),
    )
    with tempfile.TemporaryDirectory() as folder:
        summary = train(config, Path(folder) / "run", show_progress=False)
        policy, _ = load_agent(Path(folder) / "run", "final")
        final = evaluate(policy, env, episodes=100, seed=10_000).mean
    kept = {k: summary[k] for k in ("best_eval_mean", "solved_at_steps", "train_seconds")}
    return {"recipe": name, "agent": agent, "seed": seed, "final": final} | kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--agents", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--budget", type=int, default=200_000)
    parser.add_argument("--recipe", nargs=2, action="append", metavar=("NAME", "JSON"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    recipes = {name: json.loads(text) for name, text in args.recipe or [("defaults", "{}")]}
    jobs = [
        (name, changes, agent, seed, args.env, args.budget)
        for (name, changes), agent, seed in itertools.product(
            recipes.items(), args.agents, args.seeds
        )
    ]
    runs: list[dict[str, Any]] = []
    source = provenance()  # the code as it was when the runs started
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(run, jobs):
            runs.append(result)
            print(json.dumps(result), flush=True)
            if args.out:  # after every run: a stopped screen keeps what it finished
                record = {"provenance": source, "recipes": recipes, "runs": runs}
                args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
