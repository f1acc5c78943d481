"""The text drawn over each rendered frame: the step and return, then the velocities the agent
cannot see (true) beside its own estimate of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.protocol import HiddenVelocity


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
    hidden: Sequence[HiddenVelocity],
    true_velocities: np.ndarray | None,
    estimated_velocities: np.ndarray | None,
) -> list[str]:
    """The overlay's text: step and return, then each of ``hidden`` (true, agent's)."""
    lines = [f"{agent_name}  episode {episode + 1}  step {step}  return {episode_return:g}"]
    if true_velocities is not None:
        names = [f"{v.short} ({v.unit})" for v in hidden]
        width = max(22, *(len(name) + 2 for name in names))  # the columns line up
        lines.append(
            f"{'hidden velocity':<{width}}{'true':>7}"
            + (f"{'agent':>8}" if estimated_velocities is not None else "")
        )
        for k, name in enumerate(names):
            line = f"{name:<{width}}{true_velocities[k]:+7.2f}"
            if estimated_velocities is not None:
                line += f"{estimated_velocities[k]:+8.2f}"
            lines.append(line)
    return lines
