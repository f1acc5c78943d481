"""A sweep of wrong, hostile and damaged invocations of every command: each ends with exit code 2,
one clear line on stderr and no traceback; across the sweep no file is left behind, none is lost
or changed, no module a file names is imported, and no command allocates much beyond its imports.

Each command runs in a process of its own, forked from one that has imported rlrnn already
(``tests/forkrun.py``, the ``forked`` fixture), so ~100 commands cost seconds, not minutes.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from rlrnn.learning.config import PPOConfig, RunConfig
from rlrnn.learning.hyperparams import LogRange, default_config, search_space, with_values
from rlrnn.runs.folder import LOCK, prepare_run_dir
from rlrnn.runs.lock import RunLock
from rlrnn.runs.training import train
from rlrnn.tools.common.storage import create_study, open_storage
from rlrnn.tools.compare.compare import plan_runs
from rlrnn.tools.tune.setup import Setup

HOSTILE = Path(__file__).resolve().parent / "hostile"  # env modules that misbehave
EVIL = "evilenv:Evil-v0"  # names a module shipped beside a checkpoint
NO_FFMPEG = {"IMAGEIO_FFMPEG_EXE": "/nonexistent/ffmpeg"}
BIG = str(2**64)
# A study in a journal file, made for the lstm's defaults (see ``make_studies``).
SHARED = ["tune", "--storage", "journal:{tmp}/study.log", "--study", "shared"]

# (entry, arguments, a fragment of the one-line message[, environment variables]);
# {run}, {tmp}, {shared} are filled in. Entries: train.py, evaluate.py, python -m rlrnn.cli.
CASES = [
    # ---- unknown ids, impossible values, missing or damaged files (the first sweep)
    ("train", ["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    ("train", ["--env", "hostile_envs:MultiBinaryActions-v0"], "needs a Discrete or Box action space, has MultiBinary(2)"),
    ("train", ["--env", "hostile_envs:DictActions-v0"], "needs a Discrete or Box action space, has Dict("),
    ("train", ["--env", "hostile_envs:InfiniteBoxActions-v0"], "has a Box action space with infinite bounds"),
    ("train", ["--agent", "transformer"], "invalid choice: 'transformer'"),
    ("train", ["--num-envs", "0"], "num_envs must be >= 1, got 0"),
    ("train", ["--num-steps", "-3"], "num_steps must be >= 1, got -3"),
    ("train", ["--learning-rate", "fast"], "invalid float value: 'fast'"),
    ("train", ["--learning-rate", "0"], "learning_rate must be > 0"),
    ("train", ["--gamma", "1.5"], "gamma must be in (0, 1]"),
    ("train", ["--total-timesteps", "10"], "less than one rollout"),
    ("train", ["--num-minibatches", "3"], "must divide num_envs"),
    ("train", ["--bptt-len", "0"], "bptt_len must be >= 1, got 0"),
    ("train", ["--bptt-len", "-4"], "bptt_len must be >= 1, got -4"),
    ("train", ["--bptt-len", "5"], "bptt_len (5) must divide num_steps (16)"),
    ("train", ["--bptt-len", "32"], "bptt_len (32) must divide num_steps (16)"),
    ("train", ["--bptt-len", "long"], "argument --bptt-len: invalid int value: 'long'"),
    ("train", ["--num-envs", "3", "--bptt-len", "8", "--num-minibatches", "4"], "num_minibatches (4) must divide the 6 sequences of a rollout"),
    ("train", ["--agent", "sb3-recurrentppo", "--bptt-len", "8"], "--bptt-len is for rlrnn's agents, not sb3-recurrentppo"),
    ("train", ["--hidden-size", "0"], "hidden_size must be >= 1, got 0"),
    ("train", ["--agent", "framestack", "--frame-stack", "0"], "frame_stack (k) must be >= 1"),
    ("train", ["--run-dir", "{tmp}/blocker/run"], "cannot write run directory"),
    ("train", ["--resume", "{tmp}/no-such-run"], "no such run folder"),
    ("train", ["--resume", "{tmp}/empty"], "no last.pt in it"),
    ("train", ["--resume", "{run}"], "pass a larger --total-timesteps"),
    ("train", ["--resume", "{run}", "--agent", "gru"], "changes agent.agent (lstm -> gru)"),
    ("evaluate", ["{tmp}/no-such-run"], "checkpoint not found"),
    ("evaluate", ["{tmp}/folder.pt"], "checkpoint not found"),
    ("evaluate", ["{tmp}/truncated.pt"], "damaged or not an rlrnn checkpoint"),
    ("evaluate", ["{tmp}/notes.txt"], "damaged or not an rlrnn checkpoint"),
    ("evaluate", ["{tmp}/newer.pt"], "written by a newer rlrnn"),
    ("evaluate", ["{run}", "--episodes", "0"], "--episodes must be >= 1, got 0"),
    ("evaluate", ["{run}", "--episodes", "many"], "invalid int value: 'many'"),
    ("evaluate", ["{run}", "--obs-noise", "-1"], "--obs-noise must be >= 0"),
    ("evaluate", ["{run}", "--env", "CartPole-v1"], "does not fit CartPole-v1"),
    ("evaluate", ["{run}", "--gif", "{tmp}/out.txt"], "unknown file type '.txt'"),
    ("evaluate", ["{run}", "--gif", "{tmp}/empty"], "unknown file type"),
    ("evaluate", ["{run}", "--video", "{tmp}/nowhere/out.mp4"], "does not exist"),
    ("rlrnn", ["compare", "--agents", "transformer"], "unknown agent 'transformer'"),
    ("rlrnn", ["compare", "--seeds", "0"], "--seeds must be >= 1, got 0"),
    ("rlrnn", ["compare", "--out", "{tmp}/blocker"], "is a file, not a folder"),
    ("rlrnn", ["compare", "--env", "CartPole-v1", "--runs", "{run}"], "not CartPole-v1"),
    ("rlrnn", ["probe", "{tmp}/no-such-run"], "checkpoint not found"),
    ("rlrnn", ["probe", "{run}", "--out", "{tmp}/probe.png.jpg"], "unknown file type '.jpg'"),
    ("rlrnn", ["gradflow", "--steps", "0"], "steps must be >= 1, got 0"),
    ("rlrnn", ["gradflow", "--cores", "transformer"], "transformer"),
    ("rlrnn", ["nonsense"], "invalid choice: 'nonsense'"),
    # ---- no code from files: an env id a file names is made only if already registered
    ("evaluate", ["{shared}/evil.pt"], f"not registered; rlrnn does not import a module that a file names: if you trust it, pass --env {EVIL}"),
    ("evaluate", ["{shared}/evilrun"], f"pass --env {EVIL}"),
    ("evaluate", ["{shared}/evilrun", "--checkpoint", "last"], f"pass --env {EVIL}"),
    ("evaluate", ["{shared}/evil-sb3.pt"], f"pass --env {EVIL}"),
    ("evaluate", ["{shared}/this.pt"], "pass --env this:PositionOnlyCartPole-v1"),
    ("rlrnn", ["probe", "{shared}/evil.pt"], f"pass --env {EVIL}"),
    ("rlrnn", ["gradflow", "{shared}/evilrun", "--clip-steps", "0"], f"pass --env {EVIL}"),
    ("train", ["--resume", "{shared}/evilrun", "--total-timesteps", "4096"], f"pass --env {EVIL}"),
    ("rlrnn", ["compare", "--runs", "{shared}/evilrun"], f"is from env {EVIL}, not Position"),
    # ---- nothing deleted that rlrnn cannot prove it made
    ("rlrnn", ["compare", "--agents", "mlp", "--seeds", "1", "--out", "{tmp}/out-notes"], "rlrnn cannot tell that it made that folder (no .rlrnn-run in it)"),
    # ---- one writer per run folder (the sweep holds the lock of {tmp}/locked)
    ("train", ["--resume", "{tmp}/locked", "--total-timesteps", "4096"], f"{{tmp}}/locked is in use by process {os.getpid()} on"),
    # ---- a run folder is data: no link in it is followed to write or delete (see linked_runs)
    ("train", ["--resume", "{tmp}/linked-lock", "--total-timesteps", "4096"], "linked-lock/.rlrnn-lock is a symbolic link, and rlrnn follows no link inside a run folder"),
    ("train", ["--resume", "{tmp}/linked-tb", "--total-timesteps", "4096"], "linked-tb/tb is a symbolic link"),
    ("rlrnn", ["compare", "--agents", "mlp", "--seeds", "1", "--out", "{tmp}/out-linked-tb"], "mlp-s0/tb is a symbolic link"),
    ("rlrnn", ["compare", "--agents", "mlp", "--seeds", "1", "--out", "{tmp}/out-linked-runs"], "out-linked-runs/runs is a symbolic link, and rlrnn follows no link inside a report folder"),
    # ---- a run folder's name too long for the file system
    ("train", ["--run-dir", "{tmp}/" + "a" * 300], "cannot use run directory"),
    ("train", ["--run-name", "a" * 300], "File name too long"),
    ("rlrnn", ["compare", "--out", "{tmp}/" + "a" * 300], "File name too long"),
    ("evaluate", ["{tmp}/" + "a" * 300], "File name too long"),
    ("train", ["--resume", "{tmp}/" + "a" * 300], "File name too long"),
    ("rlrnn", ["compare", "--runs", "{tmp}/" + "a" * 300], "File name too long"),
    ("rlrnn", ["probe", "{run}", "--out", "{tmp}/" + "a" * 300 + ".png"], "File name too long"),
    ("evaluate", ["{run}", "--gif", "{tmp}/" + "a" * 300 + ".gif"], "File name too long"),
    ("rlrnn", ["tune", "--out", "{tmp}/" + "a" * 300], "File name too long"),
    ("rlrnn", ["compare", "--runs", "{tmp}/nested-summary"], "nested-summary/summary.json is damaged (JSON nested too deeply)"),
    ("rlrnn", ["compare", "--agents", "mlp", "--seeds", "1", "--out", "{tmp}/out-linked-configs"], "out-linked-configs/configs is a symbolic link"),
    # ---- bounded memory: sizes checked against an estimate before anything is allocated
    ("train", ["--num-envs", "10000000", "--total-timesteps", "1000000000"], "more than the limit of"),
    ("train", ["--hidden-size", "3000000", "--num-envs", "8"], "lower --num-envs, --num-steps or --hidden-size"),
    ("train", ["--agent", "sb3-ppo", "--num-envs", "10000000", "--total-timesteps", "1000000000"], "more than the limit of"),
    ("evaluate", ["{run}", "--episodes", "2000000000"], "playing 2,000,000,000 episodes at once"),
    ("evaluate", ["{tmp}/huge.pt"], "actor_core.weights.0 is (128, 34) in the file, (48000, 12002) in the agent"),
    ("evaluate", ["{tmp}/huge-sb3.pt"], "does not match its agent sb3-recurrentppo (hidden_size 100000)"),
    ("evaluate", ["{run}", "--gif", "{tmp}/x.gif", "--render-episodes", "100000000"], "a GIF of up to 50,000,000,000 frames"),
    ("rlrnn", ["probe", "{run}", "--episodes", "100000000"], "probing 100,000,000 episodes needs about"),
    ("rlrnn", ["gradflow", "--batch", "100000000", "--clip-steps", "0", "--cores", "lstm"], "lower --batch or --steps"),
    ("rlrnn", ["compare", "--agents", "mlp", "--episodes", "2000000000", "--out", "{tmp}/o"], "lower --episodes"),
    # ---- damaged files: run folders, resume states, checkpoints that contradict themselves
    ("rlrnn", ["compare", "--runs", "{tmp}/bad-summary"], "bad-summary/summary.json is damaged (not JSON)"),
    ("rlrnn", ["compare", "--runs", "{tmp}/bad-config"], "bad-config/config.json is damaged (not JSON)"),
    ("rlrnn", ["compare", "--runs", "{tmp}/list-config"], "list-config/config.json is damaged (not a JSON object)"),
    ("rlrnn", ["compare", "--runs", "{tmp}/typed-config"], "typed-config/config.json is damaged (agent.hidden_size must be an integer"),
    ("rlrnn", ["compare", "--runs", "{tmp}/empty-summary"], "empty-summary/summary.json is damaged (not a summary of a finished run)"),
    ("rlrnn", ["compare", "--agents", "mlp", "--seeds", "1", "--out", "{tmp}/out-bad-config"], "mlp-s0/config.json is damaged (not JSON)"),
    ("rlrnn", ["compare", "--agents", "mlp", "--seeds", "1", "--out", "{tmp}/out-bad-summary"], "mlp-s0/summary.json is damaged (not JSON)"),
    ("train", ["--resume", "{tmp}/bad-loop", "--total-timesteps", "4096"], "its training state is damaged (Expecting value"),
    ("train", ["--resume", "{tmp}/bad-optimizer", "--total-timesteps", "4096"], "its training state is damaged (optimizer exp_avg of parameter 0 is wrong)"),
    ("train", ["--resume", "{tmp}/bad-env-state", "--total-timesteps", "4096"], "its training state is damaged (env.state is wrong)"),
    ("train", ["--resume", "{tmp}/bad-evals", "--total-timesteps", "4096"], "its training state is damaged (evaluation records are wrong)"),
    ("train", ["--resume", "{tmp}/no-trainer", "--total-timesteps", "4096"], "holds weights only, no training state"),
    ("train", ["--resume", "{tmp}/bad-config-json", "--total-timesteps", "4096"], "is damaged: its config is missing or not JSON"),
    ("train", ["--resume", "{tmp}/read-only", "--total-timesteps", "4096"], "cannot write run directory"),
    ("evaluate", ["{tmp}/obs-mismatch.pt"], "is damaged: its config names env CartPole-v1 (obs dim 4), but its weights are for obs dim 2"),
    ("evaluate", ["{tmp}/typed.pt"], "holds a config rlrnn cannot use: agent.hidden_size must be an integer, got 'abc'"),
    ("evaluate", ["{tmp}/negative-seed.pt"], "holds a config rlrnn cannot use: seed must be in [0, 2**32 - 1], got -1"),
    ("evaluate", ["{tmp}/no-tensors.pt"], "is damaged: its weights are not tensors"),
    ("evaluate", ["{run}", "--video", "{tmp}/x.mp4"], "writing MP4 needs ffmpeg, which is not found", NO_FFMPEG),
    ("evaluate", ["{run}", "--render", "human"], "no display to show a window on (SDL video driver 'dummy')", {"SDL_VIDEODRIVER": "dummy"}),
    # ---- edge values
    ("evaluate", ["{run}", "--gif", "{tmp}/x.gif", "--fps", "nan"], "argument --fps: not a finite number: 'nan'"),
    ("evaluate", ["{run}", "--gif", "{tmp}/x.gif", "--fps", "inf"], "argument --fps: not a finite number: 'inf'"),
    ("evaluate", ["{run}", "--gif", "{tmp}/x.gif", "--fps", "-5"], "--fps must be a number > 0, got -5"),
    ("evaluate", ["{run}", "--obs-noise", "inf"], "argument --obs-noise: not a finite number"),
    ("evaluate", ["{run}", "--obs-noise", "nan"], "argument --obs-noise: not a finite number"),
    ("evaluate", ["{run}", "--seed", "-1"], "argument --seed: seed must be in [0, 2**32 - 1], got -1"),
    ("evaluate", ["{run}", "--seed", BIG], f"seed must be in [0, 2**32 - 1], got {BIG}"),
    ("train", ["--seed", BIG], f"seed must be in [0, 2**32 - 1], got {BIG}"),
    ("train", ["--seed", "-1"], "seed must be in [0, 2**32 - 1], got -1"),
    ("train", ["--env", "Acrobot-v1", "--seed", "-1"], "seed must be in [0, 2**32 - 1], got -1"),
    ("train", ["--learning-rate", "inf"], "argument --learning-rate: not a finite number: 'inf'"),
    ("train", ["--learning-rate", "nan"], "argument --learning-rate: not a finite number: 'nan'"),
    ("train", ["--ent-coef", "inf"], "argument --ent-coef: not a finite number"),
    ("train", ["--vf-coef", "inf"], "argument --vf-coef: not a finite number"),
    ("train", ["--clip-coef", "inf"], "argument --clip-coef: not a finite number"),
    ("train", ["--max-grad-norm", "inf"], "argument --max-grad-norm: not a finite number"),
    ("train", ["--target-kl", "nan"], "argument --target-kl: not a finite number"),
    ("train", ["--env", "hostile_envs:EmptyObs-v0"], "has an empty observation space"),
    ("train", ["--env", "raising_env:Any-v0"], "cannot make env 'raising_env:Any-v0': RuntimeError: this module refuses to be imported"),
    ("evaluate", ["{run}", "--env", "raising_env:Any-v0"], "RuntimeError: this module refuses"),
    ("rlrnn", ["compare", "--env", "raising_env:Any-v0"], "RuntimeError: this module refuses"),
    ("rlrnn", ["compare", "--first-seed", "-1"], "argument --first-seed: seed must be in"),
    ("rlrnn", ["probe", "{run}", "--seed", "-5"], "argument --seed: seed must be in"),
    ("rlrnn", ["probe", "{run}", "--alpha", "nan"], "argument --alpha: not a finite number"),
    ("rlrnn", ["probe", "{run}", "--alpha", "inf"], "argument --alpha: not a finite number"),
    ("rlrnn", ["probe", "{run}", "--test-fraction", "nan"], "argument --test-fraction: not a finite"),
    ("rlrnn", ["gradflow", "--seed", BIG], "argument --seed: seed must be in"),
    ("rlrnn", ["gradflow", "--clip-seeds", "-1"], "argument --clip-seeds: seed must be in"),
    ("rlrnn", ["gradflow", "--forget-bias", "nan"], "argument --forget-bias: not a finite number"),
    ("rlrnn", ["gradflow", "--forget-bias", "inf"], "argument --forget-bias: not a finite number"),
    ("rlrnn", ["gradflow", "--clip-norms", "inf"], "argument --clip-norms: not a finite number"),
    # ---- config files, tuning studies and shared storages
    ("train", ["--config", "{tmp}/no-such.json"], "no such file"),
    ("train", ["--config", "{tmp}/notes.txt"], "not a JSON file"),
    ("train", ["--config", "{tmp}/wrong.json"], "does not match this version of rlrnn"),
    ("train", ["--resume", "{run}", "--config", "{tmp}/wrong.json"], "leave out --config"),
    ("rlrnn", ["tune", "--trials", "0"], "--trials must be >= 1, got 0"),
    ("rlrnn", ["tune", "--workers", "0"], "--workers must be >= 1, got 0"),
    ("rlrnn", ["tune", "--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open storage"),
    ("rlrnn", ["tune", "--storage", "::nonsense"], "is not a storage URL"),
    ("rlrnn", ["tune", "--storage", "journal:{tmp}/nowhere/study.log"], "does not exist"),
    ("rlrnn", ["tune", "--storage", "journal:{tmp}/empty"], "is a folder, not a journal"),
    ("rlrnn", [*SHARED, "--agent", "gru"], "base.agent.agent (lstm -> gru)"),
    ("rlrnn", [*SHARED, "--env", "CartPole-v1"], "base.env_id (PositionOnlyCartPole-v1 -> CartPole"),
    ("rlrnn", [*SHARED, "--objective", "final"], "objective (seconds -> final)"),
    ("rlrnn", [*SHARED[:-1], "oldspace"], "space.ppo.learning_rate"),
    # ---- issue 22: tune's options, storages and journals, refused before anything is written
    ("rlrnn", ["tune", "--sampler-seed", "-1", "--out", "{tmp}/o"], "argument --sampler-seed: seed must be in [0, 2**32 - 1], got -1"),
    ("rlrnn", ["tune", "--sampler-seed", BIG], "argument --sampler-seed: seed must be in"),
    ("rlrnn", ["tune", "--unsolved-penalty", "inf"], "argument --unsolved-penalty: not a finite number: 'inf'"),
    ("rlrnn", ["tune", "--unsolved-penalty", "1"], "--unsolved-penalty must be > 1, got 1.0"),
    ("rlrnn", ["tune", "--stays-solved-weight", "nan"], "argument --stays-solved-weight: not a finite number"),
    ("rlrnn", ["tune", "--eval-episodes", "200000000"], "evaluating 200,000,000 episodes at once (eval_episodes)"),
    ("rlrnn", ["tune", "--workers", "100000", "--out", "{tmp}/o"], "starting 100,000 worker processes needs about"),
    ("rlrnn", ["tune", "--storage", "sqlite:///:memory:", "--workers", "2"], "is an in-memory database, which no other process"),
    ("rlrnn", ["tune", "--storage", "sqlite://"], "is an in-memory database"),
    ("rlrnn", ["tune", "--storage", "{tmp}/nowhere/study.log"], "folder {tmp}/nowhere does not exist"),
    ("rlrnn", ["tune", "--storage", "journal:{tmp}/notes.txt"], "notes.txt is not an Optuna journal file"),
    ("rlrnn", ["tune", "--storage", "journal:{tmp}/damaged.log", "--study", "shared"], "damaged.log is damaged at record 1 (not a journal record), so the study cannot be read"),
    ("rlrnn", ["tune", "--storage", "{tmp}/cut.log", "--study", "shared", "--objective", "final"], "objective (seconds -> final)"),
    ("rlrnn", [*SHARED[:-1], "oldscoring"], "was made by an older rlrnn that scored its trials another way"),
    ("rlrnn", ["compare", "--storage", "::nonsense"], "is not a storage URL"),
    ("rlrnn", ["compare", "--study", "x"], "give --storage too"),
    # ---- issue 22: configs, sizes and envs checked before anything is made
    ("train", ["--torch-threads", "100000"], "torch_threads must be in [1, 1024], got 100000"),
    ("train", ["--config", "{tmp}/many-evals.json"], "evaluating 200,000,000 episodes at once (eval_episodes) in training needs about"),
    ("train", ["--eval-episodes", "200000000"], "lower --eval-episodes"),
    ("train", ["--config", "{tmp}/nested.json"], "nested.json: damaged (JSON nested too deeply)"),
    ("train", ["--config", "{tmp}/nested-agent.json"], "damaged (JSON nested too deeply)"),
    ("train", ["--config", "{tmp}/empty"], "empty: is a folder, not a config file"),
    ("train", ["--config", "{tmp}/huge.json"], "too large for a config file"),
    ("train", ["--config", "{tmp}/sigma.json"], "env id 'NoisyPositionOnlyCartPole-sigma-1-v1': the noise sigma must be a finite number >= 0, got -1.0"),
    ("train", ["--config", "{tmp}/float-size.json"], "agent.hidden_size must be an integer, got 32.5"),
    ("evaluate", ["{tmp}/nested-extra.pt"], "nested-extra.pt is damaged: its JSON is nested too deeply"),
    ("train", ["--env", "spaces_envs:HugeDiscreteObs-v0"], "has observations of 1,000,000,000 numbers (a Discrete or MultiDiscrete observation is one-hot encoded): its observation space is too large"),
]  # fmt: skip


def resave(source: Path, target: Path, change) -> None:
    """``target``: the checkpoint ``source`` with ``change(payload)`` applied."""
    payload = torch.load(source, weights_only=True)
    change(payload)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, target)


def config_change(**changes):
    """A change to a checkpoint's config: ``section__field=value`` or ``field=value``."""

    def change(payload):
        config = json.loads(payload["config"])
        for key, value in changes.items():
            section, _, name = key.rpartition("__")
            (config[section] if section else config)[name] = value
        payload["config"] = json.dumps(config)

    return change


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target


def read_only_copy(run: Path, target: Path) -> bool:
    """A copy of ``run`` that cannot be written: a read-only tmpfs where this machine lets us
    mount one (root ignores permissions), else a folder without write permission. False: root
    without mounts, where no folder is read-only (the case is skipped)."""
    copy_run(run, target)
    if os.geteuid() != 0:
        target.chmod(0o555)
        return True
    staging = target.with_name(target.name + "-files")
    target.rename(staging)
    target.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        shutil.rmtree(target)
        staging.rename(target)
        return False
    shutil.copytree(staging, target, dirs_exist_ok=True)
    shutil.rmtree(staging)
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
    return True


def evil_module(shared: Path) -> None:
    """A module that leaves a marker file if it is ever imported, beside the crafted files."""
    (shared / "evilenv.py").write_text(
        "import pathlib\n"
        "import gymnasium as gym\n"
        "pathlib.Path(__file__).with_name('IMPORTED').write_text('code from a file ran')\n"
        "gym.register('Evil-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv')\n"
    )


def sb3_weights(config: RunConfig) -> dict:
    from dataclasses import replace

    from rlrnn.runs.sb3 import build_model, make_vec_env

    one = replace(config, ppo=replace(config.ppo, num_envs=1, num_minibatches=1))
    return build_model(one, make_vec_env(one, 1), "cpu").policy.state_dict()


def make_studies(journal: Path) -> None:
    """``shared``: the study ``rlrnn tune`` makes for the lstm's defaults; ``oldspace``: the
    same with another learning-rate range, as an older rlrnn would have made it;
    ``oldscoring``: ``shared`` as an rlrnn that did not record its scoring made it. Beside the
    journal: ``damaged.log``, the same with a damaged record, and ``cut.log``, with half a
    record at its end (a process killed while writing it)."""
    base = with_values(default_config("lstm"), {"eval_interval": 2048})
    space = search_space("lstm")
    storage = open_storage(f"journal:{journal}", journal)
    for name, setup in (
        ("shared", Setup(base, space, threshold=475.0)),
        ("oldspace", Setup(base, space | {"ppo.learning_rate": LogRange(1e-5, 1e-3)})),
    ):
        create_study(storage, name, setup.direction, setup.attrs(), str(journal))
    old = {k: v for k, v in Setup(base, space, threshold=475.0).attrs().items() if k != "scoring"}
    create_study(storage, "oldscoring", "minimize", old, str(journal))
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.with_name("damaged.log").write_bytes(b"".join([lines[0], b"garbage\n", *lines[1:]]))
    journal.with_name("cut.log").write_bytes(b"".join(lines) + lines[1][: len(lines[1]) // 2])


def make_files(tmp: Path) -> tuple[Path, bool]:
    """The run, the crafted and the damaged files the cases name; returns the run and whether
    a read-only run folder could be made."""
    run = tmp / "run"
    config = RunConfig(ppo=PPOConfig(total_timesteps=1024), eval_interval=0, checkpoint_interval=0)
    train(config, run, False)
    (tmp / "blocker").write_text("a file where a folder is expected")
    (tmp / "empty").mkdir()
    (tmp / "folder.pt").mkdir()
    (tmp / "notes.txt").write_text("not a checkpoint")
    (tmp / "wrong.json").write_text(json.dumps({"agent": {"colour": "blue"}}))
    for name, data in (
        ("many-evals.json", {"eval_episodes": 200_000_000}),
        ("sigma.json", {"env_id": "NoisyPositionOnlyCartPole-sigma-1-v1"}),
        ("float-size.json", {"agent": {"agent": "gru", "hidden_size": 32.5}}),
    ):
        (tmp / name).write_text(json.dumps(data))
    (tmp / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp / "nested-agent.json").write_text('{"agent": ' + "[" * 50_000 + "]" * 50_000 + "}")
    (tmp / "huge.json").write_text(" " * 2_000_000 + "{}")
    make_studies(tmp / "study.log")
    final, last = run / "final.pt", run / "last.pt"
    (tmp / "truncated.pt").write_bytes(final.read_bytes()[:300])
    resave(final, tmp / "newer.pt", lambda p: p.update(version=p["version"] + 1))

    shared = tmp / "shared"  # what a stranger shares: checkpoints and a module beside them
    shared.mkdir()
    evil_module(shared)
    evil = config_change(env_id=EVIL)
    resave(final, shared / "evil.pt", evil)
    resave(final, shared / "this.pt", config_change(env_id="this:PositionOnlyCartPole-v1"))
    evilrun = copy_run(run, shared / "evilrun")
    for name in ("best.pt", "final.pt", "last.pt"):
        resave(evilrun / name, evilrun / name, evil)
    saved = json.loads((evilrun / "config.json").read_text())
    (evilrun / "config.json").write_text(json.dumps({**saved, "env_id": EVIL}))
    sb3 = default_config("sb3-ppo")
    resave(
        final,
        shared / "evil-sb3.pt",
        lambda p: p.update(
            config=json.dumps({**sb3.to_dict(), "env_id": EVIL}), model=sb3_weights(sb3)
        ),
    )

    resave(final, tmp / "huge.pt", config_change(agent__hidden_size=12_000))
    rppo = default_config("sb3-recurrentppo")
    resave(
        final,
        tmp / "huge-sb3.pt",
        lambda p: p.update(
            config=json.dumps({**rppo.to_dict(), "agent": {**rppo.to_dict()["agent"],
                                                           "hidden_size": 100_000}}),
            model=sb3_weights(rppo),
        ),
    )  # fmt: skip
    resave(final, tmp / "obs-mismatch.pt", config_change(env_id="CartPole-v1"))
    resave(final, tmp / "typed.pt", config_change(agent__hidden_size="abc"))
    resave(final, tmp / "negative-seed.pt", config_change(seed=-1))
    resave(final, tmp / "no-tensors.pt", lambda p: p.update(model={"weights": 1}))
    resave(final, tmp / "nested-extra.pt", lambda p: p.update(extra="[" * 100_000 + "]" * 100_000))

    nested = "[" * 100_000 + "]" * 100_000
    for name, text in (
        ("bad-summary", "{not json"),
        ("empty-summary", "{}"),
        ("nested-summary", nested),
    ):
        (copy_run(run, tmp / name) / "summary.json").write_text(text)
    for name, text in (("bad-config", "\x00garbage"), ("list-config", "[]")):
        (copy_run(run, tmp / name) / "config.json").write_text(text)
    typed = copy_run(run, tmp / "typed-config") / "config.json"
    typed.write_text(json.dumps({**saved, "agent": {**saved["agent"], "hidden_size": "32"}}))

    def trainer_change(change):
        return lambda p: change(p["trainer"])

    def bad_optimizer(trainer):
        for moments in trainer["ppo"]["optimizer"]["state"].values():
            moments["exp_avg"] = torch.zeros(3)

    for name, change in (
        ("bad-loop", trainer_change(lambda t: t.update(loop="garbage"))),
        ("bad-optimizer", trainer_change(bad_optimizer)),
        ("bad-env-state", trainer_change(lambda t: t["ppo"]["env"].update(state=torch.ones(2)))),
        ("bad-evals", trainer_change(lambda t: t.update(evals=json.dumps(
            {**json.loads(t["evals"]), "records": [{"env_steps": "x"}]})))),
        ("no-trainer", lambda p: p.pop("trainer")),
        ("bad-config-json", lambda p: p.update(config="{garbage")),
    ):  # fmt: skip
        resave(last, copy_run(run, tmp / name) / "last.pt", change)
    read_only = read_only_copy(run, tmp / "read-only")
    copy_run(run, tmp / "locked")

    spec = plan_runs(["mlp"], [0], "PositionOnlyCartPole-v1", tmp / "out", {"device": "cpu"})[0]
    notes = tmp / "out-notes" / "runs" / "mlp-s0"  # a user's folder where a run would go
    (notes / "tb").mkdir(parents=True)
    (notes / "notes.txt").write_text("my notes")
    (notes / "tb" / "events.out.tfevents.1.old").write_text("older logs")
    for name, file, text in (
        ("out-bad-config", "config.json", "{garbage"),
        ("out-bad-summary", "summary.json", "{garbage"),
    ):
        folder = tmp / name / "runs" / "mlp-s0"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(spec.config.to_json())
        (folder / file).write_text(text)
    linked_runs(tmp, run, spec.config)
    return run, read_only


def linked_runs(tmp: Path, run: Path, config: RunConfig) -> None:
    """Run folders whose links lead outside them: a lock linked to a user's file, ``tb/``
    linked to a folder of someone's logs (in a finished run, and in a compare run to clear),
    and a comparison whose ``runs/`` is a link. Whatever they point to stays unchanged."""
    (tmp / "victim.txt").write_text("a user's file")
    (tmp / "out-linked-configs").mkdir()  # a comparison's report configs/, linked elsewhere
    (tmp / "out-linked-configs" / "configs").symlink_to(tmp / "empty", target_is_directory=True)
    (copy_run(run, tmp / "linked-lock") / LOCK).symlink_to(tmp / "victim.txt")
    logs = copy_run(run / "tb", tmp / "their-logs")
    linked_tb = copy_run(run, tmp / "linked-tb")
    shutil.rmtree(linked_tb / "tb")
    (linked_tb / "tb").symlink_to(logs, target_is_directory=True)
    stopped = prepare_run_dir(tmp / "out-linked-tb" / "runs" / "mlp-s0")
    (stopped / "config.json").write_text(config.to_json())
    (stopped / "tb").symlink_to(logs, target_is_directory=True)
    (tmp / "elsewhere").mkdir()
    (tmp / "out-linked-runs").mkdir()
    (tmp / "out-linked-runs" / "runs").symlink_to(tmp / "elsewhere", target_is_directory=True)


def snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file and folder under ``root``: size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, forked):
    tmp = tmp_path_factory.mktemp("bad-input")
    run, read_only = make_files(tmp)
    work = tmp / "cwd"  # commands run here, so default output paths land inside tmp too
    work.mkdir()
    cases = [
        {
            "entry": entry,
            "args": [a.format(run=run, tmp=tmp, shared=tmp / "shared") for a in args],
            "cwd": str(work),
            "env": {"SDL_VIDEODRIVER": "dummy", **(env[0] if env else {})},
            "path": [str(HOSTILE), str(tmp / "shared")],  # so that an import would work
        }
        for entry, args, _, *env in CASES
    ]
    try:
        with RunLock(tmp / "locked"):  # a live writer: this process
            before = snapshot(tmp)
            report = forked(cases)
            after = snapshot(tmp)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(tmp / "read-only")], capture_output=True)
    return report["results"], before, after, report["runner_maxrss_kb"], tmp, read_only


def test_the_sweep_is_wide():
    assert len(CASES) >= 80
    assert {c[0] for c in CASES} == {"train", "evaluate", "rlrnn"}


@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(c[1]) for c in CASES])
def test_bad_invocation_is_one_clear_line_and_exit_2(outcomes, index):
    result, tmp, read_only = outcomes[0][index], outcomes[4], outcomes[5]
    if "{tmp}/read-only" in CASES[index][1] and not read_only:
        pytest.skip("no read-only folder on this machine (root without mounts)")
    fragment = CASES[index][2].format(tmp=tmp)
    lines = result["stderr"].strip().splitlines()
    assert result["returncode"] == 2, result["stderr"]
    assert len(lines) == 1, result["stderr"]
    assert "error:" in lines[0] and fragment in lines[0], lines[0]
    assert "Traceback" not in result["stderr"]


def test_no_file_is_left_behind_lost_or_changed(outcomes):
    _, before, after, *_ = outcomes
    assert set(after) - set(before) == set()  # nothing new (no TB file, no empty runs/ ...)
    assert set(before) - set(after) == set()  # nothing deleted
    assert {p for p in before if before[p] != after[p] and p.is_file()} == set()  # nor changed


def test_no_module_a_file_names_is_ever_imported(outcomes):
    results, _, _, _, tmp, _ = outcomes
    assert not (tmp / "shared" / "IMPORTED").exists()  # evilenv.py never ran
    assert not any("Beautiful is better than ugly" in r["stdout"] for r in results)  # nor `this`


def test_no_command_allocates_much_beyond_its_imports(outcomes):
    results, _, _, runner_kb, *_ = outcomes
    grew = {CASES[k][1][0]: r["maxrss_kb"] - runner_kb for k, r in enumerate(results)}
    assert max(grew.values()) < 1_000_000, grew  # < 1 GB: no size allocated before its check
