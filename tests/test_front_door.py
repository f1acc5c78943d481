"""One front door: ``rlrnn train`` and ``rlrnn.train`` pass the same checks
(:mod:`rlrnn.runs.start`), so each refusal is made by both, with the same typed error; the
library's message names fields and arguments, the command line's the same message with its
options; and a refused call leaves the run folder byte for byte as it was."""

import dataclasses
from pathlib import Path

import pytest

from envs import EnvError
from rlrnn import default_config, train
from rlrnn.cli import describe_error, main
from rlrnn.errors import (
    EnvNotTrusted,
    MemoryBudgetExceeded,
    ResumeRefused,
    RunFolderRefused,
    UsageError,
)
from rlrnn.runs.start import check_run, saved_config

# A tiny run, as the command line's options below make it.
OPTIONS = ["--total-timesteps", "1024", "--num-envs", "16", "--num-steps", "16"]
OPTIONS += ["--eval-interval", "0", "--eval-episodes", "2", "--checkpoint-interval", "0"]
BASE = default_config("lstm")
TINY = dataclasses.replace(
    BASE,
    ppo=dataclasses.replace(BASE.ppo, total_timesteps=1024, num_envs=16, num_steps=16),
    eval_interval=0,
    eval_episodes=2,
    checkpoint_interval=0,
)


def ppo(config, **changes):
    return dataclasses.replace(config, ppo=dataclasses.replace(config.ppo, **changes))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("front") / "run"
    train(TINY, run, show_progress=False)
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# (id, the API call on (finished run, fresh folder), the command line's arguments, the error)
CASES = [
    (
        "resume-changes-gamma",
        lambda run, new: train(ppo(TINY, gamma=0.9), run, show_progress=False, resume=True),
        lambda run, new: ["--resume", str(run), "--gamma", "0.9"],
        ResumeRefused,
    ),
    (
        "resume-nothing-left",
        lambda run, new: train(TINY, run, show_progress=False, resume=True),
        lambda run, new: ["--resume", str(run)],
        ResumeRefused,
    ),
    (
        "resume-no-folder",
        lambda run, new: train(TINY, new, show_progress=False, resume=True),
        lambda run, new: ["--resume", str(new)],
        ResumeRefused,
    ),
    (
        "resume-sb3",
        lambda run, new: train(default_config("sb3-ppo"), run, show_progress=False, resume=True),
        lambda run, new: ["--resume", str(run), "--agent", "sb3-ppo"],
        ResumeRefused,
    ),
    (
        "folder-holds-a-run",
        lambda run, new: train(TINY, run, show_progress=False),
        lambda run, new: ["--run-dir", str(run), *OPTIONS],
        RunFolderRefused,
    ),
    (
        "unknown-env",
        lambda run, new: train(dataclasses.replace(TINY, env_id="NoSuchEnv-v0"), new),
        lambda run, new: ["--run-dir", str(new), *OPTIONS, "--env", "NoSuchEnv-v0"],
        EnvError,
    ),
    (
        "memory-budget",
        lambda run, new: train(ppo(TINY, num_envs=10_000_000, total_timesteps=10**9), new),
        lambda run, new: [
            "--run-dir",
            str(new),
            *OPTIONS,
            "--num-envs",
            "10000000",
            "--total-timesteps",
            "1000000000",
        ],
        MemoryBudgetExceeded,
    ),
]


@pytest.mark.parametrize(("api", "cli", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_cli_and_the_api_refuse_the_same_runs_and_leave_them_untouched(
    finished, tmp_path, capsys, api, cli, error
):
    new = tmp_path / "new"
    before = snapshot(finished)
    with pytest.raises(error) as raised:
        api(finished, new)
    capsys.readouterr()
    assert main(["train", *cli(finished, new)]) == 2
    err = capsys.readouterr().err
    # The command line says what the library said, each field named by its option.
    assert err == f"rlrnn train: error: {describe_error(raised.value)}\n"
    assert snapshot(finished) == before and not new.exists()


def test_the_library_names_fields_and_the_command_line_names_options(finished, tmp_path):
    with pytest.raises(ResumeRefused) as raised:
        train(TINY, finished, show_progress=False, resume=True)
    assert "pass a larger total_timesteps" in str(raised.value)
    assert "pass a larger --total-timesteps" in describe_error(raised.value)
    with pytest.raises(RunFolderRefused) as raised:
        train(TINY, finished, show_progress=False)
    assert "continue that run with resume=True" in str(raised.value)
    assert "continue that run with --resume" in describe_error(raised.value)
    with pytest.raises(MemoryBudgetExceeded) as raised:
        check_run(ppo(TINY, num_envs=10_000_000, total_timesteps=10**9), tmp_path / "x")
    assert raised.value.fields == ("num_envs", "num_steps", "hidden_size")
    assert "lower --num-envs, --num-steps or --hidden-size" in describe_error(raised.value)


def test_a_resume_through_the_api_keeps_the_saved_config_and_extends_only_what_may_change(
    finished, tmp_path
):
    config = saved_config(finished)
    assert config == TINY
    changed = rf"changes ppo\.gamma \({config.ppo.gamma:g} -> 0\.9\)"
    with pytest.raises(ResumeRefused, match=changed):
        train(ppo(config, gamma=0.9), finished, show_progress=False, resume=True)
    assert saved_config(finished).ppo.gamma == TINY.ppo.gamma


def test_a_config_file_naming_a_module_is_not_trusted_by_either_door(tmp_path, capsys):
    env = "spaces_envs:NoSuchEnv-v0"
    path = tmp_path / "config.json"
    path.write_text(dataclasses.replace(TINY, env_id=env).to_json())
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "rlrnn does not import a module that a file names" in err and "--env" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(EnvNotTrusted, match="pass env_id"):
        from rlrnn.runs.checkpoint import env_id_from_file

        env_id_from_file(env, path)


def test_every_refusal_is_a_usage_error(finished, tmp_path):
    for error in (ResumeRefused, RunFolderRefused, MemoryBudgetExceeded, EnvNotTrusted):
        assert issubclass(error, UsageError)


def test_evaluate_makes_its_env_once_for_all_its_checks(tmp_path, monkeypatch, capsys):
    import gymnasium as gym

    run = tmp_path / "acrobot"
    train(dataclasses.replace(TINY, env_id="Acrobot-v1"), run, show_progress=False)
    made = []
    make = gym.make
    monkeypatch.setattr(gym, "make", lambda *a, **k: made.append(a[0]) or make(*a, **k))
    args = ["evaluate", str(run), "--episodes", "2", "--max-episode-steps", "5", "--env"]
    assert main([*args, "Acrobot-v1"]) == 0
    # One for the checks (the id, the checkpoint's fit, the memory budget), one per episode.
    assert made == ["Acrobot-v1"] * 3, made
    assert "2 episodes" in capsys.readouterr().out
