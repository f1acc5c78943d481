"""Watch a policy play: a real-time window, or frames recorded to an MP4 or a GIF.

Each frame carries an overlay: the step, the return so far and, for a recurrent agent on the
cart-pole, the two velocities the agent cannot see (true, from the simulator) next to what a
linear probe reads out of the agent's hidden state (:mod:`rlrnn.probe`).

SIGINT and SIGTERM stop a playback at once, discarding the recording in progress (an existing
file of that name is left as it was): SDL, which pygame starts for the renderer, is told to
leave both signals to Python (``SDL_NO_SIGNAL_HANDLERS``); otherwise it turns SIGTERM into an
event nobody reads, and ``kill`` would not stop a recording.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from agents import ActorCritic
from rlrnn.errors import Interrupted, UsageError, WriteFailed
from rlrnn.evaluation import Policy
from rlrnn.files import TempOutput, atomic_output, check_output_path, os_error, write_failed
from rlrnn.memory import check_fits
from rlrnn.safety import RaiseOnSignals

if TYPE_CHECKING:
    from rlrnn.probe import VelocityProbe

VIDEO_SUFFIXES = (".mp4", ".gif")
GIF_COLORS = 64  # palette size of each GIF frame: the cart-pole has few colours
NO_WINDOW_DRIVERS = ("dummy", "offscreen")  # SDL video drivers that show nothing


def _quiet_pygame() -> None:
    """Before pygame starts: no banner, and SIGINT / SIGTERM stay Python's (see above)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")


def check_display() -> None:
    """A UsageError unless a window can really be shown here."""
    _quiet_pygame()
    import pygame

    try:
        pygame.display.init()
        driver = pygame.display.get_driver()
    except pygame.error as e:
        raise UsageError(
            f"cannot open a window ({e}); record with --video or --gif instead"
        ) from None
    finally:
        pygame.display.quit()
    if driver in NO_WINDOW_DRIVERS:
        raise UsageError(
            f"no display to show a window on (SDL video driver {driver!r}); record with --video"
            " or --gif instead"
        )


def check_ffmpeg() -> None:
    """A UsageError unless the ffmpeg that MP4 recording runs is there."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg
    except ImportError:
        raise UsageError(
            "writing MP4 needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg"
        ) from None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise UsageError(f"writing MP4 needs ffmpeg, which is not found: {e}") from None
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)) and shutil.which(exe) is None:
        raise UsageError(
            f"writing MP4 needs ffmpeg, which is not found: {exe} is not a program"
            " (set IMAGEIO_FFMPEG_EXE to an ffmpeg, or record a --gif)"
        )


# ---------------------------------------------------------------- frame sinks


class FrameSink(Protocol):
    def add(self, frame: np.ndarray) -> bool:
        """Take one ``(H, W, 3)`` uint8 frame; False asks the player to stop."""
        ...

    def close(self, ok: bool) -> None: ...


class Mp4Sink:
    """Streams frames to ffmpeg (H.264), into a temporary file renamed on success, once ffmpeg
    has shown that it holds every frame (ffmpeg's exit status does not reach imageio: a full
    disk would otherwise leave a truncated video)."""

    def __init__(self, path: Path, fps: float) -> None:
        check_ffmpeg()
        import imageio.v2 as imageio

        self._output = TempOutput(path)
        self.frames = 0
        try:
            # Cart-pole frames are 600x400: multiples of 8, so ffmpeg needs no resizing.
            self._writer = imageio.get_writer(
                self._output.tmp,
                format="FFMPEG",
                fps=fps,
                codec="libx264",
                quality=7,
                macro_block_size=8,
                ffmpeg_log_level="quiet",  # its failures are found below and told in one line
            )
        except BaseException:
            self._output.discard()
            raise

    def add(self, frame: np.ndarray) -> bool:
        try:
            self._writer.append_data(frame)
        except (OSError, RuntimeError) as e:  # ffmpeg could not write (a full disk): say so
            self._output.discard()
            raise self._failed(e) from None
        self.frames += 1
        return True

    def _failed(self, error: BaseException | None) -> WriteFailed:
        cause = os_error(error) if error is not None else None
        if cause is not None and cause.errno not in (None, errno.EPIPE):
            return write_failed(self._output.path, cause)
        return WriteFailed(
            f"cannot write {self._output.path}: ffmpeg could not finish it (is the disk full?)"
        )

    def _complete(self) -> bool:
        import imageio_ffmpeg

        try:
            frames, _ = imageio_ffmpeg.count_frames_and_secs(str(self._output.tmp))
        except (RuntimeError, OSError, ValueError):
            return False
        return frames == self.frames

    def close(self, ok: bool) -> None:
        try:
            self._writer.close()
        except BaseException as e:
            self._output.discard()
            if ok and isinstance(e, OSError | RuntimeError):
                raise self._failed(e) from None
            if ok or not isinstance(e, Exception):
                raise
            return  # the recording failed already: that error is the one to report
        if ok and not self._complete():
            self._output.discard()
            raise self._failed(None)
        if ok:
            self._output.commit()
        else:
            self._output.discard()


class GifSink:
    """Collects palettised frames (a byte per pixel) and writes one looping GIF at the end."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.duration_ms = max(20, round(1000 / fps / 10) * 10)  # GIF delays are in 1/100 s
        self._frames: list[Any] = []

    def add(self, frame: np.ndarray) -> bool:
        from PIL import Image

        image = Image.fromarray(frame).convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=GIF_COLORS
        )
        self._frames.append(image)
        return True

    def close(self, ok: bool) -> None:
        if ok and self._frames:
            first, *rest = self._frames
            with atomic_output(self.path) as tmp:
                first.save(
                    tmp,
                    format="GIF",
                    save_all=True,
                    append_images=rest,
                    duration=self.duration_ms,
                    loop=0,
                )
        self._frames = []


class WindowSink:
    """A pygame window showing the frames in real time; closing it stops the playback."""

    def __init__(self, fps: float, title: str) -> None:
        check_display()
        import pygame

        self._pygame = pygame
        self.fps = fps
        self.title = title
        self._screen: Any = None
        self._clock = pygame.time.Clock()

    def add(self, frame: np.ndarray) -> bool:
        pygame = self._pygame
        if self._screen is None:
            try:
                pygame.display.init()
                self._screen = pygame.display.set_mode((frame.shape[1], frame.shape[0]))
            except pygame.error as e:
                raise UsageError(
                    f"cannot open a window ({e}); record with --video or --gif instead"
                ) from None
            pygame.display.set_caption(self.title)
        self._screen.blit(pygame.surfarray.make_surface(frame.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (
                event.type == pygame.KEYDOWN and event.key in (pygame.K_ESCAPE, pygame.K_q)
            ):
                return False
        self._clock.tick(self.fps)
        return True

    def close(self, ok: bool) -> None:
        if self._screen is not None:
            self._pygame.display.quit()
            self._screen = None


def make_sink(target: str | Path, fps: float, title: str = "rlrnn") -> FrameSink:
    """``"human"`` for a window, else a file whose suffix (.mp4 or .gif) picks the format."""
    if target == "human":
        return WindowSink(fps, title)
    path = check_output_path(Path(target), VIDEO_SUFFIXES, "video")
    return Mp4Sink(path, fps) if path.suffix.lower() == ".mp4" else GifSink(path, fps)


# ---------------------------------------------------------------- overlay


def _font(size: int) -> Any:
    """A monospaced font (matplotlib's DejaVu Sans Mono) so the overlay's columns line up."""
    from PIL import ImageFont

    try:
        import matplotlib

        mono = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"
        return ImageFont.truetype(str(mono), size)
    except (ImportError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def draw_overlay(frame: np.ndarray, lines: Sequence[str], size: int = 14) -> np.ndarray:
    """``frame`` with ``lines`` of text in its top-left corner, on a light box."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image, "RGBA")
    font = _font(size)
    width = max((draw.textbbox((0, 0), line, font=font)[2] for line in lines), default=0)
    step = size + 4
    draw.rectangle(
        (4, 4, 14 + width, 10 + step * len(lines)), fill=(240, 240, 240, 220), outline=(160,) * 3
    )
    for k, line in enumerate(lines):
        draw.text((9, 7 + step * k), line, fill=(20, 20, 20), font=font)
    return np.asarray(image)


def overlay_lines(
    agent_name: str,
    episode: int,
    step: int,
    episode_return: float,
    true_velocities: np.ndarray | None,
    estimated_velocities: np.ndarray | None,
) -> list[str]:
    """The overlay's text: step and return, then the hidden velocities (true, agent's)."""
    lines = [f"{agent_name}  episode {episode + 1}  step {step}  return {episode_return:g}"]
    if true_velocities is not None:
        lines.append(
            f"{'hidden velocity':<22}{'true':>7}"
            + (f"{'agent':>8}" if estimated_velocities is not None else "")
        )
        names = ("cart (m/s)", "pole (rad/s)")
        for k, name in enumerate(names):
            line = f"{name:<22}{true_velocities[k]:+7.2f}"
            if estimated_velocities is not None:
                line += f"{estimated_velocities[k]:+8.2f}"
            lines.append(line)
    return lines


# ---------------------------------------------------------------- playing


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

    def play(
        self,
        agent: Policy,
        env_id: str,
        agent_name: str,
        seed: int = 10_000,
        deterministic: bool = True,
        device: torch.device | str = "cpu",
    ) -> RenderResult:
        return play(
            agent,
            env_id,
            self.targets,
            self.episodes,
            seed,
            deterministic,
            self.max_steps,
            self.fps,
            agent_name=agent_name,
            device=device,
        )


def _make_env(env_id: str) -> Any:
    _quiet_pygame()
    import gymnasium as gym

    import envs  # noqa: F401  (registers the position-only cart-pole)
    from envs.batched import check_env_id

    check_env_id(env_id)
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except (gym.error.Error, TypeError, ValueError) as e:
        raise UsageError(f"env {env_id!r} cannot render frames: {e}") from None
    if "rgb_array" not in env.metadata.get("render_modes", ()):
        env.close()
        raise UsageError(f"env {env_id!r} cannot render frames (no rgb_array render mode)")
    return env


def _true_velocities(env: Any) -> np.ndarray | None:
    """``[x_dot, theta_dot]`` of a cart-pole's full state ``(x, x_dot, theta, theta_dot)``."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    state = getattr(env.unwrapped, "state", None)
    if not isinstance(env.unwrapped, CartPoleEnv) or state is None:
        return None
    return np.asarray(state, dtype=np.float64)[[1, 3]]


def play(
    agent: Policy,
    env_id: str,
    targets: Sequence[str | Path],
    episodes: int = 1,
    seed: int = 10_000,
    deterministic: bool = True,
    max_steps: int | None = None,
    fps: float | None = None,
    probe: VelocityProbe | None = None,
    fit_probe: bool = True,
    agent_name: str = "agent",
    device: torch.device | str = "cpu",
) -> RenderResult:
    """Play ``episodes`` episodes of ``agent`` on one env and send every frame to each target.

    Targets are ``"human"`` (a window in real time) or output paths ending in .mp4 or .gif,
    checked before anything runs and written atomically. Episode ``i`` starts from ``seed + i``;
    ``max_steps`` cuts each episode short. A recurrent agent on the cart-pole without a ``probe``
    gets one fitted on its own fresh episodes first (``fit_probe``; a second or so).
    SIGINT / SIGTERM stop it at once (:class:`Interrupted`), discarding the recordings.
    """
    if not targets:
        raise UsageError("nothing to render to: give a window ('human') or an output file")
    if episodes < 1:
        raise UsageError(f"render episodes must be >= 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise UsageError(f"render max steps must be >= 1, got {max_steps}")
    if sum(str(t) == "human" for t in targets) > 1:
        raise UsageError("only one window can be shown at a time")
    for target in targets:
        if str(target) != "human":
            check_output_path(Path(target), VIDEO_SUFFIXES, "video")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"fps must be a number > 0, got {fps}")

    files = [str(t) for t in targets if str(t) != "human"]
    try:
        with RaiseOnSignals(f"rendering {agent_name} on {env_id}"):
            env = _make_env(env_id)
            try:
                return _play_episodes(
                    agent, env, env_id, targets, episodes, seed, deterministic, max_steps,
                    fps or env.metadata.get("render_fps") or 30, probe, fit_probe, agent_name,
                    device,
                )  # fmt: skip
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
    env: Any,
    env_id: str,
    targets: Sequence[str | Path],
    episodes: int,
    seed: int,
    deterministic: bool,
    max_steps: int | None,
    fps: float,
    probe: VelocityProbe | None,
    fit_probe: bool,
    agent_name: str,
    device: torch.device | str,
) -> RenderResult:
    """:func:`play` once its arguments are checked and ``env`` is made."""
    from envs.spaces import encode
    from rlrnn.probe import agent_step, fit_velocity_probe, has_cartpole_state

    if any(Path(str(t)).suffix.lower() == ".gif" for t in targets):
        _check_gif_memory(env, env_id, episodes, max_steps)
    # The probe reads rlrnn agents' states; other policies (SB3's) only act.
    recurrent = isinstance(agent, ActorCritic) and agent.initial_state(1).h.shape[0] > 0
    if probe is None and fit_probe and recurrent and has_cartpole_state(env_id):
        probe = fit_velocity_probe(agent, env_id, device=device)
    result = RenderResult(
        outputs=[str(t) for t in targets], estimates=recurrent and probe is not None
    )
    sinks: list[FrameSink] = []
    ok = False
    try:
        for target in targets:
            sinks.append(make_sink(target, fps, f"rlrnn: {agent_name} on {env_id}"))
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            state = agent.initial_state(1, device)
            starts = torch.ones(1, device=device)
            episode_return, step = 0.0, 0
            while True:
                seen = encode(env.observation_space, np.asarray(obs)[None])  # (1, obs_dim)
                obs_t = torch.as_tensor(seen, device=device)
                truth = _true_velocities(env)
                estimate = None
                if recurrent:
                    actions, state, features = agent_step(
                        agent, obs_t.reshape(1, -1), state, starts, deterministic
                    )
                    if probe is not None and truth is not None:
                        estimate = probe.predict(features.cpu().numpy())[0]
                else:
                    actions, state = agent.act(obs_t.reshape(1, -1), state, starts, deterministic)
                starts = torch.zeros(1, device=device)
                frame = draw_overlay(
                    env.render(),
                    overlay_lines(agent_name, episode, step, episode_return, truth, estimate),
                )
                result.frames += 1
                if not all([sink.add(frame) for sink in sinks]):  # every sink sees the frame
                    result.stopped = True
                    break
                obs, reward, terminated, truncated, _ = env.step(int(actions[0]))
                episode_return += float(reward)
                step += 1
                if terminated or truncated or (max_steps is not None and step >= max_steps):
                    break
            result.returns.append(episode_return)
            result.lengths.append(step)
            if result.stopped:
                break
        ok = True
    finally:
        _close_all(sinks, ok)
    return result


def _check_gif_memory(env: Any, env_id: str, episodes: int, max_steps: int | None) -> None:
    """A GIF keeps every frame until the end: refuse one whose frames cannot fit."""
    limit = env.spec.max_episode_steps if env.spec is not None else None
    steps = min(s for s in (max_steps, limit) if s is not None) if (max_steps or limit) else None
    if steps is None:
        raise UsageError(f"env {env_id!r} has no time limit: give --render-max-steps for a GIF")
    env.reset(seed=0)
    height, width = np.asarray(env.render()).shape[:2]
    frames = episodes * steps
    check_fits(
        frames * height * width * 1.1,  # a palettised byte per pixel, plus each image's header
        "cpu",
        f"a GIF of up to {frames:,} frames of {width}x{height}",
        "record fewer or shorter episodes (--render-episodes, --render-max-steps) or an --video",
    )


def _close_all(sinks: Sequence[FrameSink], ok: bool) -> None:
    """Close every sink (a failed one discards its file) even if one of them fails."""
    error: BaseException | None = None
    for sink in sinks:
        try:
            sink.close(ok and error is None)
        except BaseException as e:
            error = error or e
    if error is not None:
        raise error
