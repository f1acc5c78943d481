"""``rlrnn evaluate`` (and ``python evaluate.py``): play episodes with a trained agent, report
its returns, and optionally show or record them (``--render``, ``--video``, ``--gif``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlrnn.cli.options import HelpFormatter, finite_float, seed_int
from rlrnn.errors import UsageError
from rlrnn.learning.config import DEVICES
from rlrnn.runs.folder import RunFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained agent",
        description="Play episodes with a trained agent and report its returns.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", type=Path, help="a run directory or a checkpoint file (.pt)")
    p.add_argument(
        "--checkpoint",
        choices=tuple(RunFolder.CHECKPOINTS),
        default="best",
        help="for a run directory: best (highest periodic evaluation), final (weights at the end)"
        " or last (the latest resume checkpoint, also of a stopped run)",
    )
    p.add_argument(
        "--env",
        dest="env_id",
        help="play on this env id instead of the run's own (also: trust a module:EnvId the"
        " checkpoint names)",
    )
    p.add_argument("--episodes", type=int, default=100, help="episodes to play")
    p.add_argument("--seed", type=seed_int, default=10_000, help="seed of the evaluation episodes")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    robust = p.add_argument_group("robustness", "play under conditions the agent did not train in")
    robust.add_argument(
        "--obs-noise",
        type=finite_float,
        default=0.0,
        metavar="SIGMA",
        help="standard deviation of Gaussian noise added to every observation",
    )
    robust.add_argument(
        "--max-episode-steps", type=int, metavar="N", help="episode time limit instead of the env's"
    )
    show = p.add_argument_group(
        "watching", "frames show the hidden velocities, true and as the agent's state holds them"
    )
    show.add_argument("--render", choices=("human",), help="play episodes in a window in real time")
    show.add_argument("--video", type=Path, metavar="OUT.mp4", help="record episodes to an MP4")
    show.add_argument("--gif", type=Path, metavar="OUT.gif", help="record episodes to a GIF")
    show.add_argument("--render-episodes", type=int, default=1, help="episodes to show or record")
    show.add_argument("--render-max-steps", type=int, help="cut each shown episode after N steps")
    show.add_argument(
        "--fps",
        type=finite_float,
        help="frames per second; None: the env's own (50 for the cart-pole)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The work's modules (the renderer's pygame, SB3 for its agents) load when the command runs.
    from envs.batched import check_env_id
    from rlrnn.learning.evaluation import evaluate
    from rlrnn.learning.fields import resolve_device
    from rlrnn.learning.memory import check_acting_memory
    from rlrnn.learning.threads import torch_threads
    from rlrnn.runs.checkpoint import checkpoint_path
    from rlrnn.runs.loading import load_checkpoint
    from rlrnn.tools.render.rendering import RenderRequest

    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if not args.obs_noise >= 0:  # also refuses nan
        raise UsageError(f"--obs-noise must be >= 0, got {args.obs_noise}")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise UsageError(f"--max-episode-steps must be >= 1, got {args.max_episode_steps}")
    render = RenderRequest.create(
        human=args.render == "human",
        video=args.video,
        gif=args.gif,
        episodes=args.render_episodes,
        max_steps=args.render_max_steps,
        fps=args.fps,
    )
    path = checkpoint_path(args.run, args.checkpoint)
    device = resolve_device(args.device)
    if args.env_id is not None:
        check_env_id(args.env_id)  # the user's choice: its module may be imported
    agent, config, _ = load_checkpoint(path, device, env_id=args.env_id)
    env_id = args.env_id or config.env_id
    check_acting_memory(config, env_id, args.episodes, device, "episodes")
    deterministic = not args.stochastic
    with torch_threads(config.torch_threads):  # as the run trained: 1 by default
        rendered = render and render.render(
            agent,
            env_id,
            agent_name=config.agent.agent,
            seed=args.seed,
            deterministic=deterministic,
            device=device,
        )
        result = evaluate(
            agent,
            env_id,
            episodes=args.episodes,
            seed=args.seed,
            deterministic=deterministic,
            device=device,
            obs_noise=args.obs_noise,
            max_episode_steps=args.max_episode_steps,
        )
    report = {
        "checkpoint": str(path),
        "env_id": env_id,
        "trained_env_id": config.env_id,
        "agent": config.agent.agent,
        "deterministic": deterministic,
        "seed": args.seed,
        "obs_noise": args.obs_noise,
        "max_episode_steps": args.max_episode_steps,
    }
    report.update(result.to_dict())
    if rendered:
        report["rendered"] = rendered.to_dict()
    if args.json:
        print(json.dumps(report))
    else:
        print(table(report))
        if rendered:
            print(rendered.describe())
    return 0


def table(r: dict) -> str:
    """The evaluation report as a short table, saying what differs from the training."""
    mode = "deterministic" if r["deterministic"] else "stochastic"
    changed = []
    if r["env_id"] != r["trained_env_id"]:
        changed.append(f"env {r['env_id']} (trained on {r['trained_env_id']})")
    if r["obs_noise"]:
        changed.append(f"Gaussian observation noise, sigma {r['obs_noise']:g}")
    if r["max_episode_steps"] is not None:
        changed.append(f"episode limit {r['max_episode_steps']} steps")
    return "\n".join(
        [
            f"{r['agent']} on {r['env_id']} ({r['checkpoint']}):"
            f" {r['episodes']} episodes, {mode} actions, seed {r['seed']}",
            f"changed: {'; '.join(changed)}" if changed else "changed: nothing (as trained)",
            f"  {'return mean +/- std':>22}  {'min':>7}  {'max':>7}  {'mean length':>11}",
            f"  {r['mean_return']:>13.1f} +/- {r['std_return']:<5.1f}  {r['min_return']:>7.0f}"
            f"  {r['max_return']:>7.0f}  {r['mean_length']:>11.1f}",
        ]
    )
