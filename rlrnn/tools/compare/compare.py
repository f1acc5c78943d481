"""``rlrnn compare``: several agents over several seeds on one env, judged the same way.

Each (agent, seed) trains into ``<out>/runs/<agent>-s<seed>/`` with the agent's tuned defaults
(:mod:`rlrnn.learning.hyperparams`), in worker processes side by side
(:mod:`rlrnn.tools.compare.workers`: a
Ctrl-C or SIGTERM stops them all cleanly); a finished run whose config matches is re-used and a
stopped one resumed, so re-running a comparison only trains what is missing. A run folder that
stopped before its first checkpoint is cleared of the files rlrnn wrote there, only if rlrnn's
marker shows it made the folder, and saying so (:mod:`rlrnn.runs.folder`). Every run's final and
best checkpoints are then evaluated on the same ``episodes`` fresh episodes (kept in the run's
``RunFolder.evaluations`` under a key of the checkpoints' SHA-256 and every evaluation setting, so a
run trained further, or asked other settings, is evaluated again), and the report folder gets
``learning_curves.png``, ``results.csv``, ``results.md``, ``report.json`` and ``configs/``
(:mod:`rlrnn.tools.compare.report`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import stat
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rlrnn.errors import Interrupted, UsageError
from rlrnn.files import (
    check_can_create,
    check_no_link_below,
    path_status,
    read_json,
)
from rlrnn.learning.config import AGENT_NAMES, SB3_AGENTS, RunConfig
from rlrnn.learning.fields import config_differences
from rlrnn.learning.hyperparams import default_config
from rlrnn.learning.threads import torch_threads
from rlrnn.runs.folder import RunFolder, check_no_links, clear_run, made_by_rlrnn, rlrnn_files
from rlrnn.runs.lock import RunLock, writing_run
from rlrnn.runs.training import train
from rlrnn.tools.compare.evaluations import final_and_best
from rlrnn.tools.compare.workers import Stopped, run_tasks


@dataclass(frozen=True)
class RunSpec:
    """One (agent, seed) run of a comparison."""

    config: RunConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.config.agent.agent} s{self.config.seed}"


def plan_runs(
    agents: list[str],
    seeds: list[int],
    env_id: str,
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    frame_stack: int | None = None,
) -> list[RunSpec]:
    """The runs of a comparison: each agent's tuned config with ``overrides`` (dotted keys such
    as ``"ppo.total_timesteps"``) for each seed; ``frame_stack`` sets the framestack agent's k
    (checked with the rest of the config)."""
    unknown = [a for a in agents if a not in AGENT_NAMES]
    if unknown:
        raise UsageError(f"unknown agent {unknown[0]!r}; choose from {', '.join(AGENT_NAMES)}")
    if not seeds:
        raise UsageError("a comparison needs at least one seed")
    if len(set(agents)) != len(agents):
        raise UsageError("each agent may appear only once in --agents")
    specs = []
    for agent in agents:
        data = default_config(agent, env_id).to_dict()
        for key, value in (overrides or {}).items():
            section, _, name = key.rpartition(".")
            (data[section] if section else data)[name] = value
        if agent == "framestack" and frame_stack is not None:
            data["agent"]["frame_stack"] = frame_stack
        config = RunConfig.from_dict(data)
        for seed in seeds:
            specs.append(RunSpec(replace(config, seed=seed), out_dir / "runs" / f"{agent}-s{seed}"))
    return specs


def read_summary(path: Path) -> dict[str, Any]:
    """A run's summary with what a comparison reads from it (else a UsageError)."""
    summary = read_json(path, "move the run folder away, or delete it to train it again")

    def number(value: Any, optional: bool = False) -> bool:
        if optional and value is None:
            return True
        return isinstance(value, int | float) and not isinstance(value, bool)

    evaluations = summary.get("evaluations")
    ok = (
        isinstance(summary.get("status", "finished"), str)
        and number(summary.get("reward_threshold"), True)
        and number(summary.get("solved_at_steps"), True)
        and number(summary.get("solved_at_seconds"), True)
        and number(summary.get("steps_per_second"))
        and number(summary.get("parameters"))
        and isinstance(evaluations, list)
        and len(evaluations) > 0
        and all(
            isinstance(e, dict)
            and all(number(e.get(k)) for k in ("env_steps", "train_seconds", "mean_return"))
            for e in evaluations
        )
    )
    if not ok:
        raise UsageError(
            f"{path} is damaged (not a summary of a finished run): move the run folder away,"
            " or delete it to train it again"
        )
    return summary


def read_config(run_dir: Path) -> RunConfig:
    """The config a run folder holds, checked."""
    path = RunFolder(run_dir).config
    hint = "move the run folder away, or delete it to train it again"
    try:
        return RunConfig.from_dict(read_json(path, hint))
    except UsageError as e:
        if str(e).startswith(str(path)):
            raise
        raise UsageError(f"{path} is damaged ({e}); {hint}") from None


def existing_run(run_dir: Path, env_id: str) -> RunSpec:
    """A finished run folder (from ``rlrnn train`` or an earlier comparison) to include, read
    and checked in full now, before anything is trained or written."""
    run_dir, folder = Path(run_dir), RunFolder(run_dir)
    for path in (
        folder.config,
        folder.summary,
        folder.checkpoint("final"),
        folder.checkpoint("best"),
    ):
        if not path.is_file():
            raise UsageError(f"{run_dir} is not a finished run folder (no {path.name})")
    config = read_config(run_dir)
    if config.env_id != env_id:  # the file's env is never made: only --env's is
        raise UsageError(f"run folder {run_dir} is from env {config.env_id}, not {env_id}")
    read_summary(folder.summary)
    return RunSpec(config, run_dir)


def check_reusable(spec: RunSpec) -> None:
    """Refuse to train over a run folder that holds a run of another config."""
    if not RunFolder(spec.run_dir).config.is_file():
        return
    saved = read_config(spec.run_dir)
    differs = config_differences(saved.to_dict(), spec.config.to_dict())
    if differs:
        raise UsageError(
            f"{spec.run_dir} holds a run with another config (differs in {', '.join(differs)});"
            " choose another --out or delete it"
        )


def next_step(spec: RunSpec) -> str:
    """``reuse`` a finished run of the same config, ``resume`` a stopped one, ``train`` a new
    one, or ``clear`` first a run that stopped before its first checkpoint (see
    :func:`prepare_runs`)."""
    if not spec.run_dir.exists():
        return "train"
    check_reusable(spec)
    folder = RunFolder(spec.run_dir)
    summary = folder.summary
    status = read_json(summary).get("status", "finished") if summary.is_file() else ""
    if status == "finished":
        read_summary(summary)
        return "reuse"
    if folder.last.is_file() and spec.config.agent.agent not in SB3_AGENTS:
        return "resume"
    return "clear" if rlrnn_files(spec.run_dir) else "train"


def prepare_runs(specs: list[RunSpec]) -> None:
    """Before any training: check every existing run folder (readable files, not in use) and
    clear the runs that stopped before their first checkpoint, saying what was removed. A run
    folder rlrnn cannot prove it made is refused before anything is removed, and so is one
    where a link would lead a write or a removal outside it."""
    for spec in specs:
        check_run_folder(spec)
    steps = [next_step(spec) for spec in specs]
    for spec, step in zip(specs, steps, strict=True):
        if step == "clear" and not made_by_rlrnn(spec.run_dir):
            clear_run(spec.run_dir)  # raises: it explains why
    for spec, step in zip(specs, steps, strict=True):
        if not spec.run_dir.exists():
            continue
        with RunLock(spec.run_dir):  # refused now, not in a worker, if a run is in use
            if step == "clear":
                removed = clear_run(spec.run_dir)
                print(
                    f"rlrnn compare: cleared {spec.run_dir} (it stopped before its first"
                    f" checkpoint): removed {len(removed)} files rlrnn wrote there"
                    f" ({', '.join(removed[:4])}{', ...' if len(removed) > 4 else ''})",
                    file=sys.stderr,
                )


def check_run_folder(spec: RunSpec) -> None:
    """Refuse a planned run folder (``<out>/runs/<agent>-s<seed>``, see :func:`plan_runs`)
    reached through a symbolic link inside ``<out>``, or holding one where rlrnn writes
    (:func:`rlrnn.runs.folder.check_no_links`): training or clearing it would write or delete
    outside the report folder."""
    check_no_link_below(spec.run_dir.parent.parent, spec.run_dir, "report folder")
    if spec.run_dir.is_dir():
        check_no_links(spec.run_dir)


def run_one(spec: RunSpec, episodes: int, train_if_needed: bool = True) -> dict[str, Any]:
    """Train ``spec`` if needed, evaluate its final and best checkpoints; returns its record.
    The run folder is locked meanwhile (a run folder of someone else's that cannot be written
    is only read). It runs on the run config's ``torch_threads``."""
    writable = train_if_needed or os.access(spec.run_dir, os.W_OK)
    lock = RunLock(spec.run_dir) if writable else contextlib.nullcontext()
    if train_if_needed:  # claimed; removed again if a check refuses it before training writes
        check_run_folder(spec)
        lock = writing_run(spec.run_dir)
    with torch_threads(spec.config.torch_threads), lock:
        step = next_step(spec) if train_if_needed else "reuse"
        if step == "clear":  # prepare_runs cleared it; files appeared since
            raise UsageError(f"{spec.run_dir} changed while the comparison started; run it again")
        trained = step != "reuse"
        if trained:
            train(spec.config, spec.run_dir, show_progress=False, resume=step == "resume")
        summary = read_summary(RunFolder(spec.run_dir).summary)
        evals = final_and_best(spec.run_dir, spec.config.env_id, episodes, writable)
    return {
        "agent": spec.config.agent.agent,
        "seed": spec.config.seed,
        "run_dir": str(spec.run_dir),
        "trained": trained,
        "summary": summary,
        "final_returns": evals["final"],
        "best_returns": evals["best"],
    }


def run_all(
    specs: list[RunSpec],
    episodes: int,
    workers: int,
    show_progress: bool = True,
    resume_command: str = "rlrnn compare",
) -> list[dict[str, Any]]:
    """Run ``specs`` on ``workers`` processes (in this one when 1); records in ``specs`` order.

    SIGINT / SIGTERM stop every run cleanly (:mod:`rlrnn.tools.compare.workers`) and raise
    :class:`Interrupted` saying what finished and that ``resume_command`` goes on from there.
    """
    records: dict[int, dict[str, Any]] = {}
    bar = tqdm(total=len(specs), unit="run", desc="compare", disable=not show_progress)

    def done(index: int, record: dict[str, Any]) -> None:
        records[index] = record
        s = record["summary"]
        solved = (
            f"solved at {s['solved_at_steps']:,} steps"
            if s["solved_at_steps"] is not None
            else "not solved"
        )
        reused = "" if record["trained"] else " (re-used)"
        if show_progress:
            bar.write(
                f"{specs[index].label}: {solved},"
                f" final {statistics.mean(record['final_returns']):.1f}{reused}"
            )
        bar.update()

    bar.set_postfix_str(f"running on {min(workers, len(specs))} workers")
    try:
        run_tasks(functools.partial(run_one, episodes=episodes), specs, workers, done)
    except Stopped as e:
        bar.close()

        def labels(indices: list[int]) -> str:
            return ", ".join(specs[i].label for i in sorted(indices)) or "none"

        raise Interrupted(
            f"stopped by {signal.Signals(e.signal_number).name}: {len(e.finished)} of"
            f" {len(specs)} runs finished ({labels(e.finished)}); stopped: {labels(e.stopped)}"
            f" (rlrnn's runs keep their {RunFolder.CHECKPOINTS['last']}); not started:"
            f" {labels(e.not_started)}; no report written. Resume: {resume_command}",
            e.signal_number,
        ) from None
    bar.close()
    return [records[i] for i in range(len(specs))]


def check_out_dir(out_dir: Path) -> Path:
    """``out_dir`` if the report (and runs) can be written there; creates nothing yet."""
    out_dir = Path(out_dir)
    status = path_status(out_dir, "report folder")  # a name too long: one line, not a traceback
    if status is not None and not stat.S_ISDIR(status.st_mode):
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    check_no_link_below(out_dir, out_dir / "configs", "report folder")  # the report writes there
    return check_can_create(out_dir, "report folder")


def default_workers(runs: int) -> int:
    return max(1, min(runs, os.cpu_count() or 1))
