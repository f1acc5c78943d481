"""How much of the hidden velocities does a window of the last k observations hold?

    python benchmarks/memory_window.py RUN [RUN ...] --env NoisyPositionOnlyCartPoleEasy-v1

Plays the first run's final weights on ``--env`` (one episode per env, deterministic), records
what the agent saw and the true velocities, and fits the linear probe of
:mod:`rlrnn.tools.probe.probe`
(ridge, penalty chosen on held-out episodes) from the last k observations (zeros before the
episode's start) to ``[x_dot, theta_dot]``, for growing k; then the same probe from each run's
own features (a recurrent state, a frame stack's window) along the same trajectories. R² on the
last quarter of the episodes. A linear read of a window is what a frame stack's first layer can
do; the gap between the window of k = 8 and a longer one is what a memory could still add.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from envs import make_batched_env
from rlrnn.learning.acting import FirstEpisodes, Step, step_policy
from rlrnn.runs.loading import load_checkpoint
from rlrnn.tools.probe.probe import collect, fit_probe, r2_scores

WINDOWS = (1, 2, 4, 8, 16, 32, 64)


def windows(obs: np.ndarray, episode: np.ndarray, step: np.ndarray, k: int) -> np.ndarray:
    """``(N, 2k)``: each sample's last k observations of its own episode, zeros before it."""
    index = {(e, s): i for i, (e, s) in enumerate(zip(episode, step, strict=True))}
    out = np.zeros((len(obs), k, obs.shape[1]))
    for i, (e, s) in enumerate(zip(episode, step, strict=True)):
        for back in range(k):
            j = index.get((e, s - back))
            if j is not None:
                out[i, back] = obs[j]
    return out.reshape(len(obs), -1)  # (N, k, 2) -> (N, 2k)


def held_out_r2(features: np.ndarray, targets: np.ndarray, episode: np.ndarray) -> np.ndarray:
    test = episode >= np.quantile(np.unique(episode), 0.75)
    probe = fit_probe(features[~test], targets[~test], episode[~test])
    return r2_scores(targets[test], probe.predict(features[test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; the first one acts")
    parser.add_argument("--env", required=True, help="a cart-pole id (noisy, flickering, ...)")
    parser.add_argument("--episodes", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    agents = [load_checkpoint(run / "final.pt", env_id=args.env)[0] for run in args.runs]
    # The raw observations come from an identity "agent": an untouched copy of what was seen.
    data = collect(agents[0], args.env, args.episodes, observers=tuple(agents[1:]))
    seen = _observations(agents[0], args.env, args.episodes)
    print(f"env: {args.env}; {args.episodes} episodes played by {args.runs[0]}")
    print("| features | R² cart velocity | R² pole angular velocity |")
    print("|---|---|---|")
    for k in WINDOWS:
        r2 = held_out_r2(windows(seen, data.episode, data.step, k), data.velocities, data.episode)
        print(f"| last {k} observations | {r2[0]:.2f} | {r2[1]:.2f} |", flush=True)
    for run, features in zip(args.runs, data.features, strict=True):
        r2 = held_out_r2(features, data.velocities, data.episode)
        print(f"| {run.name} (its state / window) | {r2[0]:.2f} | {r2[1]:.2f} |")


def _observations(agent, env_id: str, episodes: int) -> np.ndarray:
    """The observations of :func:`collect`'s episodes, replayed (same seed, same actions)."""
    env = make_batched_env(env_id, episodes)
    first = FirstEpisodes(episodes, "cpu", check_every=1)
    seen, alive = [], []

    def record(step: Step) -> bool:
        seen.append(step.obs.double())
        alive.append(first.running.clone())
        return first.going_on(step)

    step_policy(agent, env, record, seed=20_000, max_steps=env.max_episode_steps)
    env.close()
    mask = torch.stack(alive, 1).numpy()  # (B, T)
    return torch.stack(seen, 1).numpy()[mask]  # (B, T, 2) -> (N, 2), episode-major


if __name__ == "__main__":
    main()
