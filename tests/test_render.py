"""Watching a policy: frames, overlay, MP4/GIF files and the evaluate flags, all headless."""

import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from envs import TensorCartPole, TensorPendulum
from rlrnn.cli import main
from rlrnn.errors import UsageError
from rlrnn.files import check_output_path
from rlrnn.learning.config import PPOConfig
from rlrnn.runs.loading import load_checkpoint
from rlrnn.tools.render import rendering, sinks
from rlrnn.tools.render.overlay import draw_overlay, overlay_lines
from rlrnn.tools.render.rendering import RenderRequest, render_episodes

ROOT = Path(__file__).resolve().parents[1]
ENV = "PositionOnlyCartPole-v1"
TINY = PPOConfig(total_timesteps=2048, num_envs=16, num_steps=16)
PENDULUM = "PositionOnlyPendulum-v1"


@pytest.fixture(scope="module")
def runs(tiny_run) -> dict[str, Path]:
    return {agent: tiny_run(agent) for agent in ("lstm", "mlp")}


@pytest.fixture(scope="module")
def pendulum_run(tiny_run) -> Path:
    return tiny_run("lstm", PENDULUM)


def agent_of(run: Path):
    agent, config, _ = load_checkpoint(run / "final.pt")
    return agent, config


def read_frames(path: Path) -> np.ndarray:
    with imageio.get_reader(path) as reader:
        return np.stack([np.asarray(f)[..., :3] for f in reader])


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_gif_has_one_frame_per_step_and_reopens(runs, tmp_path):
    agent, config = agent_of(runs["lstm"])
    out = tmp_path / "play.gif"
    result = render_episodes(
        agent, config.env_id, [out], episodes=2, max_steps=12, agent_name="lstm"
    )
    assert result.frames == sum(result.lengths) and len(result.lengths) == 2
    assert all(0 < n <= 12 for n in result.lengths)
    assert result.estimates  # a recurrent agent gets velocity estimates from a fitted probe
    frames = read_frames(out)
    assert frames.shape == (result.frames, 400, 600, 3)
    for frame in frames[[0, -1]]:
        assert frame.std() > 10  # not blank: white background, black cart, grey overlay box
        assert (frame.sum(-1) < 60).mean() > 0.002  # the black cart and the overlay's text
    assert not np.array_equal(frames[0], frames[1])  # the step counter moves at least
    assert leftovers(tmp_path) == []


def test_mp4_reopens_with_every_frame(runs, tmp_path):
    agent, config = agent_of(runs["mlp"])
    out = tmp_path / "play.mp4"
    result = render_episodes(agent, config.env_id, [out], episodes=1, max_steps=9)
    assert not result.estimates  # a feedforward agent keeps no state to read velocities from
    frames = read_frames(out)
    assert frames.shape == (result.frames, 400, 600, 3) and result.frames == result.lengths[0]
    assert frames[-1].std() > 10
    assert leftovers(tmp_path) == []


def test_window_plays_headless(runs, monkeypatch):
    agent, config = agent_of(runs["lstm"])
    with pytest.raises(UsageError, match=r"no display to show a window on .*'dummy'"):
        render_episodes(
            agent, config.env_id, ["human"], max_steps=5, fps=1000
        )  # it would show nothing
    monkeypatch.setattr(sinks, "NO_WINDOW_DRIVERS", ())  # the window code, shown nowhere
    result = render_episodes(agent, config.env_id, ["human"], max_steps=5, fps=1000)
    assert result.frames == result.lengths[0] <= 5 and not result.stopped


def test_overlay_text_and_box():
    cartpole = TensorCartPole.HIDDEN_VELOCITIES
    lines = overlay_lines(
        "lstm", 0, 7, 7.0, cartpole, np.array([0.5, -1.25]), np.array([0.4, -1.0])
    )
    assert lines[0] == "lstm  episode 1  step 7  return 7"
    assert lines[2].startswith("cart (m/s)") and lines[3].startswith("pole (rad/s)")
    assert "+0.50" in lines[2] and "+0.40" in lines[2] and "-1.25" in lines[3]
    assert len(overlay_lines("mlp", 0, 0, 0.0, cartpole, np.zeros(2), None)[1].split()) == 3
    pendulum = overlay_lines("gru", 1, 3, -4.5, TensorPendulum.HIDDEN_VELOCITIES, [2.0], [1.5])
    assert pendulum[2].split() == ["pendulum", "(rad/s)", "+2.00", "+1.50"]
    assert len(pendulum) == 3 and len({len(line) for line in pendulum[1:]}) == 1  # aligned
    assert overlay_lines("mlp", 0, 0, 0.0, (), None, None) == ["mlp  episode 1  step 0  return 0"]
    frame = np.full((400, 600, 3), 255, dtype=np.uint8)
    drawn = draw_overlay(frame, lines)
    assert drawn.shape == frame.shape and (drawn != 255).any()
    assert (drawn[300:] == 255).all()  # only the top-left corner is written on


def test_a_pendulum_gif_shows_the_angular_velocity_and_the_agents_estimate(
    pendulum_run, tmp_path, monkeypatch
):
    agent, config = agent_of(pendulum_run)
    assert config.env_id == PENDULUM and agent.continuous
    shown: list[list[str]] = []

    def spy(*args):
        shown.append(overlay_lines(*args))
        return shown[-1]

    monkeypatch.setattr(rendering, "overlay_lines", spy)
    out = tmp_path / "pendulum.gif"
    result = render_episodes(agent, PENDULUM, [out], max_steps=8, agent_name="lstm")
    assert result.estimates and result.frames == result.lengths[0] == 8 == len(shown)
    frames = read_frames(out)
    assert frames.shape == (8, 500, 500, 3)
    assert (frames[0, :70].sum(-1) < 150).mean() > 0.01  # the overlay's dark text, at the top
    assert (np.abs(frames[0].astype(int) - [204, 77, 77]).sum(-1) < 40).mean() > 0.005  # the rod
    for lines in shown:
        assert lines[1].split() == ["hidden", "velocity", "true", "agent"]
        name, unit, true, estimate = lines[2].split()
        assert (name, unit) == ("pendulum", "(rad/s)") and len(lines) == 3
        assert abs(float(true)) <= 8 and np.isfinite(float(estimate))  # θ̇ is bounded by ±8
    assert leftovers(tmp_path) == []


def test_failed_recording_leaves_no_file(runs, tmp_path):
    agent, config = agent_of(runs["mlp"])
    calls = 0
    act = agent.act

    def failing_act(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls > 3:
            raise RuntimeError("boom")
        return act(*args, **kwargs)

    agent.act = failing_act
    for name in ("a.gif", "a.mp4"):
        calls = 0
        with pytest.raises(RuntimeError, match="boom"):
            render_episodes(agent, config.env_id, [tmp_path / name], max_steps=50)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "suffixes", "fragment"),
    [
        (lambda d: d / "missing" / "x.gif", (".gif",), "does not exist"),
        (lambda d: d, (".gif",), "unknown file type"),
        (lambda d: d / "x.avi", (".mp4", ".gif"), "unknown file type '.avi'"),
        (lambda d: (d / "dir.gif").mkdir() or d / "dir.gif", (".gif",), "is a directory"),
    ],
)
def test_output_path_checks(tmp_path, make, suffixes, fragment):
    with pytest.raises(UsageError, match=fragment):
        check_output_path(make(tmp_path), suffixes)


def test_render_request_is_checked_before_any_work(tmp_path, monkeypatch):
    assert RenderRequest.create() is None
    with pytest.raises(UsageError, match="no display"):
        RenderRequest.create(True)
    for fps in (float("nan"), float("inf"), 0.0):
        with pytest.raises(UsageError, match="--fps must be a number > 0"):
            RenderRequest.create(gif=tmp_path / "x.gif", fps=fps)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(UsageError, match="writing MP4 needs ffmpeg"):
        RenderRequest.create(video=tmp_path / "x.mp4")
    monkeypatch.undo()
    monkeypatch.setattr(sinks, "NO_WINDOW_DRIVERS", ())
    with pytest.raises(UsageError, match=r"unknown file type '\.gif'"):
        RenderRequest.create(video=tmp_path / "x.gif")
    with pytest.raises(UsageError, match="render-episodes"):
        RenderRequest.create(gif=tmp_path / "x.gif", episodes=0)
    request = RenderRequest.create(True, tmp_path / "x.mp4", tmp_path / "x.gif", max_steps=3)
    assert request.targets == ("human", str(tmp_path / "x.mp4"), str(tmp_path / "x.gif"))


def test_evaluate_records_gif_and_reports_it(runs, tmp_path, capsys):
    out = tmp_path / "eval.gif"
    argv = ["evaluate", str(runs["lstm"]), "--episodes", "2", "--gif", str(out)]
    assert main([*argv, "--render-max-steps", "6", "--render-episodes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rendered = report["rendered"]
    assert rendered["outputs"] == [str(out)] and rendered["velocity_estimates"]
    assert len(read_frames(out)) == rendered["frames"] == sum(rendered["lengths"])
    assert report["episodes"] == 2  # the evaluation still runs


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--video", "{tmp}/no/such/dir/x.mp4"], "does not exist"),
        (["--video", "{tmp}"], "unknown file type"),
        (["--video", "{tmp}/x.avi"], "unknown file type '.avi'; use .mp4"),
        (["--gif", "{tmp}/x.mp4"], "use .gif"),
        (["--gif", "{tmp}/x.gif", "--render-episodes", "0"], "--render-episodes must be >= 1"),
        (["--gif", "{tmp}/x.gif", "--render-max-steps", "0"], "--render-max-steps must be >= 1"),
        (["--render", "window"], "invalid choice: 'window'"),
    ],
)
def test_evaluate_bad_render_flags(runs, tmp_path, capsys, flags, fragment, cli):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    assert cli(["evaluate", str(runs["lstm"]), "--episodes", "1", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert [p for p in tmp_path.iterdir() if p.is_file()] == []


def test_evaluate_script_refuses_bad_video_path_before_loading(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), str(tmp_path / "no-run"),
         "--video", str(tmp_path / "missing" / "x.mp4")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and "Traceback" not in result.stderr
