"""Watch a policy play: a real-time window, or frames recorded to an MP4 or a GIF
(:mod:`rlrnn.tools.render.sinks`).

Each frame carries an overlay: the step, the return so far and, on an env whose hidden
velocities rlrnn knows (the cart-pole's two, the pendulum's θ̇:
:func:`envs.batched.hidden_velocities`), those velocities (true, from the simulator) next to what
a linear probe reads out of a recurrent agent's state (:mod:`rlrnn.tools.probe.probe`). The
episodes are played by :func:`rlrnn.learning.acting.step_policy` on one gymnasium env that draws
itself (:class:`Screen`). SIGINT and SIGTERM stop a playback at once, discarding the recording in
progress.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces as gym_spaces
from torch import Tensor

import envs  # noqa: F401  (registers the position-only cart-pole)
from agents import ActorCritic
from envs import StepResult
from envs import spaces as obs_spaces
from envs.batched import check_env_id, hidden_velocities
from envs.protocol import HiddenVelocity
from rlrnn.errors import Interrupted, UsageError
from rlrnn.files import check_output_path
from rlrnn.learning.acting import Policy, Step, step_policy
from rlrnn.runs.safety import RaiseOnSignals
from rlrnn.tools.probe.probe import fit_velocity_probe, state_features
from rlrnn.tools.render.overlay import draw_overlay, overlay_lines
from rlrnn.tools.render.sinks import (
    VIDEO_SUFFIXES,
    FrameSink,
    check_display,
    check_ffmpeg,
    check_gif_memory,
    close_all,
    make_sink,
    quiet_pygame,
)


@dataclass
class RenderResult:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    frames: int = 0
    outputs: list[str] = field(default_factory=list)
    stopped: bool = False  # the window was closed before the last episode ended
    estimates: bool = False  # frames carry the agent's velocity estimates

    def describe(self) -> str:
        where = ", ".join("a window" if t == "human" else t for t in self.outputs)
        episodes = len(self.returns)
        returns = ", ".join(f"{r:g}" for r in self.returns)
        return (
            f"Rendered {episodes} episode{'s' * (episodes != 1)} ({self.frames} frames,"
            f" return {returns}) to {where}" + (" (window closed early)" if self.stopped else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "returns": self.returns,
            "lengths": self.lengths,
            "frames": self.frames,
            "outputs": self.outputs,
            "stopped": self.stopped,
            "velocity_estimates": self.estimates,
        }


@dataclass(frozen=True)
class RenderRequest:
    """What ``rlrnn evaluate --render/--video/--gif`` asked for, checked before any work."""

    targets: tuple[str, ...]
    episodes: int = 1
    max_steps: int | None = None
    fps: float | None = None

    @classmethod
    def create(
        cls,
        human: bool = False,
        video: Path | None = None,
        gif: Path | None = None,
        episodes: int = 1,
        max_steps: int | None = None,
        fps: float | None = None,
    ) -> RenderRequest | None:
        """None when nothing is to be rendered; a UsageError for a path that cannot be written."""
        targets = ["human"] if human else []
        if video is not None:
            targets.append(str(check_output_path(video, (".mp4",), "video")))
        if gif is not None:
            targets.append(str(check_output_path(gif, (".gif",), "GIF")))
        if not targets:
            return None
        if episodes < 1:
            raise UsageError(f"--render-episodes must be >= 1, got {episodes}")
        if max_steps is not None and max_steps < 1:
            raise UsageError(f"--render-max-steps must be >= 1, got {max_steps}")
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise UsageError(f"--fps must be a number > 0, got {fps}")
        if video is not None:
            check_ffmpeg()
        if human:
            check_display()
        return cls(tuple(targets), episodes, max_steps, fps)

    def render(
        self,
        agent: Policy,
        env_id: str,
        agent_name: str,
        seed: int = 10_000,
        deterministic: bool = True,
        device: torch.device | str = "cpu",
    ) -> RenderResult:
        return render_episodes(
            agent,
            env_id,
            self.targets,
            episodes=self.episodes,
            seed=seed,
            deterministic=deterministic,
            max_steps=self.max_steps,
            fps=self.fps,
            agent_name=agent_name,
            device=device,
        )


class Screen:
    """One gymnasium env that draws itself, behind the batched interface (a batch of one).

    Episode ``i`` starts from ``seed + i``; ``max_steps`` cuts an episode short (as a time limit
    would: truncated). ``shown`` is the picture of the state the last action was taken in and
    the true values of ``hidden``, the velocities in the env's state (None where there are none).
    """

    num_envs = 1

    def __init__(
        self,
        env: Any,
        device: torch.device | str,
        max_steps: int | None,
        hidden: Sequence[HiddenVelocity] = (),
    ) -> None:
        self.env, self.device, self.max_steps = env, torch.device(device), max_steps
        self.hidden = tuple(hidden)
        self.obs_dim = obs_spaces.flat_size(env.observation_space)
        box = env.action_space if isinstance(env.action_space, gym_spaces.Box) else None
        self.continuous, self._box = box is not None, box
        self.num_actions = int(np.prod(box.shape)) if box is not None else int(env.action_space.n)
        self.max_episode_steps = max_steps
        self.reward_threshold = None
        self.shown: tuple[np.ndarray, np.ndarray | None] | None = None

    def _tensor(self, obs: Any) -> Tensor:
        # (D,) -> (1, D), Discrete / MultiDiscrete as the one-hots the agent was trained on
        seen = obs_spaces.encode(self.env.observation_space, np.asarray(obs)[None])
        return torch.as_tensor(seen, dtype=torch.float32, device=self.device)

    def _start(self) -> Tensor:
        obs, _ = self.env.reset(seed=self.seed + self.episode)
        self.steps = 0
        return self._tensor(obs)

    def reset(self, seed: int = 0) -> Tensor:
        self.seed, self.episode = seed, 0
        return self._start()

    def step(self, actions: Tensor) -> StepResult:
        self.shown = (self.env.render(), _true_velocities(self.env, self.hidden))
        if self._box is not None:  # Box actions are clipped to the bounds at the env
            box = self._box
            action = np.clip(actions[0].cpu().numpy().reshape(box.shape), box.low, box.high)
        else:
            action = int(actions[0])
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.steps += 1
        truncated = truncated or (self.max_steps is not None and self.steps >= self.max_steps)
        final = self._tensor(obs)
        if terminated or truncated:
            self.episode += 1
            obs = self._start()
        else:
            obs = final

        def flag(value: bool) -> Tensor:
            return torch.tensor([bool(value)], device=self.device)

        reward = torch.tensor([float(reward)], device=self.device)
        return StepResult(obs, reward, flag(terminated), flag(truncated), final)

    def close(self) -> None:
        self.env.close()


def _make_env(env_id: str) -> Any:
    quiet_pygame()
    import gymnasium as gym

    check_env_id(env_id)
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except (gym.error.Error, TypeError, ValueError) as e:
        raise UsageError(f"env {env_id!r} cannot render frames: {e}") from None
    if "rgb_array" not in env.metadata.get("render_modes", ()):
        env.close()
        raise UsageError(f"env {env_id!r} cannot render frames (no rgb_array render mode)")
    return env


def _true_velocities(env: Any, hidden: Sequence[HiddenVelocity]) -> np.ndarray | None:
    """The values of ``hidden`` in a gymnasium env's ``unwrapped.state`` (laid out as its tensor
    twin's state); None for an env without them."""
    state = getattr(env.unwrapped, "state", None)
    if not hidden or state is None:
        return None
    return np.asarray(state, dtype=np.float64)[[v.index for v in hidden]]


def render_episodes(
    agent: Policy,
    env_id: str,
    targets: Sequence[str | Path],
    episodes: int = 1,
    seed: int = 10_000,
    deterministic: bool = True,
    max_steps: int | None = None,
    fps: float | None = None,
    agent_name: str = "agent",
    device: torch.device | str = "cpu",
) -> RenderResult:
    """Play ``episodes`` episodes of ``agent`` on one env and send every frame to each target.

    Targets are ``"human"`` (a window in real time) or output paths ending in .mp4 or .gif,
    checked before anything runs and written atomically. Episode ``i`` starts from ``seed + i``;
    ``max_steps`` cuts each episode short; ``fps`` defaults to the env's own. A recurrent agent
    on an env with hidden velocities gets a probe fitted on its own fresh episodes first (a
    second or so).
    SIGINT / SIGTERM stop it at once (:class:`Interrupted`), discarding the recordings.
    ``episodes``, ``max_steps`` and ``fps`` are checked by :meth:`RenderRequest.create`.
    """
    if not targets:
        raise UsageError("nothing to render to: give a window ('human') or an output file")
    if sum(str(t) == "human" for t in targets) > 1:
        raise UsageError("only one window can be shown at a time")
    for target in targets:
        if str(target) != "human":
            check_output_path(Path(target), VIDEO_SUFFIXES, "video")
    files = [str(t) for t in targets if str(t) != "human"]
    try:
        with RaiseOnSignals(f"rendering {agent_name} on {env_id}"):
            env = _make_env(env_id)
            try:
                if any(Path(str(t)).suffix.lower() == ".gif" for t in targets):
                    check_gif_memory(env, env_id, episodes, max_steps)
                fps = fps or env.metadata.get("render_fps") or 30
                sinks: list[FrameSink] = []
                ok = False
                try:
                    for target in targets:
                        sinks.append(make_sink(target, fps, f"rlrnn: {agent_name} on {env_id}"))
                    screen = Screen(env, device, max_steps, hidden_velocities(env_id))
                    result = _play_episodes(
                        agent, screen, env_id, sinks, episodes, seed, deterministic, agent_name
                    )
                    result.outputs = [str(t) for t in targets]
                    ok = True
                finally:
                    close_all(sinks, ok)
                return result
            finally:
                env.close()
    except Interrupted as e:
        if files:
            e = Interrupted(
                f"{e}; {', '.join(files)} not written (left as it was)", e.signal_number
            )
        raise e from None


def _play_episodes(
    agent: Policy,
    screen: Screen,
    env_id: str,
    sinks: Sequence[FrameSink],
    episodes: int,
    seed: int,
    deterministic: bool,
    agent_name: str,
) -> RenderResult:
    """:func:`render_episodes` once the env and the sinks are made: each step's frame to every
    sink."""
    # The probe reads rlrnn agents' states; other policies (SB3's) only act.
    probe = None
    if isinstance(agent, ActorCritic) and agent.is_recurrent and screen.hidden:
        probe = fit_velocity_probe(agent, env_id, device=screen.device)
    result = RenderResult(estimates=probe is not None)
    episode, episode_return, length = 0, 0.0, 0

    def show(step: Step) -> bool:
        nonlocal episode, episode_return, length
        image, truth = screen.shown
        estimate = None
        if probe is not None and truth is not None:
            features = state_features(agent, step.obs, step.state, step.episode_starts)
            estimate = probe.predict(features.cpu().numpy())[0]
        lines = overlay_lines(
            agent_name, episode, length, episode_return, screen.hidden, truth, estimate
        )
        frame = draw_overlay(image, lines)
        result.frames += 1
        if not all([sink.add(frame) for sink in sinks]):  # every sink sees the frame
            result.stopped = True
            result.returns.append(episode_return)
            result.lengths.append(length)
            return False
        episode_return += float(step.result.reward[0])
        length += 1
        if not bool(step.result.terminated[0] or step.result.truncated[0]):
            return True
        result.returns.append(episode_return)
        result.lengths.append(length)
        episode, episode_return, length = episode + 1, 0.0, 0
        return episode < episodes

    step_policy(agent, screen, show, seed, deterministic)
    return result
