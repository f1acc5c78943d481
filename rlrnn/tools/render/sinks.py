"""Where rendered frames go: a real-time window, or an MP4 or a GIF written atomically.

SIGINT and SIGTERM stop a recording at once, discarding it (an existing file of that name is left
as it was): SDL, which pygame starts for the window, is told to leave both signals to Python
(``SDL_NO_SIGNAL_HANDLERS``); otherwise it turns SIGTERM into an event nobody reads, and
``kill`` would not stop a recording.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rlrnn.errors import UsageError, WriteFailed
from rlrnn.files import TempOutput, atomic_output, check_output_path, os_error, write_failed
from rlrnn.learning.memory import check_fits

VIDEO_SUFFIXES = (".mp4", ".gif")
GIF_COLORS = 64  # palette size of each GIF frame: the cart-pole has few colours
NO_WINDOW_DRIVERS = ("dummy", "offscreen")  # SDL video drivers that show nothing


def quiet_pygame() -> None:
    """Before pygame starts: no banner, and SIGINT / SIGTERM stay Python's (see above)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")


def check_display() -> None:
    """A UsageError unless a window can really be shown here."""
    quiet_pygame()
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


def check_gif_memory(env: Any, env_id: str, episodes: int, max_steps: int | None) -> None:
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


def close_all(sinks: Sequence[FrameSink], ok: bool) -> None:
    """Close every sink (a failed one discards its file) even if one of them fails."""
    error: BaseException | None = None
    for sink in sinks:
        try:
            sink.close(ok and error is None)
        except BaseException as e:
            error = error or e
    if error is not None:
        raise error
