"""A training run: the PPO loop plus what a user sees and keeps.

Writes ``<run_dir>/``: ``config.json``, ``final.pt`` and ``best.pt`` checkpoints, ``last.pt`` to
resume from (:mod:`rlrnn.runs.resume`), TensorBoard logs in ``tb/``, ``summary.json`` and a
``learning_curve.png``.

Time is kept as *training seconds*: wall-clock time of rollouts and updates, without the periodic
evaluations (whose cost depends on how long the policy balances, not on how fast it learns).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from envs import make_batched_env
from rlrnn.runs.checkpoint import save_checkpoint
from rlrnn.learning.config import SB3_AGENTS, RunConfig, resolve_device, shell_path
from rlrnn.runs.loading import build_agent
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.start import check_training_call
from rlrnn.runs.resume import LAST, load_training_state, save_training_state
from rlrnn.runs.folder import temp_files, writing_run
from rlrnn.runs.runlog import EvaluationHook, EvaluationLog, progress_bar
from rlrnn.runs.safety import DivergenceGuard, StopSignals, all_finite
from rlrnn.runs.schedule import checkpoint_every, eval_every
from rlrnn.learning.threads import torch_threads
from rlrnn.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rlrnn.files import atomic_write_text


def train(
    config: RunConfig,
    run_dir: Path | str,
    show_progress: bool = True,
    resume: bool = False,
    on_evaluation: EvaluationHook | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (created if missing); returns the summary (as
    ``summary.json``) and draws ``learning_curve.png`` from it.

    ``resume`` continues the run saved in ``run_dir/last.pt``: on a CPU, interrupting and
    resuming gives the same weights as an uninterrupted run. SIGINT / SIGTERM stop the run after
    the current update with ``last.pt`` and ``summary.json`` written (:class:`TrainingInterrupted`).
    The run holds the folder's lock throughout (:class:`rlrnn.runs.folder.RunLock`): a second writer
    is refused, and a run refused before it wrote anything leaves no folder or marker behind
    (:func:`rlrnn.runs.folder.writing_run`). ``on_evaluation`` sees every periodic evaluation
    (a tuner reports it and may prune the run): when it returns False the run ends there with
    ``"status": "stopped"``. Every argument is checked first, as the command line checks its
    options, before any folder is made (:func:`rlrnn.runs.start.check_training_call`).
    """
    run_dir = check_training_call(config, run_dir, show_progress, resume, on_evaluation)
    with writing_run(Path(run_dir)) as run_dir, torch_threads(config.torch_threads):
        if config.agent.agent in SB3_AGENTS:
            if resume:
                raise UsageError(
                    f"--resume is for rlrnn's agents; {config.agent.agent} runs restart"
                )
            from rlrnn.runs.sb3 import train_sb3  # SB3 takes seconds to import: only when used

            summary = train_sb3(config, run_dir, show_progress, on_evaluation)
        else:
            summary = _train_locked(config, run_dir, show_progress, resume, on_evaluation)
        from rlrnn.runs.plots import plot_learning_curve  # matplotlib: 1-2 s, so only now

        plot_learning_curve(summary, run_dir / "learning_curve.png")
    return summary


def _train_locked(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool,
    resume: bool,
    on_evaluation: EvaluationHook | None,
) -> dict[str, Any]:
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    env = make_batched_env(config.env_id, config.ppo.num_envs, device)
    agent = build_agent(config, env.obs_dim, env.num_actions).to(device)
    ppo = PPOLearner(agent, env, config.ppo, config.seed)

    def save_best(path: Path, env_steps: int) -> None:
        save_checkpoint(path, agent, config, {"env_steps": env_steps})

    loop = {"train_seconds": 0.0, "wall_seconds": 0.0, "recent_return": math.nan}
    eval_steps, checkpoint_steps = eval_every(config), checkpoint_every(config)
    loop |= {"next_eval": eval_steps, "restores": 0, "compile_seconds": 0.0}
    saved_evals = None
    if resume:
        saved_loop, saved_evals = load_training_state(run_dir / LAST, agent, ppo)
        loop |= saved_loop
        for leftover in temp_files(run_dir):  # half-written files of a killed process
            leftover.unlink(missing_ok=True)  # a plain file (temp_files): no link is followed
    # Made after the checks above, so a refused resume leaves no new event file behind.
    writer = SummaryWriter(str(run_dir / "tb"))  # a resumed run appends a new event file
    evals = EvaluationLog(config, run_dir, agent, writer, save_best, env.reward_threshold, device)
    if saved_evals is not None:
        evals.load_state_dict(saved_evals)
    atomic_write_text(run_dir / "config.json", config.to_json())  # a resume may extend the run
    writer.add_text("config", f"```\n{config.to_json()}\n```")
    guard = DivergenceGuard(ppo)
    guard.restores = loop["restores"]
    next_checkpoint = ppo.env_steps + checkpoint_steps
    wall_start = time.perf_counter() - loop["wall_seconds"]
    if config.compile:
        from rlrnn.learning.compiled import compile_hot_loop  # imports torch's compiler only when asked

        loop["compile_seconds"] += compile_hot_loop(ppo)
    bar = progress_bar(config, config.ppo.num_iterations * config.ppo.batch_size, show_progress)
    bar.update(ppo.env_steps)

    def save_last(status: str) -> None:
        loop.update(wall_seconds=time.perf_counter() - wall_start, restores=guard.restores)
        save_training_state(run_dir / LAST, agent, config, ppo, evals, loop, status)

    def finish(status: str) -> dict[str, Any]:
        save_last(status)
        writer.close()
        bar.close()
        summary = evals.summary(
            status=status,
            device=str(device),
            parameters=sum(p.numel() for p in agent.parameters()),
            env_steps=ppo.env_steps,
            iterations=ppo.iteration,
            train_seconds=loop["train_seconds"],
            compile_seconds=loop["compile_seconds"],
            wall_seconds=time.perf_counter() - wall_start,
            divergence_restores=guard.restores,
        )
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        return summary

    with StopSignals() as stop:
        while ppo.iteration < config.ppo.num_iterations:
            start = time.perf_counter()
            stats, episodes = ppo.iterate()
            finite = all_finite(stats, list(agent.parameters()))
            names = list(stats)
            # The one host sync per iteration: statistics, episode sums, the finite flag.
            values = torch.stack([*stats.values(), *episodes, finite]).tolist()
            loop["train_seconds"] += time.perf_counter() - start
            step = ppo.env_steps
            try:
                kept = guard.check(bool(values[-1]), step)
            except TrainingDiverged:
                finish("diverged")
                raise
            if not kept:
                writer.add_scalar("charts/divergence_restores", guard.restores, step)
                bar.write(f"step {step:,}: non-finite update rolled back to the last good state")
            else:
                logged = dict(zip(names, values[: len(names)], strict=True))
                _log_iteration(writer, logged, values, step, loop)
            if eval_steps and step >= loop["next_eval"] and kept:
                record = evals.run(step, loop["train_seconds"])
                while loop["next_eval"] <= step:
                    loop["next_eval"] += eval_steps
                if on_evaluation is not None and not on_evaluation(record):
                    return finish("stopped")
            sps = step / max(loop["train_seconds"], 1e-9)
            postfix = {"return": f"{loop['recent_return']:.1f}", "sps": f"{sps:,.0f}"}
            if evals.records:
                postfix["eval"] = f"{evals.records[-1]['mean_return']:.1f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(config.ppo.batch_size)
            if stop.requested is not None:
                finish("interrupted")
                raise TrainingInterrupted(
                    f"stopped by {stop.requested.name} at {step:,} env steps; saved {run_dir}/"
                    f"{LAST} and summary.json. Resume: python train.py --resume"
                    f" {shell_path(run_dir)}",
                    stop.requested.value,
                )
            if checkpoint_steps and step >= next_checkpoint:
                save_last("running")
                next_checkpoint = step + checkpoint_steps

    evals.final(ppo.env_steps, loop["train_seconds"])
    save_checkpoint(run_dir / "final.pt", agent, config, {"env_steps": ppo.env_steps})
    return finish("finished")


def _log_iteration(
    writer: SummaryWriter, logged: dict[str, float], values: list[float], step: int, loop: dict
) -> None:
    """TensorBoard scalars of one kept iteration. ``values`` is the packed host sync: the
    ``logged`` statistics, then the episode count, return sum and length sum, then the
    finite flag."""
    count, return_sum, length_sum = values[len(logged) : len(logged) + 3]
    for key, value in logged.items():
        if "/" not in key:  # PPO's own statistics; diagnostics come with their tag
            key = f"{'charts' if key in ('learning_rate', 'epochs') else 'losses'}/{key}"
        writer.add_scalar(key, value, step)
    writer.add_scalar("charts/SPS", step / max(loop["train_seconds"], 1e-9), step)
    if count > 0:
        loop["recent_return"] = return_sum / count
        writer.add_scalar("charts/episodic_return", loop["recent_return"], step)
        writer.add_scalar("charts/episodic_length", length_sum / count, step)
