"""``rlrnn tune`` and ``rlrnn compare --storage``: studies shared by processes through a storage
(the embedded journal file and a real PostgreSQL server), run as a user runs them."""

import functools
import json
import math
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import processes
import pytest
from optuna.trial import TrialState

from rlrnn.learning.hyperparams import (
    SEARCH_SPACES,
    LogRange,
    default_config,
    search_space,
    value_of,
    with_values,
)
from rlrnn.runs.safety import StopSignals
from rlrnn.runs.training import train
from rlrnn.tools.common.storage import open_storage
from rlrnn.tools.tune.setup import Setup, check_space, intermediate_value, score
from rlrnn.tools.tune.tune import Job, Objective

ROOT = Path(__file__).resolve().parents[1]
# Trials of 4,096 env steps (the largest rollout in the lstm's space), evaluated every 2,048.
TINY = ["--total-timesteps", "4096", "--eval-interval", "2048", "--eval-episodes", "3"]


rlrnn = functools.partial(processes.rlrnn, timeout=600)  # trials take longer than one run


def load_study(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(storage, Path(".")))


# ---------------------------------------------------------------- search spaces and scores


@pytest.mark.parametrize("agent", sorted(SEARCH_SPACES))
def test_each_search_space_holds_the_agents_defaults_and_makes_valid_configs(agent):
    base = default_config(agent)
    space = search_space(agent)
    for key, values in space.items():
        value = value_of(base, key)
        if isinstance(values, LogRange):
            assert values.low <= value <= values.high, key
        else:
            assert value in values.options, key
    check_space(Setup(base, space))  # every corner trains, at the agent's budget


def summary(evals: list[float], solved_at: int | None, steps: int = 8192) -> dict:
    records = [
        {"env_steps": 2048 * (i + 1), "train_seconds": 0.5 * (i + 1), "mean_return": m}
        for i, m in enumerate(evals)
    ]
    return {
        "status": "finished",
        "evaluations": records,
        "solved_at_steps": solved_at,
        "solved_at_seconds": None if solved_at is None else solved_at / 4096,
        "final_eval_mean": evals[-1],
        "env_steps": steps,
        "train_seconds": steps / 4096,
    }


def test_scores_of_each_objective_with_penalty_weight_and_constraint():
    base, space = default_config("lstm"), search_space("lstm")
    dips = summary([100, 480, 300, 500], solved_at=4096)  # solved, then 1 of 2 evaluations held
    never = summary([20, 30, 40, 50], solved_at=None)

    def setup(objective: str, **extra) -> Setup:
        return Setup(base, space, objective, threshold=475.0, **extra)

    budget = base.ppo.total_timesteps  # the most env steps an lstm trial runs
    assert score(setup("steps"), dips)[0] == 4096
    assert score(setup("steps"), never)[0] == 2 * budget  # the penalty: twice the budget
    assert score(setup("steps", unsolved_penalty=3), never)[0] == 3 * budget
    assert score(setup("seconds"), never)[0] == math.inf  # CPU seconds have no bound
    assert score(setup("seconds"), dips, cpu_to_solve=1.5)[0] == 1.5  # the tuner measures it
    assert score(setup("final"), dips)[0] == 500
    # Trapezoids over 2048..8192 steps, divided by the span: (290 + 390 + 400) / 3.
    assert score(setup("auc"), dips)[0] == pytest.approx(360.0)
    value, attrs = score(setup("steps", stays_solved_weight=1.0), dips)
    assert attrs["stays_solved"] == 0.5 and value == 4096 * 1.5  # worse by 1 x (1 - 0.5)
    # Above anything a solved run can score, weight included: 2 x the budget x (1 + 1).
    assert score(setup("steps", stays_solved_weight=1.0), never)[0] == 2 * budget * 2
    assert score(setup("final", stays_solved_weight=1.0), dips)[0] == 500 * 0.5
    _, attrs = score(setup("steps", min_stays_solved=0.8), dips)
    assert attrs["constraint"] == pytest.approx(0.3)  # > 0: infeasible
    # Intermediate values: the evaluation's return, better in the study's direction.
    record = dips["evaluations"][2]
    assert intermediate_value(setup("final"), record) == 300
    assert intermediate_value(setup("seconds"), record) == -300


def test_a_pruned_trial_ends_at_the_evaluation_where_it_is_pruned(tmp_path):
    base = with_values(default_config("lstm"), {"eval_interval": 2048, "eval_episodes": 2})
    setup = Setup(base, search_space("lstm"), objective="final", threshold=475.0)
    job = Job(setup, None, "s", tmp_path, trials=1, max_trials=1)
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1000)
    )
    study.enqueue_trial(setup.defaults())
    with StopSignals() as stop:
        study.optimize(Objective(job, stop), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [2048]
    run = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
    assert run["status"] == "stopped" and run["env_steps"] == 2048  # of 100,000


# ---------------------------------------------------------------- two workers, one study


def check_two_workers(tmp_path: Path, storage: str, study_name: str, extra: list[str]) -> None:
    out = tmp_path / "tune"
    # Scored by the final return: these short trials never solve, and under the seconds and
    # steps objectives a trial that never solved is never the best (no best.json).
    args = ["tune", *TINY, "--objective", "final", "--trials", "2", "--workers", "2"]
    result = rlrnn(*args, "--out", str(out), *extra)
    assert result.returncode == 0, result.stderr
    study = load_study(storage, study_name)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 4 == len(study.trials)  # the cap: --trials x --workers
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes ran trials
    assert trials[0].user_attrs["defaults"]  # the first trial is the agent's defaults
    # Each trial ran once: one run folder each, trained once (one TensorBoard event file).
    run_dirs = {Path(t.user_attrs["run_dir"]) for t in trials}
    assert run_dirs == set((out / "trials").iterdir())
    for run_dir in run_dirs:
        assert len(list((run_dir / "tb").glob("events.*"))) == 1
    for name in ("trials.csv", "trials.md", "history.png", "best.json"):
        assert (out / name).is_file(), name
    # Importance needs complete trials that differ in score (pruned ones do not count).
    scores = {t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert (out / "importance.png").is_file() == (len(scores) > 1), scores
    assert len((out / "trials.csv").read_text().splitlines()) == 5
    assert "Train it: python train.py --config" in result.stdout
    # The best configuration trains, and the command line overrides it.
    best = json.loads((out / "best.json").read_text())
    assert best["tuned"]["trial"] == study.best_trial.number
    run_dir = tmp_path / "from-best"
    options = ["--total-timesteps", "4096", "--run-dir", str(run_dir), "--quiet"]
    trained = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--config", str(out / "best.json"), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["ppo"] == best["ppo"] and config["agent"] == best["agent"]


def test_two_workers_share_the_embedded_journal(tmp_path):
    check_two_workers(
        tmp_path, f"journal:{tmp_path / 'tune' / 'study.log'}", "lstm-PositionOnlyCartPole-v1", []
    )


def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
    name = f"test-{uuid.uuid4().hex[:8]}"
    check_two_workers(tmp_path, postgres_url, name, ["--storage", postgres_url, "--study", name])


def test_ctrl_c_leaves_the_study_consistent_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "tune"
    args = ["tune", "--total-timesteps", "32768", "--eval-interval", "4096", "--eval-episodes"]
    args += ["2", "--trials", "3", "--pruner", "none", "--out", str(out), "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "rlrnn.cli", *args], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (out / "trials" / "trial-0001" / "config.json").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        "rlrnn tune: stopped by SIGINT; the study is consistent: run the same command to go on"
    ]
    journal = f"journal:{out / 'study.log'}"
    study = load_study(journal, "lstm-PositionOnlyCartPole-v1")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs["status"] for t in failed] == ["interrupted"]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    resumed = rlrnn(*args)
    assert resumed.returncode == 0, resumed.stderr
    study = load_study(journal, "lstm-PositionOnlyCartPole-v1")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3  # up to the cap, no more
    assert len(study.get_trials(states=(TrialState.FAIL,))) == 1


# ---------------------------------------------------------------- compare, split by claims


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_two_processes_split_one_comparison_and_run_each_cell_once(tmp_path, kind, request):
    if kind == "journal":
        storage = f"journal:{tmp_path / 'cells.log'}"
    else:
        storage = request.getfixturevalue("postgres_url")
    out = tmp_path / "report"
    args = ["compare", "--agents", "mlp", "lstm", "--seeds", "3", "--total-timesteps", "1024"]
    args += ["--eval-interval", "512", "--episodes", "3", "--workers", "1", "--out", str(out)]
    args += ["--storage", storage, "--study", f"cmp-{uuid.uuid4().hex[:8]}", "--quiet"]
    processes = [
        subprocess.Popen([sys.executable, "-m", "rlrnn.cli", *args], cwd=ROOT, text=True)
        for _ in range(2)
    ]
    assert [p.wait(timeout=600) for p in processes] == [0, 0]
    study = load_study(storage, args[-2])
    cells = [t.user_attrs["cell"] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(cells) == [f"{a} s{s}" for a in ("lstm", "mlp") for s in range(3)]  # once each
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # split between both
    for run_dir in (out / "runs").iterdir():
        assert len(list((run_dir / "tb").glob("events.*"))) == 1, run_dir  # trained once
    report = json.loads((out / "report.json").read_text())
    assert {(r["agent"], r["seed"]) for r in report["runs"]} == {
        (a, s) for a in ("mlp", "lstm") for s in range(3)
    }


# ---------------------------------------------------------------- config files


def test_train_starts_from_a_run_config_or_a_tuned_file_and_options_override(tmp_path, cli):
    first = tmp_path / "first"
    args = ["--total-timesteps", "1024", "--eval-interval", "0", "--quiet"]
    gru = ["train", "--agent", "gru", "--hidden-size", "8"]
    assert cli([*gru, *args, "--run-dir", str(first)]) == 0
    tuned = json.loads((first / "config.json").read_text())
    tuned["tuned"] = {"study": "s", "trial": 3}
    (tmp_path / "best.json").write_text(json.dumps(tuned))
    for source in (first / "config.json", tmp_path / "best.json"):
        run_dir = tmp_path / f"from-{source.stem}"
        given = ["train", "--config", str(source), "--seed", "5", *args]
        assert cli([*given, "--run-dir", str(run_dir)]) == 0
        config = json.loads((run_dir / "config.json").read_text())
        assert (config["agent"]["agent"], config["agent"]["hidden_size"]) == ("gru", 8)
        assert config["seed"] == 5  # the command line wins


@pytest.mark.parametrize("agent", ["lstm", "sb3-ppo"])
def test_the_evaluation_hook_ends_a_run_where_it_says_so(tmp_path, agent):
    base = with_values(default_config(agent), {"eval_interval": 1024, "eval_episodes": 2})
    config = with_values(base, {"ppo.total_timesteps": 8192})
    seen = []

    def stop_here(record: dict) -> bool:
        seen.append(record)
        return False

    summary = train(config, tmp_path / agent, False, on_evaluation=stop_here)
    assert summary["status"] == "stopped"
    assert len(seen) == 1  # SB3's learn loop ends one step of its envs after the evaluation
    assert seen[0]["env_steps"] <= summary["env_steps"] <= seen[0]["env_steps"] + 8
    assert json.loads((tmp_path / agent / "summary.json").read_text())["status"] == "stopped"
