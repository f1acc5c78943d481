"""``rlrnn tune`` under stress: signals that land while a trial is pruned or while workers start,
a journal cut by a killed process, a read-only journal, and a score that never crowns a run that
did not solve. The one-line refusals (bad seeds, penalties, storages, damaged journals, a study
scored by an older rlrnn) are rows of the bad-input sweep, ``tests/test_bad_input.py``."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from processes import rlrnn, still_running, wait_for_children

from rlrnn.errors import UsageError
from rlrnn.learning.hyperparams import default_config, search_space, with_values
from rlrnn.runs.safety import StopSignals
from rlrnn.tools.common.storage import create_study, open_storage
from rlrnn.tools.tune import tune
from rlrnn.tools.tune.report import write_report
from rlrnn.tools.tune.setup import Setup
from rlrnn.tools.tune.tune import Job, Objective, best_trial, run_worker

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--total-timesteps", "4096", "--eval-interval", "2048", "--eval-episodes", "3"]
STUDY = "lstm-PositionOnlyCartPole-v1"


def tiny_setup(objective: str = "seconds", total: int = 4096) -> Setup:
    values = {"ppo.total_timesteps": total, "eval_interval": 2048, "eval_episodes": 3}
    base = with_values(default_config("lstm"), values)
    return Setup(base, search_space("lstm"), objective, threshold=475.0)


def new_study(tmp_path: Path, setup: Setup, **job_options) -> tuple[Job, optuna.Study]:
    job = Job(setup, None, "s", tmp_path, **{"trials": 1, "max_trials": 1, **job_options})
    storage = open_storage(None, job.journal)
    create_study(storage, "s", setup.direction, setup.attrs(), "test", tune.fill(job))
    return job, tune.load(job)


# ---------------------------------------------------------------- signals


def test_nested_stop_signals_share_what_they_receive():
    """A tuner's worker holds StopSignals around each trial's run, which holds its own."""
    me = os.getpid()
    with StopSignals() as outer:
        with StopSignals() as inner:
            os.kill(me, signal.SIGTERM)  # taken by the inner one (the run's)
            assert inner.requested == signal.SIGTERM
        assert outer.requested == signal.SIGTERM  # not lost when the run ends
    with StopSignals() as outer:
        os.kill(me, signal.SIGINT)  # between two runs
        with StopSignals() as inner:
            assert inner.requested == signal.SIGINT  # the next run stops at its first update
            with pytest.raises(KeyboardInterrupt):
                os.kill(me, signal.SIGINT)  # the second one: at once
            os.kill(me, signal.SIGINT)  # later ones: ignored while that unwinds
        os.kill(me, signal.SIGINT)
    assert outer.requested == signal.SIGINT


class SignalAtFirstEvaluation:
    """A progress display that sends this process SIGINT at a trial's first evaluation, while
    the trial's run is inside its own signal handling."""

    def __init__(self) -> None:
        self.sent = 0

    def evaluation(self, number: int, record: dict) -> None:
        if not self.sent:
            self.sent += 1
            os.kill(os.getpid(), signal.SIGINT)

    def refresh(self, study: optuna.Study) -> None:
        pass

    def write(self, text: str) -> None:
        pass


def test_a_signal_while_a_trial_is_pruned_stops_the_worker(tmp_path, monkeypatch):
    """The issue's `tune --trials 1000000000000` that ran 125 more trials after a Ctrl-C: the
    signal landed in the evaluation where the trial was pruned, so the run ended "stopped"
    (pruned) rather than interrupted, and its handler kept the signal to itself."""
    monkeypatch.setattr(tune, "make_pruner", lambda job: optuna.pruners.ThresholdPruner(1e9))
    job, _ = new_study(tmp_path, tiny_setup(), trials=1000, max_trials=1000)
    code, message = run_worker(job, progress=SignalAtFirstEvaluation())
    assert (code, message) == (130, "stopped by SIGINT")
    trials = tune.load(job).get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED]  # and no trial after it


@pytest.mark.parametrize("agent", ["lstm", "sb3-ppo"])
def test_a_signal_ends_the_trial_at_its_next_evaluation(tmp_path, agent):
    """Not pruned: the trial is marked interrupted (the same command runs another), ended at
    the evaluation the signal came before, SB3's runs too (which take no signal themselves)."""
    values = {"ppo.total_timesteps": 16384, "eval_interval": 2048, "eval_episodes": 3}
    setup = Setup(with_values(default_config(agent), values), search_space(agent), threshold=475.0)
    job, _ = new_study(tmp_path, setup, trials=10, max_trials=10, pruner="none")
    code, message = run_worker(job, progress=SignalAtFirstEvaluation())
    assert (code, message) == (130, "stopped by SIGINT")
    [trial] = tune.load(job).get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["status"] == "interrupted"
    summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
    assert summary["env_steps"] < 2048 + 1024  # of 16,384: at the first evaluation


def test_two_ctrl_c_while_workers_start_is_one_line_and_leaves_no_process(tmp_path):
    out = tmp_path / "tune"
    command = [sys.executable, "-m", "rlrnn.cli", "tune", *TINY, "--workers", "2"]
    process = subprocess.Popen(
        [*command, "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a shell job is
    )
    workers = wait_for_children(process, 2)  # the workers exist and are still importing torch
    os.killpg(process.pid, signal.SIGINT)  # what a Ctrl-C in the terminal does, twice
    time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == [
        "rlrnn tune: stopped by SIGINT; the study is consistent: run the same command to go on"
    ]
    assert still_running(workers, timeout=60) == []
    study = optuna.load_study(study_name=STUDY, storage=open_storage(None, out / "study.log"))
    assert not study.get_trials(states=(TrialState.RUNNING,))  # none left running


# ---------------------------------------------------------------- a journal cut by a kill


def dead_pid() -> int:
    probe = subprocess.Popen([sys.executable, "-c", "pass"])
    probe.wait()
    return probe.pid


def test_a_journal_cut_by_a_killed_process_stays_readable_and_the_same_command_goes_on(
    tmp_path,
):
    journal = tmp_path / "study.log"  # a plain path ending in .log, as rl-zoo users give it
    args = ["tune", *TINY, "--storage", str(journal), "--out", str(tmp_path / "o"), "--quiet"]
    first = rlrnn(*args, "--trials", "1", timeout=600)
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "o" / "study.log").exists()  # the study is in the named journal
    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(journal), journal))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]  # --trials 1: one trial
    # A process of this machine that was killed in a trial, while it wrote a record.
    trial = study.ask()
    trial.set_user_attr("host", os.uname().nodename)
    trial.set_user_attr("pid", dead_pid())
    lines = journal.read_bytes().splitlines(keepends=True)
    with journal.open("ab") as f:
        f.write(lines[-1][: len(lines[-1]) // 2])  # half a record, no newline
    cut = journal.read_bytes()

    refused = rlrnn(*args, "--trials", "2", "--objective", "final", timeout=600)
    assert refused.returncode == 2 and "objective (seconds -> final)" in refused.stderr
    assert journal.read_bytes() == cut  # a refused command writes nothing

    resumed = rlrnn(*args, "--trials", "2", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for line in journal.read_bytes().splitlines(keepends=True):  # every record whole
        assert line.endswith(b"\n") and json.loads(line)
    # Optuna's own reader agrees: the study is readable, the killed trial marked failed.
    plain = JournalStorage(JournalFileBackend(str(journal)))
    states = [t.state for t in optuna.load_study(study_name=STUDY, storage=plain).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def plain_optuna(journal: Path, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(journal)))
    )


@pytest.mark.parametrize("cut", ["half a record", "a record written onto half a record"])
def test_no_record_is_appended_onto_a_cut_line(tmp_path, cut):
    """The second kind is what an older rlrnn left: the first append after a kill went onto the
    cut line (readable while last), the next one made the study unreadable for good."""
    journal = tmp_path / "study.log"
    storage = open_storage(f"journal:{journal}", journal)
    optuna.create_study(study_name="s", storage=storage).set_user_attr("before", 1)
    whole = journal.read_bytes()
    record = whole.splitlines(keepends=True)[-1]
    tail = record[:20] + (record if cut != "half a record" else b"")
    journal.write_bytes(whole + tail)
    assert plain_optuna(journal, "s").user_attrs == {"before": 1}  # the cut line is skipped
    for key in ("after", "later"):  # through rlrnn's storage, opened anew each time
        study = optuna.load_study(
            study_name="s", storage=open_storage(f"journal:{journal}", journal)
        )
        study.set_user_attr(key, 2)
    assert journal.read_bytes().startswith(whole)  # the records before it kept as they were
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())
    assert plain_optuna(journal, "s").user_attrs == {"before": 1, "after": 2, "later": 2}


def test_a_record_the_disk_writes_in_parts_is_written_whole(tmp_path, monkeypatch):
    """os.write may write less than it is given (a disk filling up): the rest follows."""
    journal = tmp_path / "study.log"
    storage = open_storage(str(journal), journal)
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, bytes(data[:7])))
    optuna.create_study(study_name="s", storage=storage).set_user_attr("key", "value")
    monkeypatch.undo()
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 2 and all(line.endswith(b"\n") and json.loads(line) for line in lines)
    assert plain_optuna(journal, "s").user_attrs == {"key": "value"}


def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(tmp_path):
    notes = tmp_path / "notes.log"
    notes.write_text("my notes, not a study\n")
    with pytest.raises(UsageError, match=r"notes\.log is not an Optuna journal file"):
        open_storage(str(notes), notes)
    assert notes.read_text() == "my notes, not a study\n"
    journal = tmp_path / "study.log"
    storage = open_storage(str(journal), journal)
    assert not journal.exists()  # made by the first record, not by opening it
    optuna.create_study(study_name="s", storage=storage)
    with journal.open("ab") as f:
        f.write(b"text someone added")  # not a record: not ours to drop
    before = journal.read_bytes()
    with pytest.raises(UsageError, match="ends in a line that is not a journal record"):
        optuna.load_study(study_name="s", storage=storage).set_user_attr("x", 1)
    assert journal.read_bytes() == before


def make_read_only(path: Path) -> bool:
    """``path`` made read-only for this user (root: immutable, where the filesystem can)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_a_read_only_journal_is_one_line_and_stays_as_it_was(tmp_path):
    journal = tmp_path / "study.log"
    setup = tiny_setup()
    create_study(open_storage(str(journal), journal), "s", "minimize", setup.attrs(), "test")
    before = journal.read_bytes()
    if not make_read_only(journal):
        pytest.skip("no read-only file for root on this filesystem")
    try:
        out = ["--out", str(tmp_path / "o"), "--quiet"]
        result = rlrnn("tune", *TINY, "--storage", str(journal), "--study", "s", *out)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(journal)], capture_output=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{journal} is read-only; make it writable" in lines[0]
    assert journal.read_bytes() == before


# ---------------------------------------------------------------- scores


class FakeRuns:
    """Stands in for ``train``: each call plays one scripted run, its periodic evaluations
    reported through the tuner's hook. ``clock`` is the process's CPU time as the tuner reads
    it: each iteration of a run costs 10 CPU seconds, and the tuner's work in the hook 100
    (which the run must not be charged)."""

    def __init__(self, runs: list[list[float]]) -> None:
        self.runs, self.clock = runs, 0.0

    def cpu(self) -> float:
        return self.clock

    def tuner(self, number: int, record: dict) -> None:
        self.clock += 100

    def __call__(self, config, run_dir, show_progress, on_evaluation):
        returns = self.runs.pop(0)
        records, solved = [], None
        for i, mean in enumerate(returns):
            self.clock += 10
            records.append({"env_steps": 2048 * (i + 1), "train_seconds": 0.1, "mean_return": mean})
            if solved is None and mean >= 475:
                solved = records[-1]["env_steps"]
            on_evaluation(records[-1])
        Path(run_dir).mkdir(parents=True)
        return {
            "status": "finished",
            "evaluations": records,
            "solved_at_steps": solved,
            "solved_at_seconds": None if solved is None else 0.1,
            "final_eval_mean": returns[-1],
            "env_steps": 2048 * len(returns),
            "train_seconds": 0.1,
        }


@pytest.mark.parametrize("objective", ["seconds", "steps"])
def test_a_run_that_never_solved_never_ranks_above_one_that_did(tmp_path, monkeypatch, objective):
    """The issue's study: an early, fast, unsolved trial (final 89.9) beat a later one that
    solved (481), and best.json trained the one that never solved."""
    runs = FakeRuns([[50.0, 89.9], [100.0, 200.0, 300.0, 400.0, 481.0, 481.0]])
    monkeypatch.setattr(tune, "train", runs)
    monkeypatch.setattr(tune.time, "process_time", runs.cpu)
    setup = tiny_setup(objective, total=16384)  # 8 evaluations
    job, study = new_study(tmp_path, setup, trials=2, max_trials=2, pruner="none")
    with StopSignals() as stop:
        study.optimize(Objective(job, stop, runs.tuner), n_trials=1)
        notes = write_report(study, setup, tmp_path, "test")
        assert "no best.json: no complete trial has solved yet" in notes  # nothing to train
        assert not (tmp_path / "best.json").exists()
        study.optimize(Objective(job, stop, runs.tuner), n_trials=1)
    unsolved, solved = study.trials
    # CPU seconds: 5 iterations of 10 to the solving evaluation, the tuner's 100s left out.
    assert solved.user_attrs["cpu_seconds_to_solve"] == 50
    assert solved.user_attrs["cpu_seconds"] == 60
    assert solved.value == (50 if objective == "seconds" else 5 * 2048)
    assert unsolved.value == (math.inf if objective == "seconds" else 2 * 16384)
    assert unsolved.value > solved.value
    assert best_trial(study, setup).number == solved.number
    assert study.best_trial.number == solved.number  # Optuna's own ranking agrees
    write_report(study, setup, tmp_path, "test")
    assert json.loads((tmp_path / "best.json").read_text())["tuned"]["trial"] == solved.number
    for figure in ("history.png", "importance.png"):
        assert (tmp_path / figure).stat().st_size > 0


def test_a_solved_run_scores_below_the_unsolved_score_whatever_its_settings():
    """Under steps, no run can score as much as an unsolved one: not at the last env step of
    the largest rollout, nor worsened by the stays-solved weight."""
    for agent in ("lstm", "sb3-ppo"):
        base = default_config(agent)
        setup = Setup(base, search_space(agent), "steps", 475.0, stays_solved_weight=1.0)
        most = max(setup.config(p).ppo.batch_size for p in setup.corners())
        worst_solved = (base.ppo.total_timesteps + most) * (1 + 1.0)
        assert setup.unsolved_score > worst_solved
